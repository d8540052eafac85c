"""REST methods of the emulated portal. Each takes (ctx, params) and returns a result or MethodResult, or raises
B24Error with the documented code/status."""
from __future__ import annotations

import re
import time
from urllib.parse import parse_qsl, urlsplit

from ..base import parse_php_form
from .core import B24Error, time_block
from .portal import Ctx, MethodResult

METHODS: dict = {}
SCOPES: dict[str, tuple] = {}  # method -> any-of scopes (empty: no scope needed)
ALL_SCOPES: dict[str, frozenset] = {}  # method -> scopes the method itself checks, all of them


def needs_all_scopes(name: str, *scopes: str) -> None:
    """The method checks these scopes itself (sign.b2e's controllers): without any of them the core answers
    403 ``ACCESS_DENIED`` "Access denied!", not ``insufficient_scope``."""
    ALL_SCOPES[name] = frozenset(scopes)


def check_scopes(name: str, granted: set) -> None:
    need = SCOPES.get(name) or ()
    if need and not granted.intersection(need):
        raise B24Error("insufficient_scope", "The request requires higher privileges than provided by the access token",
                       401)
    if not ALL_SCOPES.get(name, frozenset()) <= granted:
        raise B24Error("ACCESS_DENIED", "Access denied!", 403)


def method(name: str, *scopes: str):
    def deco(fn):
        METHODS[name] = fn
        SCOPES[name] = scopes
        return fn
    return deco


def upper(params: dict) -> dict:
    return {str(k).upper(): v for k, v in params.items() if str(k).lower() != "auth"} if isinstance(params, dict) else {}


def truthy(v) -> bool:
    return v in (True, 1, "1", "Y", "y", "true", "True")


def call_method(ctx: Ctx, name: str, params: dict):
    """Run one method (top level or inside batch): scope, operating budget, then the method."""
    portal = ctx.portal
    fn = METHODS.get(name)
    if fn is None:
        raise B24Error("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
    check_scopes(name, set(re.split(r"[,\s]+", portal.cloud.scope)))
    refusal = portal.method_refusal(name)
    if refusal is not None:
        raise refusal
    allowed, used, reset_at = portal.operating.check(name)
    if not allowed:
        raise B24Error("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.", 429,
                       operating_reset_at=reset_at)
    res = fn(ctx, params if isinstance(params, dict) else {})
    if not isinstance(res, MethodResult):
        res = MethodResult(res)
    operating, reset_at = portal.operating.charge(name)
    return res, operating, reset_at


# ====================================================================== batch (§6.4)
_REF = re.compile(r"\$result\[([^\]]+)\]((?:\[[^\]]*\])*)")


def _resolve(results: dict, key: str, path: str):
    if key not in results:
        raise LookupError
    node = results[key]
    for part in re.findall(r"\[([^\]]*)\]", path):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise LookupError
    return node


def _substitute(value, results: dict):
    if isinstance(value, dict):
        return {k: _substitute(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, results) for v in value]
    if not isinstance(value, str) or "$result" not in value:
        return value
    m = _REF.fullmatch(value)
    if m:
        try:
            return _resolve(results, m.group(1), m.group(2))
        except LookupError:
            return value

    def repl(mm):
        try:
            v = _resolve(results, mm.group(1), mm.group(2))
        except LookupError:
            return mm.group(0)
        return "1" if v is True else "" if v in (False, None) else str(v)
    return _REF.sub(repl, value)


def _php_array(d: dict):
    """json_encode of a PHP array: [] when empty, a list when keys are 0..n-1, else an object."""
    if not d:
        return []
    if list(d.keys()) == [str(i) for i in range(len(d))]:
        return list(d.values())
    return d


BATCH_MAX = 50


def _batch_overflow(items: list) -> tuple[list, dict]:
    """The core runs the first 50 commands and answers each extra one in ``result_error`` with
    ``ERROR_BATCH_LENGTH_EXCEEDED`` (the whole call still HTTP 200)."""
    extra = {key: {"error": "ERROR_BATCH_LENGTH_EXCEEDED", "error_description": "Max batch length exceeded"}
             for key, _ in items[BATCH_MAX:]}
    return items[:BATCH_MAX], extra


def batch(ctx: Ctx, params: dict, start: float) -> dict:
    portal = ctx.portal
    cmd = params.get("cmd") or {}
    halt = truthy(params.get("halt"))
    if isinstance(cmd, list):
        items = [(str(i), q) for i, q in enumerate(cmd)]
        listish = True
    elif isinstance(cmd, dict):
        items = [(str(k), q) for k, q in cmd.items()]
        listish = all(k.isdigit() for k, _ in items)
    else:
        raise B24Error("INVALID_REQUEST", "cmd must be an array", 400)
    items, overflow = _batch_overflow(items)
    with portal.lock:
        portal.stats.batch_calls += 1
    results, errors, totals, nexts, times = {}, {}, {}, {}, {}
    errors.update(overflow)
    inner = Ctx(portal, ctx.token, ctx.user, in_batch=True)
    for key, q in items:
        t0 = time.time()
        q = q if isinstance(q, str) else ""
        name, _, qs = q.partition("?")
        name = name.strip().strip("/").lower()
        if name.endswith(".json"):
            name = name[:-5]
        sub = parse_php_form(parse_qsl(qs, keep_blank_values=True))
        sub.pop("auth", None)
        sub = _substitute(sub, results)
        try:
            if name == "batch":
                raise B24Error("ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage", 405)
            with portal.lock:
                portal.stats.by_method[name] += 1
            res, operating, reset_at = call_method(inner, name, sub)
            results[key] = res.result
            times[key] = time_block(t0, operating, reset_at)
            if res.total is not None:
                totals[key] = res.total
            if res.next is not None:
                nexts[key] = res.next
        except B24Error as e:
            with portal.lock:
                portal.stats.errors_by_code[e.code] += 1
                if e.status == 429:
                    portal.stats.rejected_429 += 1
            errors[key] = e.body()
            if halt:
                break
    conv = _php_array if listish else (lambda d: d if d else [])
    return {"result": {"result": conv(results), "result_error": conv(errors), "result_total": conv(totals),
                       "result_next": conv(nexts), "result_time": conv(times)},
            "time": time_block(start)}


# ====================================================================== app / user
def _license(portal) -> tuple[str, str]:
    return ("en_ent250", "ent") if portal.plan == "enterprise" else ("en_basic", "basic")


@method("app.info")
def app_info(ctx: Ctx, p):
    portal, cloud = ctx.portal, ctx.portal.cloud
    lic, fam = _license(portal)
    return {"ID": 17, "CODE": cloud.client_id, "VERSION": cloud.version, "STATUS": cloud.status,
            "INSTALLED": portal.install_finished, "PAYMENT_EXPIRED": "N", "DAYS": None, "LANGUAGE_ID": portal.lang,
            "LICENSE": lic, "LICENSE_TYPE": fam, "LICENSE_FAMILY": fam}


def _public_user(u: dict) -> dict:
    return {k: v for k, v in u.items() if k != "ADMIN"}


@method("profile")
def profile(ctx: Ctx, p):
    u = ctx.user
    return {"ID": u["ID"], "ADMIN": bool(u.get("ADMIN")), "NAME": u["NAME"], "LAST_NAME": u["LAST_NAME"],
            "PERSONAL_GENDER": u.get("PERSONAL_GENDER", ""), "TIME_ZONE": u.get("TIME_ZONE", "")}


@method("user.current", "user", "user_basic", "user_brief")
def user_current(ctx: Ctx, p):
    return _public_user(ctx.user)


@method("user.admin")
def user_admin(ctx: Ctx, p):
    return bool(ctx.user.get("ADMIN"))


@method("user.get", "user", "user_basic", "user_brief")
def user_get(ctx: Ctx, p):
    portal = ctx.portal
    raw = p.get("filter", p.get("FILTER"))
    filt = dict(raw) if isinstance(raw, dict) else {}
    for k in ("ID", "ACTIVE", "EMAIL"):
        if k in p and k not in filt:
            filt[k] = p[k]
    users = sorted(portal.users.values(), key=lambda u: int(u["ID"]))
    out = []
    for u in users:
        ok = True
        for k, v in filt.items():
            key = k.lstrip("=").upper()
            if key == "ID":
                ids = {str(x) for x in (v if isinstance(v, list) else [v])}
                ok &= u["ID"] in ids
            elif key == "ACTIVE":
                ok &= bool(u["ACTIVE"]) == truthy(v)
            elif key in u:
                vals = v if isinstance(v, list) else [v]
                ok &= str(u[key]) in {str(x) for x in vals}
        if ok:
            out.append(_public_user(u))
    start = int(p.get("start") or 0) if str(p.get("start") or "0").lstrip("-").isdigit() else 0
    page = out[start:start + 50]
    return MethodResult(page, total=len(out), next=start + 50 if start + 50 < len(out) else None)


@method("scope")
def scope(ctx: Ctx, p):
    return [s for s in re.split(r"[,\s]+", ctx.portal.cloud.scope) if s]


@method("method.get")
def method_get(ctx: Ctx, p):
    name = str(p.get("name") or p.get("NAME") or "").lower()
    return {"isExisting": name in METHODS, "isAvailable": name in METHODS}


# ====================================================================== events
def _check_handler(cloud, url) -> None:
    """HandlerHelper::checkCallback: http(s) only, host = the app's host (port ignored, as parse_url host)."""
    if not isinstance(url, str) or not url.strip():
        raise B24Error("ERROR_WRONG_HANDLER_URL", "Wrong handler URL", 400)
    parts = urlsplit(url.strip())
    if parts.scheme and parts.scheme.lower() not in ("http", "https"):
        raise B24Error("ERROR_UNSUPPORTED_PROTOCOL", "Unsupported handler protocol", 400)
    if not parts.scheme or not parts.hostname or parts.hostname.lower() != cloud.app_host.lower():
        raise B24Error("ERROR_WRONG_HANDLER_URL", "Wrong handler URL", 400)


@method("event.bind")
def event_bind(ctx: Ctx, p):
    portal = ctx.portal
    if not ctx.is_admin:
        raise B24Error("ACCESS_DENIED", "Access denied! Admin permissions required", 403)
    u = upper(p)
    event, handler = str(u.get("EVENT") or "").upper(), u.get("HANDLER")
    if not event:
        raise B24Error("ERROR_ARGUMENT", "Argument 'event' is null or empty", 400)
    if not handler:
        raise B24Error("ERROR_ARGUMENT", "Argument 'handler' is null or empty", 400)
    _check_handler(portal.cloud, handler)
    with portal.lock:
        if any(h["event"] == event and h["handler"] == handler for h in portal.event_handlers):
            raise B24Error("ERROR_CORE", "Handler already binded", 400)
        portal._handler_seq += 1
        portal.event_handlers.append({"id": portal._handler_seq, "event": event, "handler": handler,
                                      "auth_type": int(u.get("AUTH_TYPE") or 0),
                                      "offline": 1 if str(u.get("EVENT_TYPE", "")).lower() == "offline" else 0,
                                      "user_id": ctx.token.user_id})
    return True


@method("event.get")
def event_get(ctx: Ctx, p):
    if not ctx.is_admin:
        raise B24Error("ACCESS_DENIED", "Access denied! Admin permissions required", 403)
    return [{"event": h["event"], "handler": h["handler"], "auth_type": str(h["auth_type"]), "offline": h["offline"]}
            for h in ctx.portal.event_handlers]


@method("event.unbind")
def event_unbind(ctx: Ctx, p):
    portal = ctx.portal
    if not ctx.is_admin:
        raise B24Error("ACCESS_DENIED", "Access denied! Admin permissions required", 403)
    u = upper(p)
    event, handler = str(u.get("EVENT") or "").upper(), u.get("HANDLER")
    if not event:
        raise B24Error("ERROR_ARGUMENT", "Argument 'event' is null or empty", 400)
    with portal.lock:
        keep = [h for h in portal.event_handlers if not (h["event"] == event and (not handler or h["handler"] == handler))]
        count = len(portal.event_handlers) - len(keep)
        portal.event_handlers = keep
    return {"count": count}


# ====================================================================== bizproc.event.send / activity.log (§4.3–4.4)
def _internalize(ptype: str, multiple: bool, value, options=None):
    if multiple:
        vals = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
        return [_internalize(ptype, False, v, options) for v in vals]
    t = (ptype or "string").lower()
    if isinstance(value, list):
        value = value[0] if value else None
    if t == "bool":
        return value in (True, 1, "1", "Y", "y", "true", "True")
    if t == "int":
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return None
    if t == "double":
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return "" if value is None else str(value)


def _token_workflow(ctx: Ctx, token):
    parsed = ctx.portal.parse_event_token(token)
    if parsed is None:
        raise B24Error("ACCESS_DENIED", "Access denied!", 403)
    wf = ctx.portal.workflows.get(parsed[0])
    live = wf is not None and not wf.closed and wf.activity_name == parsed[1] and wf.event_id == parsed[2]
    return wf, live


@method("bizproc.event.send", "bizproc")
def event_send(ctx: Ctx, p):
    portal, cloud = ctx.portal, ctx.portal.cloud
    with portal.lock:
        portal.stats.event_send_calls += 1
    d = upper(p)
    with portal.lock:
        wf, live = _token_workflow(ctx, d.get("EVENT_TOKEN"))
        if not live:
            if wf is not None:
                wf.ignored_sends.append(d)
            if cloud.second_event_send == "ignore":
                return True
            status, code, desc = cloud.second_event_send_error
            raise B24Error(code, desc, status)
        declared = {k.lower(): (k, v) for k, v in (wf.robot.get("RETURN_PROPERTIES") or {}).items()}
        values = {}
        rv = d.get("RETURN_VALUES")
        if isinstance(rv, dict):
            for k, v in rv.items():
                if str(k).lower() in declared:
                    key, attrs = declared[str(k).lower()]
                    values[key] = _internalize(attrs.get("TYPE"), truthy(attrs.get("MULTIPLE")), v, attrs.get("OPTIONS"))
        wf.answers.append(d)
        wf.return_values.update(values)
        wf.log.append(d.get("LOG_MESSAGE") or "Received response from the application.")
        wf.closed, wf.event_id = True, None
    return True


def _activity_log_admin_only(ctx: Ctx) -> None:
    """The seed: bizproc.activity.log is for administrators (``activity_log_requires_admin``, default on)."""
    if ctx.portal.cloud.activity_log_requires_admin and not ctx.is_admin:
        raise B24Error("ACCESS_DENIED", "Access denied!", 403)


@method("bizproc.activity.log", "bizproc")
def activity_log(ctx: Ctx, p):
    portal = ctx.portal
    with portal.lock:
        portal.stats.activity_log_calls += 1
    _activity_log_admin_only(ctx)
    d = upper(p)
    with portal.lock:
        wf, live = _token_workflow(ctx, d.get("EVENT_TOKEN"))
        msg = d.get("LOG_MESSAGE")
        if not isinstance(msg, str) or not msg.strip():
            raise B24Error("ERROR_EMPTY_LOG_MESSAGE", "Empty log message!", 400)
        if live:
            wf.log.append(msg)
    return True
