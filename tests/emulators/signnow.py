"""signNow REST API emulator (``SIGNNOW_API_BASE``), following /work/shared/specs/esign-providers.md §1 and the
seed ``signnow-invite-to-sign.txt`` -- not any product code.  It validates requests and answers with the
documented error shapes and codes; it is not a mock that accepts anything.

Quick use::

    emu = SignNowEmulator(basic_token=b64("cid:secret"), users={"owner@acme.test": "pw"}).start()
    ...  # product calls emu.base_url
    emu.sign(document_id, "signer@x.test")      # the emulated signer signs; webhooks are posted
    emu.decline(document_id, "signer@x.test", reason="no")
    emu.expire(document_id)                     # pending invites pass expiration_time (no webhook: none exists)

Constructor: ``SignNowEmulator(basic_token, users={email: password}, token_ttl=2592000)``.  Other hooks:
``issue_token(user=None)`` (skip the grant), ``field_invite(document_id, email)``, ``signed_pdf(doc, with_history)``,
``webhook_sender = fn(url, body, headers) -> status`` (deliver without HTTP, e.g. into Django's test client),
``async_webhooks = True`` (post from a thread), ``calls_to(method, path_regex)``.  ``sign``/``decline`` raise
ValueError when the signer has no open invite, it is not their turn (order), the invite expired or was declined.

Fault injection (shared with the Evia emulator): ``outage(seconds, status=503)``, ``fail_next(n, status=500)``,
``delay = seconds``, ``rate_limit_per_s = N`` (429 + ``Retry-After``), ``expire_tokens()``.

Inspectable state: ``documents[id]`` (fields, roles, field_invites, requests (freeform), cc/cc_step/viewers,
history, staged_invites, cancelled_invites, subscriptions hit), ``sent_emails`` (``{"kind": invite|reminder|
resend|copy|cc|completed, "to", "document_id", ...}``), ``calls`` (method, path, query, headers, json, status),
``webhook_deliveries`` (url, event, headers, body, status|error), ``subscriptions``, ``tokens``.

Error shapes used (spec §1.12): API validation ``{"errors":[{"code":65536,"message":...}]}``; bad token
``401 {"error":"invalid_token","code":1537}``; token endpoint ``400 {"error":"invalid_client"}`` /
``400 {"error":"Invalid credentials.","code":826}``; verify ``400 {"error":"invalid_token"}``; unknown document
``404 {"errors":[{"code":65582,"message":"Document not found"}]}``; 429 ``{"error":"Too Many Requests"}``.

Readings chosen where the spec marks a point UNCONFIRMED (§7), each switchable by an attribute:

* U-S1 webhook signature: header ``X-SignNow-Signature`` = HMAC-SHA256(raw body, secret_key), **hex** by
  default; ``webhook_secret_encoding = "base64"`` switches.  ``secret_key`` is read from ``attributes`` or the
  top level of the subscription body.  No signature header without a secret.  No retries.
* U-S2 ``with_history``: values in ``with_history_values`` (default ``("1",)``, the OAS reading) append one
  "Document history" page; add ``"yes"`` to emulate the Python-SDK reading.
* U-S3 ``reminder``: both the integer-days and the ``{remind_after, remind_before, remind_repeat}`` object are
  accepted; ``reminder_readings = {"int"}`` or ``{"object"}`` rejects the other with 65536.
* U-S4 ``expiration_days`` on invite: ``expiration_days_range = (3, 180)`` (MCP); ≤30 on ``POST /field_invite``.
* U-S5 subscription GET/PUT/DELETE: Bearer **or** Basic app token accepted (POST needs Bearer).
* U-S6 ``document.fieldinvite.signed`` is posted once per signer who finishes (third-party reading);
  ``document.complete`` once after the last signature.
* Declined invites keep ``status`` (default) and show ``declined[]`` + ``is_full_declined``;
  ``declined_invite_status = "declined"`` makes the status change too.  Expired invites keep ``pending`` with a
  past ``expiration_time``; ``expired_invite_status = "expired"`` switches.
* ``fieldinvitecancel`` removes the field invites from ``GET /document`` (kept in ``cancelled_invites``) and
  answers ``{"status":"success"}``; the document can then be invited again.
* Bad refresh token -> ``400 {"error":"invalid_grant"}`` (standard OAuth2; the OAS lists no code for it).
  Refresh rotates: the old refresh token dies, the old access token lives until its own expiry.
* ``historyfull`` answers the OAS plain array; ``history_shape = "object"`` gives the MCP
  ``{document_history, email_history_events}`` form.
* Uploads accept PDF only (the emulator cannot render Office files): empty/non-PDF -> 400 65536.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections import deque

from .base import EmulatorServer, Request, Response, json_response
from .pdf import is_pdf, make_pdf, page_count

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE_RE = re.compile(r"^\+?[0-9][0-9\s\-()]{5,20}$")


# ---------------------------------------------------------------------------------------------------------
# helpers shared with evia.py
# ---------------------------------------------------------------------------------------------------------
def parse_multipart(req: Request) -> tuple[dict, dict] | None:
    """``(fields, files)`` of a multipart/form-data body; files map name -> (filename, bytes, content_type)."""
    ctype = req.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        return None
    m = re.search(r'boundary="?([^";]+)"?', ctype)
    if not m:
        return None
    delim = b"--" + m.group(1).encode()
    fields: dict = {}
    files: dict = {}
    for part in req.body.split(delim)[1:]:
        if part.startswith(b"--"):
            break
        if part.startswith(b"\r\n"):
            part = part[2:]
        head, _, data = part.partition(b"\r\n\r\n")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        disp = headers.get("content-disposition", "")
        name_m = re.search(r'\bname="([^"]*)"', disp)
        if not name_m:
            continue
        file_m = re.search(r'filename="([^"]*)"', disp)
        if file_m is not None:
            files[name_m.group(1)] = (file_m.group(1), data, headers.get("content-type", ""))
        else:
            fields[name_m.group(1)] = data.decode("utf-8", "replace")
    return fields, files


def new_id() -> str:
    return secrets.token_hex(20)


def is_email(v) -> bool:
    return isinstance(v, str) and bool(EMAIL_RE.match(v)) and len(v) <= 150


def as_int(v):
    """int for ints and digit strings, else None (bools are not ints here)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()):
        return int(v)
    return None


def as_flag(v):
    """0/1 for the 0|1|"0"|"1"|true|false flags, else None."""
    if v in (0, 1, "0", "1") and not isinstance(v, float):
        return int(v)
    if isinstance(v, bool):
        return int(v)
    if v in ("true", "false"):
        return int(v == "true")
    return None


class ProviderEmulator(EmulatorServer):
    """EmulatorServer + fault injection, a detailed call log and webhook delivery (shared by both providers)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.lock = threading.RLock()
        self.calls: list[dict] = []
        self.delay: float = 0.0
        self.rate_limit_per_s: float | None = None
        self._recent: deque = deque()
        self._outage_until = 0.0
        self._outage_status = 503
        self._fail_queue: list[int] = []
        self.webhook_deliveries: list[dict] = []
        self.webhook_timeout = 10.0
        # ``webhook_sender(url, body: bytes, headers: dict) -> status`` replaces HTTP delivery when set
        # (e.g. to feed the Django test client); ``async_webhooks`` posts from a background thread.
        self.webhook_sender = None
        self.async_webhooks = False

    # --- fault injection -------------------------------------------------------------------------------
    def outage(self, seconds: float, status: int = 503) -> None:
        self._outage_until = time.time() + seconds
        self._outage_status = status

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        with self.lock:
            self._fail_queue.extend([status] * n)

    def start(self):
        super().start()
        return self

    def _fault(self, req: Request) -> Response | None:
        if time.time() < self._outage_until:
            return json_response({"error": "Service Unavailable"}, self._outage_status)
        with self.lock:
            if self._fail_queue:
                return json_response({"error": "Internal Server Error"}, self._fail_queue.pop(0))
            if self.rate_limit_per_s:
                t = time.time()
                while self._recent and self._recent[0] < t - 1.0:
                    self._recent.popleft()
                if len(self._recent) >= self.rate_limit_per_s:
                    return json_response({"error": "Too Many Requests"}, 429, **{"Retry-After": "1"})
                self._recent.append(t)
        return None

    def dispatch(self, req: Request) -> Response:
        if self.delay:
            time.sleep(self.delay)
        resp = self._fault(req)
        if resp is not None:
            with self._lock:
                self.requests_log.append((req.method, req.path, resp.status))
        else:
            resp = super().dispatch(req)
        try:
            body = req.json() if req.content_type == "application/json" else None
        except ValueError:
            body = None
        with self.lock:
            self.calls.append({"method": req.method, "path": req.path, "query": dict(req.query),
                               "headers": dict(req.headers), "json": body, "status": resp.status,
                               "ts": time.time()})
        return resp

    def calls_to(self, method: str, path_regex: str) -> list[dict]:
        return [c for c in self.calls if c["method"] == method and re.search(path_regex, c["path"])]

    # --- webhooks ---------------------------------------------------------------------------------------
    def _post(self, url: str, body: bytes, headers: dict, record: dict) -> None:
        record.update(url=url, body=body, headers=dict(headers))
        try:
            if self.webhook_sender is not None:
                record["status"] = self.webhook_sender(url, body, dict(headers))
            else:
                rq = urllib.request.Request(url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(rq, timeout=self.webhook_timeout) as r:
                    record["status"] = r.status
        except urllib.error.HTTPError as exc:
            record["status"] = exc.code
        except Exception as exc:  # no retry, like the providers
            record["error"] = repr(exc)
        with self.lock:
            self.webhook_deliveries.append(record)

    def _post_all(self, batch: list[tuple], gap: float = 0.0) -> None:
        """batch of (url, body, headers, record); posted in order, ``gap`` seconds apart."""
        def run():
            for i, item in enumerate(batch):
                if i and gap:
                    time.sleep(gap)
                self._post(*item)
        if not batch:
            return
        if self.async_webhooks:
            threading.Thread(target=run, daemon=True).start()
        else:
            run()


def _err(code: int, message: str, status: int = 400) -> Response:
    return json_response({"errors": [{"code": code, "message": message}]}, status)


def _not_found() -> Response:
    return _err(65582, "Document not found", 404)


INVALID_TOKEN = {"error": "invalid_token", "code": 1537}

FIELD_TYPES = {"signature", "initials", "text", "checkbox", "enumeration", "date", "radiobutton", "attachment",
               "hyperlink", "dropdown"}
TAG_TYPES = {"s": "signature", "i": "initials", "t": "text", "d": "date", "c": "checkbox", "f": "attachment",
             "dd": "enumeration"}
EVENTS = {
    "document.complete", "document.open", "document.update", "document.delete",
    "document.fieldinvite.create", "document.fieldinvite.sent", "document.fieldinvite.signed",
    "document.fieldinvite.decline", "document.fieldinvite.delete", "document.fieldinvite.reassign",
    "document.fieldinvite.replace", "document.freeform.create", "document.freeform.signed",
}
EVENTS |= {"user." + e for e in EVENTS} | {"user.template.copy", "template.copy", "user.document_group.create",
                                          "document_group.complete", "document_group.delete"}


class SignNowEmulator(ProviderEmulator):
    def __init__(self, basic_token: str, users: dict[str, str] | None = None, token_ttl: int = 2592000):
        super().__init__("signnow-emulator")
        self.basic_token = basic_token
        self.users = dict(users or {"owner@acme.test": "pw"})
        self.user_ids = {email.lower(): new_id() for email in self.users}
        self.token_ttl = token_ttl
        self.tokens: dict[str, dict] = {}          # access_token -> {user, expires_at, scope, refresh_token}
        self.refresh_tokens: dict[str, dict] = {}  # refresh_token -> {user, scope}
        self.documents: dict[str, dict] = {}
        self.field_invite_index: dict[str, str] = {}  # field invite id -> document id
        self.freeform_index: dict[str, str] = {}      # freeform invite id -> document id
        self.subscriptions: dict[str, dict] = {}
        self.sent_emails: list[dict] = []
        # switches (see module docstring)
        self.webhook_secret_encoding = "hex"
        self.with_history_values: tuple = ("1",)
        self.reminder_readings = {"int", "object"}
        self.expiration_days_range = (3, 180)
        self.declined_invite_status: str | None = None
        self.expired_invite_status: str | None = None
        self.history_shape = "array"
        self.email2_unverified_sender = False
        self.environment = "https://api-eval.signnow.com"
        self._routes()

    # ------------------------------------------------------------------------------------------------ routes
    def _routes(self):
        r = self.add_route
        r("POST", r"^/oauth2/token$", self.h_token)
        r("GET", r"^/oauth2/token$", self.h_verify)
        r("POST", r"^/oauth2/terminate$", self.h_terminate)
        r("GET", r"^/user$", self.h_user)
        r("POST", r"^/document$", self.h_upload)
        r("POST", r"^/document/fieldextract$", lambda req: self.h_upload(req, extract=True))
        r("PUT", r"^/document/(?P<doc_id>[0-9a-f]+)$", self.h_put_fields)
        r("GET", r"^/document/(?P<doc_id>[0-9a-f]+)$", self.h_get_document)
        r("POST", r"^/document/(?P<doc_id>[0-9a-f]+)/invite$", self.h_invite)
        r("PUT", r"^/fieldinvite/(?P<fi_id>[0-9a-f]+)/resend$", self.h_resend)
        r("DELETE", r"^/field_invite/(?P<fi_id>[0-9a-f]+)$", self.h_delete_field_invite)
        r("POST", r"^/field_invite$", self.h_replace_field_invite)
        r("POST", r"^/document/(?P<doc_id>[0-9a-f]+)/trigger_fieldinvite$", self.h_trigger)
        r("PUT", r"^/document/(?P<doc_id>[0-9a-f]+)/fieldinvitecancel$", self.h_cancel_field_invites)
        r("PUT", r"^/invite/(?P<inv_id>[0-9a-f]+)/cancel$", self.h_cancel_freeform)
        r("GET", r"^/v2/documents/(?P<doc_id>[0-9a-f]+)/free-form-invites$", self.h_freeform_list)
        r("POST", r"^/document/(?P<doc_id>[0-9a-f]+)/email2$", self.h_email2)
        r("GET", r"^/document/(?P<doc_id>[0-9a-f]+)/download$", self.h_download)
        r("GET", r"^/document/(?P<doc_id>[0-9a-f]+)/historyfull$", self.h_history)
        r("POST", r"^/api/v2/events$", self.h_sub_create)
        r("GET", r"^/api/v2/events$", self.h_sub_list)
        r("PUT", r"^/api/v2/events/(?P<sub_id>[0-9a-f]+)$", self.h_sub_update)
        r("DELETE", r"^/api/v2/events/(?P<sub_id>[0-9a-f]+)$", self.h_sub_delete)
        r("GET", r"^/v2/event-subscriptions$", self.h_sub_list)
        r("GET", r"^/v2/event-subscriptions/(?P<sub_id>[0-9a-f]+)/callbacks$", self.h_sub_callbacks)
        r("GET", r"^/v2/event-subscriptions/callbacks$", self.h_sub_callbacks)

    # ------------------------------------------------------------------------------------------------ auth
    def _issue(self, user: str, scope: str = "*", ttl: int | None = None) -> dict:
        access, refresh = new_id(), new_id()
        ttl = self.token_ttl if ttl is None else ttl
        self.tokens[access] = {"user": user, "expires_at": time.time() + ttl, "scope": scope,
                               "refresh_token": refresh}
        self.refresh_tokens[refresh] = {"user": user, "scope": scope}
        return {"expires_in": ttl, "token_type": "bearer", "access_token": access, "refresh_token": refresh,
                "scope": scope, "last_login": int(time.time())}

    def issue_token(self, user: str | None = None) -> str:
        """An access token for tests that skip the grant (first configured user by default)."""
        with self.lock:
            return self._issue(user or next(iter(self.users)))["access_token"]

    def expire_tokens(self) -> None:
        with self.lock:
            for t in self.tokens.values():
                t["expires_at"] = time.time() - 1

    def _basic_ok(self, req: Request) -> bool:
        auth = req.headers.get("authorization", "")
        return auth[:6].lower() == "basic " and hmac.compare_digest(auth[6:].strip(), self.basic_token)

    def _bearer(self, req: Request) -> str | None:
        auth = req.headers.get("authorization", "")
        if auth[:7].lower() != "bearer ":
            return None
        tok = self.tokens.get(auth[7:].strip())
        if not tok or tok["expires_at"] <= time.time():
            return None
        return tok["user"]

    def _user_or_401(self, req: Request):
        user = self._bearer(req)
        return (user, None) if user else (None, json_response(dict(INVALID_TOKEN), 401))

    def h_token(self, req: Request) -> Response:
        if not self._basic_ok(req):
            return json_response({"error": "invalid_client"}, 400)
        if req.content_type != "application/x-www-form-urlencoded":
            return json_response({"error": "invalid_request"}, 400)
        form = req.form()
        grant = form.get("grant_type")
        scope = form.get("scope") or "*"
        ttl = as_int(form.get("expiration_time")) if form.get("expiration_time") else None
        with self.lock:
            if grant == "password":
                user = next((u for u in self.users if u.lower() == str(form.get("username", "")).lower()), None)
                if not user or self.users[user] != form.get("password"):
                    return json_response({"error": "Invalid credentials.", "code": 826}, 400)
                return json_response(self._issue(user, scope, ttl))
            if grant == "refresh_token":
                rt = form.get("refresh_token") or ""
                info = self.refresh_tokens.pop(rt, None)  # rotation: single use
                if not info:
                    return json_response({"error": "invalid_grant"}, 400)
                return json_response(self._issue(info["user"], scope if form.get("scope") else info["scope"], ttl))
        return json_response({"error": "invalid_request"}, 400)

    def h_verify(self, req: Request) -> Response:
        auth = req.headers.get("authorization", "")
        tok = self.tokens.get(auth[7:].strip()) if auth[:7].lower() == "bearer " else None
        if not tok or tok["expires_at"] <= time.time():
            return json_response({"error": "invalid_token"}, 400)
        return json_response({"access_token": auth[7:].strip(), "scope": tok["scope"], "token_type": "bearer",
                              "expires_in": str(int(tok["expires_at"] - time.time()))})

    def h_terminate(self, req: Request) -> Response:
        user, err = self._user_or_401(req)
        if err:
            return err
        with self.lock:
            self.tokens.pop(req.headers["authorization"][7:].strip(), None)
        return json_response({"status": "success"})

    def h_user(self, req: Request) -> Response:
        user, err = self._user_or_401(req)
        if err:
            return err
        return json_response({"id": self.user_ids[user.lower()], "primary_email": user, "emails": [user],
                              "first_name": user.split("@")[0], "last_name": "", "active": "1"})

    # ------------------------------------------------------------------------------------------------ docs
    def _doc(self, req: Request, doc_id: str):
        """(user, doc, None) or (.., .., error response)."""
        user, err = self._user_or_401(req)
        if err:
            return None, None, err
        doc = self.documents.get(doc_id)
        if not doc or doc["owner"].lower() != user.lower():
            return user, None, _not_found()
        return user, doc, None

    def _history(self, doc: dict, event: str, email: str | None, **extra) -> None:
        doc["history"].append({
            "unique_id": new_id(), "document_id": doc["id"], "event": event, "email": email,
            "user_id": self.user_ids.get((email or "").lower(), ""), "ip_address": "127.0.0.1",
            "client_app_name": "signNow emulator", "client_timestamp": int(time.time()),
            "created": int(time.time()), **extra})

    def _email(self, doc: dict, kind: str, to: str, **extra) -> None:
        if doc.get("_emails_disabled") and kind in ("invite", "resend", "cc", "completed"):
            return
        self.sent_emails.append({"kind": kind, "to": to, "document_id": doc["id"],
                                 "document_name": doc["document_name"], "ts": time.time(), **extra})

    def h_upload(self, req: Request, extract: bool = False) -> Response:
        user, err = self._user_or_401(req)
        if err:
            return err
        mp = parse_multipart(req)
        if mp is None or "file" not in mp[1] or len([k for k in mp[1]]) != 1:
            return _err(65536, "Must upload one file")
        fields, files = mp
        filename, data, _ctype = files["file"]
        if not data:
            return _err(65536, "File is empty.")
        if not is_pdf(data):
            return _err(65536, "Invalid file type. Only PDF files are supported.")
        tags = None
        if extract and fields.get("Tags"):
            try:
                tags = json.loads(fields["Tags"])
                assert isinstance(tags, list)
            except (ValueError, AssertionError):
                return _err(65536, "Tags must be a valid JSON array.")
            for t in tags:
                missing = [k for k in ("tag_name", "role", "label", "required", "type") if k not in t]
                if missing:
                    return _err(65536, f"Tags: {', '.join(missing)} is required.")
        doc_id = new_id()
        name = fields.get("name") or re.sub(r"\.[A-Za-z0-9]+$", "", filename or "document")
        doc = {
            "id": doc_id, "document_name": name, "owner": user, "user_id": self.user_ids[user.lower()],
            "created": int(time.time()), "updated": int(time.time()), "pdf": data, "page_count": page_count(data),
            "fields": [], "role_ids": {}, "field_invites": [], "requests": [], "signatures": [],
            "cc": [], "cc_step": [], "viewers": [], "history": [], "staged_invites": [], "cancelled_invites": [],
            "deleted_invites": [], "invite_meta": {}, "completed": False,
        }
        if extract:
            doc["fields"] = self._extract_tags(data, tags or [])
        with self.lock:
            self.documents[doc_id] = doc
            self._history(doc, "created_document", user)
        return json_response({"id": doc_id})

    def _extract_tags(self, data: bytes, tags: list) -> list[dict]:
        text = data.decode("latin-1")
        fields = []
        for m in re.finditer(r"\{\{(t:[^{}]*)\}\}", text):
            attrs = {}
            for part in m.group(1).split(";"):
                k, _, v = part.partition(":")
                if k.strip():
                    attrs[k.strip()] = v.strip().strip('"')
            if not attrs.get("o"):
                continue
            fields.append({"type": TAG_TYPES.get(attrs.get("t", "s"), "text"), "role": attrs["o"],
                           "required": attrs.get("r", "y") == "y", "label": attrs.get("l", ""),
                           "name": attrs.get("l", ""), "x": 0, "y": 0, "width": int(attrs.get("w", 100) or 100),
                           "height": int(attrs.get("h", 20) or 20), "page_number": 0})
        for t in tags:
            if "{{%s}}" % t["tag_name"] in text:
                fields.append({"type": t["type"], "role": t["role"], "required": bool(t["required"]),
                               "label": t["label"], "name": t["tag_name"], "x": 0, "y": 0,
                               "width": t.get("width", 100), "height": t.get("height", 20), "page_number": 0})
        return fields

    def h_put_fields(self, req: Request, doc_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        try:
            body = req.json()
        except ValueError:
            return _err(65536, "Invalid JSON.")
        if not isinstance(body, dict):
            return _err(65536, "Invalid JSON.")
        fields = body.get("fields")
        if fields is None:
            # other document updates (texts, checks...) are accepted and ignored
            return json_response({"id": doc_id})
        if not isinstance(fields, list):
            return _err(65536, "fields must be an array.")
        out = []
        for i, f in enumerate(fields):
            if not isinstance(f, dict):
                return _err(65536, f"fields[{i}] must be an object.")
            for k in ("x", "y", "width", "height", "page_number", "type", "role", "required"):
                if k not in f:
                    return _err(65536, f"fields[{i}].{k} is required.")
            for k in ("x", "y", "width", "height", "page_number"):
                if as_int(f[k]) is None or as_int(f[k]) < 0:
                    return _err(65536, f"fields[{i}].{k} must be a non-negative integer.")
            if f["type"] not in FIELD_TYPES:
                return _err(65536, f"fields[{i}].type is invalid.")
            if as_int(f["page_number"]) >= max(doc["page_count"], 1):
                return _err(65536, f"fields[{i}].page_number is out of range.")
            if not isinstance(f["role"], str) or not f["role"].strip():
                return _err(65536, f"fields[{i}].role must not be empty.")
            out.append(dict(f))
        with self.lock:
            if any(fi["status"] in ("pending", "created") for fi in doc["field_invites"]):
                return _err(65536, "Document has a pending invite and cannot be edited.")
            doc["fields"] = out
            doc["updated"] = int(time.time())
        return json_response({"id": doc_id})

    def _roles(self, doc: dict) -> list[dict]:
        roles = []
        for f in doc["fields"]:
            name = f["role"]
            if name not in doc["role_ids"]:
                doc["role_ids"][name] = new_id()
            if all(r["name"] != name for r in roles):
                roles.append({"unique_id": doc["role_ids"][name], "signing_order": str(len(roles) + 1),
                              "name": name})
        return roles

    def _fi_public(self, fi: dict) -> dict:
        out = {k: v for k, v in fi.items() if not k.startswith("_")}
        expired = fi["status"] in ("pending", "created") and fi["expiration_time"] < time.time()
        if expired and self.expired_invite_status:
            out["status"] = self.expired_invite_status
        if fi["declined"] and self.declined_invite_status:
            out["status"] = self.declined_invite_status
        return out

    def document_json(self, doc: dict) -> dict:
        roles = self._roles(doc)
        role_by_name = {r["name"]: r for r in roles}
        return {
            "id": doc["id"], "document_name": doc["document_name"], "user_id": doc["user_id"],
            "owner": doc["owner"], "created": str(doc["created"]), "updated": str(doc["updated"]),
            "page_count": str(doc["page_count"]), "origin_document_id": None,
            "roles": roles,
            "fields": [{"id": doc["role_ids"].get(f["role"], "") + str(i), "type": f["type"],
                        "role_id": role_by_name[f["role"]]["unique_id"], "role": f["role"],
                        "json_attributes": {k: f.get(k) for k in ("x", "y", "width", "height", "page_number",
                                                                  "required", "label", "name")}}
                       for i, f in enumerate(doc["fields"])],
            "field_invites": [self._fi_public(fi) for fi in doc["field_invites"]],
            "requests": [{k: v for k, v in rq.items() if not k.startswith("_")} for rq in doc["requests"]],
            "signatures": list(doc["signatures"]),
            "routing_details": [{"cc": list(doc["cc"]), "cc_step": list(doc["cc_step"]),
                                 "viewers": list(doc["viewers"])}] if doc["invite_meta"] else [],
            "viewer_field_invites": list(doc["viewers"]),
            "document_group_info": {},
        }

    def h_get_document(self, req: Request, doc_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        with self.lock:
            return json_response(self.document_json(doc))

    # ------------------------------------------------------------------------------------------------ invite
    def _check_auth_fields(self, t: dict, where: str) -> Response | None:
        at = t.get("authentication_type")
        if at in (None, ""):
            return None
        if at not in ("password", "phone"):
            return _err(65536, f"{where}authentication_type must be one of: password, phone.")
        if at == "password" and not t.get("password"):
            return _err(65536, "authentication type must not be empty")
        if at == "phone":
            if not t.get("phone"):
                return _err(65536, "authentication type must not be empty")
            if not PHONE_RE.match(str(t["phone"])):
                return _err(65536, f"{where}phone must be a valid phone number.")
            if t.get("method", "sms") not in ("sms", "phone_call"):
                return _err(65536, f"{where}method must be one of: sms, phone_call.")
            if len(str(t.get("authentication_sms_message", ""))) > 140:
                return _err(65536, f"{where}authentication_sms_message must be at most 140 characters.")
        return None

    def _check_reminder(self, reminder, exp_days: int | None, where: str, max_days: int | None = None):
        if reminder is None:
            return None
        if isinstance(reminder, dict):
            if "object" not in self.reminder_readings:
                return _err(65536, f"{where}reminder must be an integer.")
            unknown = set(reminder) - {"remind_after", "remind_before", "remind_repeat"}
            if unknown:
                return _err(65536, f"{where}reminder has unknown keys: {', '.join(sorted(unknown))}.")
            for k, hi in (("remind_after", 179), ("remind_before", 179), ("remind_repeat", 7)):
                if k in reminder:
                    v = as_int(reminder[k])
                    if v is None or not 1 <= v <= hi:
                        return _err(65536, f"{where}reminder.{k} must be between 1 and {hi}.")
                    if k != "remind_repeat" and exp_days is not None and v >= exp_days:
                        return _err(65536, f"{where}reminder.{k} must be less than expiration_days.")
            return None
        v = as_int(reminder)
        if v is None:
            if "int" in self.reminder_readings:
                return _err(65536, f"{where}reminder must be an integer.")
            return _err(65536, f"{where}reminder must be an object.")
        if "int" not in self.reminder_readings:
            return _err(65536, f"{where}reminder must be an object.")
        if v < 0 or (max_days is not None and v > max_days):
            return _err(65536, f"{where}reminder is out of range.")
        if v and exp_days is not None and v >= exp_days:
            return _err(65536, f"{where}reminder must be less than expiration_days.")
        return None

    def h_invite(self, req: Request, doc_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        try:
            body = req.json()
        except ValueError:
            return _err(65536, "Invalid JSON.")
        if not isinstance(body, dict):
            return _err(65536, "Invalid JSON.")
        to = body.get("to")
        frm = body.get("from")
        if to is None:
            return _err(65536, "To must be a valid email.")
        if isinstance(to, str):
            return self._freeform_invite(req, doc, body, user)
        if not isinstance(to, list) or not to:
            return _err(65536, "to must be a non-empty array or an email.")
        if not is_email(frm):
            return _err(65536, "From must be a valid email.")
        if frm.lower() != doc["owner"].lower():
            return _err(65536, "Email not found")
        for k in ("subject", "message", "cc_subject", "cc_message"):
            if k in body and not isinstance(body[k], str):
                return _err(65536, f"{k} must be a string.")
        cc = body.get("cc", [])
        if not isinstance(cc, list) or not all(is_email(e) for e in cc):
            return _err(65536, "cc must be an array of valid emails.")
        cc_step = body.get("cc_step", [])
        if not isinstance(cc_step, list):
            return _err(65536, "cc_step must be an array.")
        for i, s in enumerate(cc_step):
            if not isinstance(s, dict) or not is_email(s.get("email")):
                return _err(65536, f"cc_step[{i}].email must be a valid email.")
            if "step" in s and (as_int(s["step"]) is None or as_int(s["step"]) < 1):
                return _err(65536, f"cc_step[{i}].step must be an integer starting from 1.")
        viewers = body.get("viewers", [])
        if not isinstance(viewers, list):
            return _err(65536, "viewers must be an array.")
        for i, v in enumerate(viewers):
            if not isinstance(v, dict) or not is_email(v.get("email")):
                return _err(65536, f"viewers[{i}].email must be a valid email.")
            if "order" in v and (as_int(v["order"]) is None or as_int(v["order"]) < 1):
                return _err(65536, f"viewers[{i}].order must be an integer starting from 1.")
        with self.lock:
            roles = self._roles(doc)
            if not roles:
                return _err(65594, "Cannot send a field invite: This document does not contain fields.")
            by_id = {r["unique_id"]: r for r in roles}
            by_name = {r["name"]: r for r in roles}
            lo, hi = self.expiration_days_range
            prepared, seen_roles = [], set()
            for i, t in enumerate(to):
                w = f"to[{i}]."
                if not isinstance(t, dict):
                    return _err(65536, f"{w[:-1]} must be an object.")
                if not is_email(t.get("email")):
                    return _err(65536, "To must be a valid email.")
                role = None
                if t.get("role_id"):
                    role = by_id.get(t["role_id"])
                    if not role:
                        return _err(65536, f"Role {t['role_id']} does not exist on document")
                elif t.get("role"):
                    role = by_name.get(t["role"])
                    if not role:
                        return _err(65536, f"Role {t['role']} does not exist on document")
                else:
                    return _err(65536, f"{w}role or {w}role_id is required.")
                if role["unique_id"] in seen_roles:
                    return _err(65536, f"Role {role['name']} is assigned more than once.")
                seen_roles.add(role["unique_id"])
                order = t.get("order", role["signing_order"])
                if as_int(order) is None or as_int(order) < 1:
                    return _err(65536, f"{w}order must be an integer starting from 1.")
                exp = t.get("expiration_days")
                if exp is not None and (as_int(exp) is None or not lo <= as_int(exp) <= hi):
                    return _err(65536, f"{w}expiration_days must be between {lo} and {hi}.")
                exp_days = as_int(exp) if exp is not None else 30
                bad = self._check_reminder(t.get("reminder"), exp_days, w) or self._check_auth_fields(t, w)
                if bad:
                    return bad
                for k in ("decline_by_signature", "reassign", "force_new_signature"):
                    if k in t and as_flag(t[k]) is None:
                        return _err(65536, f"{w}{k} must be 0 or 1.")
                if "language" in t and t["language"] not in ("en", "es", "fr"):
                    return _err(65536, f"{w}language must be one of: en, es, fr.")
                if t.get("redirect_target") is not None:
                    if t["redirect_target"] not in ("blank", "self"):
                        return _err(65536, f"{w}redirect_target must be one of: blank, self.")
                    if not t.get("redirect_uri"):
                        return _err(65536, f"{w}redirect_target requires redirect_uri.")
                for k in ("subject", "message", "signing_instructions", "prefill_signature_name"):
                    if k in t and not isinstance(t[k], str):
                        return _err(65536, f"{w}{k} must be a string.")
                prepared.append((t, role, as_int(order), exp_days))
            if any(fi["status"] in ("pending", "created", "fulfilled") for fi in doc["field_invites"]):
                return _err(65629, "Could not create duplicate field invite")
            doc["_emails_disabled"] = req.query.get("email") == "disable"
            doc["cc"], doc["cc_step"], doc["viewers"] = list(cc), list(cc_step), list(viewers)
            doc["invite_meta"] = {k: body.get(k) for k in ("from", "subject", "message", "cc_subject",
                                                           "cc_message")}
            doc["field_invites"] = []
            for t, role, order, exp_days in prepared:
                doc["field_invites"].append(self._new_field_invite(doc, t, role, order, exp_days, body))
            newly = self._advance(doc)
            for fi in newly:
                self._email(doc, "invite", fi["email"], subject=fi["_subject"], message=fi["_message"],
                            field_invite_id=fi["id"])
            for v in viewers:
                self._email(doc, "viewer", v["email"], order=v.get("order"))
            self._history(doc, "fieldinvite_sent", user)
            batch = self._events(doc, ["document.fieldinvite.create"], user)
        self._post_all(batch)
        return json_response({"status": "success"})

    def _new_field_invite(self, doc, t, role, order, exp_days, body) -> dict:
        fi_id = new_id()
        self.field_invite_index[fi_id] = doc["id"]
        now = int(time.time())
        return {
            "id": fi_id, "status": "created", "email": t["email"], "role": role["name"],
            "role_id": role["unique_id"], "created": str(now), "updated": str(now),
            "expiration_time": now + exp_days * 86400, "reminder": t.get("reminder"),
            "declined": [], "is_full_declined": False,
            "password_protected": "1" if t.get("authentication_type") == "password" else "0",
            "id_verification_required": "0", "is_embedded": "0",
            "email_statuses": [], "signer_user_id": self.user_ids.get(t["email"].lower()),
            "order": order,
            "_order": order, "_subject": t.get("subject") or body.get("subject"),
            "_message": t.get("message") or body.get("message"),
            "_authentication_type": t.get("authentication_type"), "_password": t.get("password"),
            "_phone": t.get("phone"), "_decline_by_signature": as_flag(t.get("decline_by_signature", 0)),
            "_raw": dict(t),
        }

    def _advance(self, doc: dict) -> list[dict]:
        """Activate the lowest open signing step: order N is pending only after every order < N is done."""
        active = [fi for fi in doc["field_invites"] if fi["status"] in ("created", "pending")]
        if not active or any(fi["declined"] for fi in doc["field_invites"]):
            return []
        current = min(fi["_order"] for fi in active)
        newly = []
        for fi in active:
            if fi["_order"] == current and fi["status"] == "created":
                fi["status"] = "pending"
                fi["updated"] = str(int(time.time()))
                fi["email_statuses"].append({"status": "sent", "created_at": int(time.time()),
                                             "last_reaction_at": None})
                newly.append(fi)
        return newly

    def _freeform_invite(self, req: Request, doc: dict, body: dict, user: str) -> Response:
        to, frm = body["to"], body.get("from")
        if not is_email(to):
            return _err(65536, "To must be a valid email.")
        if not is_email(frm):
            return _err(65536, "From must be a valid email.")
        if frm.lower() != doc["owner"].lower():
            return _err(65536, "Email not found")
        cc = body.get("cc")
        if cc is not None:
            ccs = cc if isinstance(cc, list) else [cc]
            if not all(is_email(e) for e in ccs):
                return _err(65536, "CC must be a valid email.")
        for k in ("subject", "message", "cc_subject", "cc_message"):
            if k in body and not isinstance(body[k], str):
                return _err(65536, f"{k} must be a string.")
        if "language" in body and body["language"] not in ("en", "es", "fr"):
            return _err(65536, "language must be one of: en, es, fr.")
        inv_id = new_id()
        with self.lock:
            doc["_emails_disabled"] = req.query.get("email") == "disable"
            doc["requests"].append({
                "id": inv_id, "unique_id": inv_id, "user_id": doc["user_id"], "created": str(int(time.time())),
                "originator_email": frm, "signer_email": to, "signature_id": None, "canceled": None,
                "email_statuses": [{"status": "sent", "created_at": int(time.time())}],
                "_cc": cc, "_subject": body.get("subject"), "_message": body.get("message"),
            })
            self.freeform_index[inv_id] = doc["id"]
            self._email(doc, "invite", to, subject=body.get("subject"), message=body.get("message"),
                        freeform_invite_id=inv_id)
            self._history(doc, "freeform_invite_sent", user)
            batch = self._events(doc, ["document.freeform.create"], user)
        self._post_all(batch)
        return json_response({"result": "success", "id": inv_id,
                              "callback_url": body.get("callback_url") or "none"})

    # ------------------------------------------------------------------------------------------------ lifecycle
    def _find_fi(self, fi_id: str):
        doc = self.documents.get(self.field_invite_index.get(fi_id, ""))
        if not doc:
            return None, None
        fi = next((f for f in doc["field_invites"] if f["id"] == fi_id), None)
        return doc, fi

    def h_resend(self, req: Request, fi_id: str) -> Response:
        user, err = self._user_or_401(req)
        if err:
            return err
        with self.lock:
            doc, fi = self._find_fi(fi_id)
            if not fi or doc["owner"].lower() != user.lower():
                return _err(65536, "could not resend")
            if fi["status"] == "created":
                return _err(65536, "Could not resend: routing out of order.")
            if fi["status"] != "pending" or fi["declined"]:
                return _err(65536, "could not resend")
            if fi["expiration_time"] < time.time():
                return _err(65536, "Could not resend expired invite.")
            self._email(doc, "resend", fi["email"], field_invite_id=fi_id, subject=fi["_subject"])
            fi["email_statuses"].append({"status": "resent", "created_at": int(time.time()),
                                         "last_reaction_at": None})
        return json_response({"status": "success"})

    def h_delete_field_invite(self, req: Request, fi_id: str) -> Response:
        user, err = self._user_or_401(req)
        if err:
            return err
        with self.lock:
            doc, fi = self._find_fi(fi_id)
            if not fi or doc["owner"].lower() != user.lower():
                return _err(66502, "Field invite not found.", 404)
            if fi["status"] == "fulfilled":
                return _err(65536, "Field invite is already fulfilled.")
            doc["field_invites"].remove(fi)
            doc["deleted_invites"].append(fi)
            self._history(doc, "fieldinvite_deleted", user, role=fi["role"])
            batch = self._events(doc, ["document.fieldinvite.delete"], user)
        self._post_all(batch)
        return json_response({"status": "success"})

    def h_replace_field_invite(self, req: Request) -> Response:
        user, err = self._user_or_401(req)
        if err:
            return err
        try:
            body = req.json()
        except ValueError:
            return _err(65536, "Invalid JSON.")
        if not isinstance(body, dict):
            return _err(65536, "Invalid JSON.")
        if not is_email(body.get("email")):
            return _err(65538, "Email must be a valid email.")
        if "is_replace" not in body or body["is_replace"] not in (True, False, "true", "false", 1, 0, "1", "0"):
            return _err(65536, "is_replace is required.")
        exp = body.get("expiration_days")
        if exp is not None and (as_int(exp) is None or not 1 <= as_int(exp) <= 30):
            return _err(65536, "expiration_days must be between 1 and 30.")
        exp_days = as_int(exp) if exp is not None else 30
        bad = self._check_reminder(body.get("reminder"), exp_days if exp is not None else None, "", max_days=30) \
            or self._check_auth_fields(body, "")
        if bad:
            return bad
        if "decline_by_signature" in body and as_flag(body["decline_by_signature"]) is None:
            return _err(65536, "decline_by_signature must be 0 or 1.")
        with self.lock:
            doc = next((d for d in self.documents.values() if d["owner"].lower() == user.lower()
                        and body.get("role_id") in d["role_ids"].values()), None)
            if not doc or not body.get("role_id"):
                return _err(65582, "Role does not exist.")
            role = next(r for r in self._roles(doc) if r["unique_id"] == body["role_id"])
            if any(fi["role_id"] == role["unique_id"] for fi in doc["field_invites"] + doc["staged_invites"]):
                return _err(65615, "Invite already exists.")
            prev = next((fi for fi in reversed(doc["deleted_invites"]) if fi["role_id"] == role["unique_id"]), None)
            keep = body["is_replace"] in (True, "true", 1, "1")
            order = prev["_order"] if keep and prev else (as_int(body.get("order")) or int(role["signing_order"]))
            t = dict(body)
            if keep and prev:
                t.setdefault("subject", prev["_subject"])
                t.setdefault("message", prev["_message"])
            fi = self._new_field_invite(doc, t, role, order, exp_days, doc["invite_meta"])
            doc["staged_invites"].append(fi)
        return json_response({"id": fi["id"]})

    def h_trigger(self, req: Request, doc_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        with self.lock:
            if not doc["staged_invites"]:
                return _err(65615, "Field invite missing on this document.")
            doc["field_invites"].extend(doc["staged_invites"])
            doc["staged_invites"] = []
            for fi in self._advance(doc):
                self._email(doc, "invite", fi["email"], subject=fi["_subject"], message=fi["_message"],
                            field_invite_id=fi["id"])
            self._history(doc, "fieldinvite_replaced", user)
            batch = self._events(doc, ["document.fieldinvite.replace"], user)
        self._post_all(batch)
        return json_response({"status": "success"})

    def h_cancel_field_invites(self, req: Request, doc_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        try:
            body = req.json() if req.body else {}
        except ValueError:
            return _err(65536, "Invalid JSON.")
        reason = body.get("reason") if isinstance(body, dict) else None
        if not isinstance(reason, str) or not reason.strip():
            return _err(65536, "The reason value must not be empty string.")
        with self.lock:
            if not doc["field_invites"] and not doc["staged_invites"]:
                return _err(65615, "Field invite missing on this document.")
            for fi in doc["field_invites"] + doc["staged_invites"]:
                fi["_cancel_reason"] = reason
            doc["cancelled_invites"].extend(doc["field_invites"] + doc["staged_invites"])
            doc["field_invites"], doc["staged_invites"] = [], []
            self._history(doc, "fieldinvite_canceled", user, reason=reason)
        return json_response({"status": "success"})

    def h_cancel_freeform(self, req: Request, inv_id: str) -> Response:
        user, err = self._user_or_401(req)
        if err:
            return err
        with self.lock:
            doc = self.documents.get(self.freeform_index.get(inv_id, ""))
            rq = next((r for r in doc["requests"] if r["id"] == inv_id), None) if doc else None
            if not rq or doc["owner"].lower() != user.lower():
                return _err(65582, "Invite not found", 404)
            if rq["signature_id"]:
                return _err(65536, "Invite is already fulfilled.")
            if rq["canceled"]:
                return _err(65536, "Invite is already canceled.")
            body = {}
            try:
                body = req.json() if req.body else {}
            except ValueError:
                pass
            rq["canceled"] = str(int(time.time()))
            rq["_cancel_reason"] = (body or {}).get("reason") if isinstance(body, dict) else None
            self._history(doc, "freeform_invite_canceled", user)
        return json_response({"status": "success"})

    def h_freeform_list(self, req: Request, doc_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        with self.lock:
            data = [{"id": r["id"], "email": r["signer_email"], "created": int(r["created"]),
                     "status": "fulfilled" if r["signature_id"] else "cancelled" if r["canceled"] else "pending"}
                    for r in doc["requests"]]
        return json_response({"data": data, "meta": {"pagination": {
            "total": len(data), "count": len(data), "per_page": 50, "current_page": 1, "total_pages": 1}}})

    def h_email2(self, req: Request, doc_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        try:
            body = req.json()
        except ValueError:
            return _err(65536, "Invalid JSON.")
        emails = body.get("emails") if isinstance(body, dict) else None
        if not isinstance(emails, list) or not emails:
            return _err(65536, "emails must not be empty.")
        if len(emails) > 5:
            return _err(65536, "emails must contain at most 5 items.")
        if not all(is_email(e) for e in emails):
            return _err(65536, "emails must contain valid emails.")
        if self.email2_unverified_sender:
            return _err(22200, "Unverified sender email")
        with self.lock:
            for e in emails:
                self._email(doc, "copy", e, subject=body.get("subject"), message=body.get("message"))
        return json_response({"status": "success"})

    # ------------------------------------------------------------------------------------------------ files
    def signed_pdf(self, doc: dict, with_history: bool) -> bytes:
        signers = [fi["email"] for fi in doc["field_invites"] if fi["status"] == "fulfilled"]
        signers += [r["signer_email"] for r in doc["requests"] if r["signature_id"]]
        n = max(doc["page_count"], 1)
        pages = [f"{doc['document_name']} - page {i + 1} of {n}" for i in range(n)]
        pages[-1] += "\n" + "\n".join(f"Signed by {e}" for e in signers)
        if with_history:
            lines = ["Document History", f"Document ID: {doc['id']}"]
            lines += [f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(h['created']))} UTC  {h['event']}  "
                      f"{h.get('email') or ''}" for h in doc["history"]]
            pages.append("\n".join(lines))
        return make_pdf(pages, title=doc["document_name"])

    def h_download(self, req: Request, doc_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        typ = req.query.get("type", "collapsed")
        if typ not in ("collapsed", "zip", "email"):
            return _err(65536, "type must be one of: collapsed, zip, email.")
        with self.lock:
            self._history(doc, "document_downloaded", user)
            pdf = self.signed_pdf(doc, req.query.get("with_history") in self.with_history_values)
        fname = doc["document_name"]
        if typ == "zip":
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as z:
                z.writestr(f"{fname}.pdf", pdf)
            return Response(200, buf.getvalue(), {"Content-Type": "application/zip",
                                                  "Content-Disposition": f'attachment; filename="{fname}.zip"'})
        return Response(200, pdf, {"Content-Type": "application/pdf",
                                   "Content-Disposition": f'attachment; filename="{fname}.pdf"'})

    def h_history(self, req: Request, doc_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        with self.lock:
            hist = [dict(h) for h in doc["history"]]
        if self.history_shape == "object":
            emails = [e for e in self.sent_emails if e["document_id"] == doc_id]
            return json_response({"document_history": hist, "email_history_events": [
                {"email": e["to"], "event": e["kind"], "created": int(e["ts"])} for e in emails]})
        return json_response(hist)

    # ------------------------------------------------------------------------------------------------ webhooks
    def h_sub_create(self, req: Request) -> Response:
        user, err = self._user_or_401(req)
        if err:
            return err
        try:
            body = req.json()
        except ValueError:
            return json_response({"code": 400, "message": "Invalid JSON."}, 400)
        if not isinstance(body, dict):
            return json_response({"code": 400, "message": "Invalid JSON."}, 400)
        event = body.get("event")
        if event in (None, ""):
            return _err(65582, "event must not be empty")
        if not isinstance(event, str):
            return _err(65582, "event must be string")
        if event not in EVENTS:
            return _err(65582, f"event {event} is not supported")
        if body.get("action") != "callback":
            return _err(65536, "Action must be equal 'callback'")
        attrs = body.get("attributes")
        if not isinstance(attrs, dict) or not attrs:
            return _err(65536, "attributes must not be empty")
        if not attrs.get("callback"):
            return _err(65536, "'callback' is missing.")
        if not re.match(r"^https?://[^\s/]+", str(attrs["callback"])):
            return _err(65536, "callback must be url")
        if "headers" in attrs and not isinstance(attrs["headers"], dict):
            return _err(65536, "headers must be an object")
        entity = body.get("entity_id")
        if not entity:
            return _err(65536, "entity_id must not be empty")
        with self.lock:
            if event.startswith("user."):
                allowed = entity == self.user_ids[user.lower()]
            else:
                d = self.documents.get(entity)
                allowed = bool(d and d["owner"].lower() == user.lower())
            if not allowed:
                return json_response({"code": 403, "message": "Subscription to event is not allowed"}, 403)
            sub_id = new_id()
            self.subscriptions[sub_id] = {
                "id": sub_id, "event": event, "entity_id": entity, "action": "callback", "owner": user,
                "json_attributes": {
                    "use_tls_12": bool(attrs.get("use_tls_12", False)),
                    "docid_queryparam": bool(attrs.get("docid_queryparam", False)),
                    "integration_id": attrs.get("integration_id"),
                    "callback_url": attrs["callback"], "headers": dict(attrs.get("headers") or {}),
                    "secret_key": attrs.get("secret_key") or body.get("secret_key"),
                    "delete_access_token": bool(attrs.get("delete_access_token",
                                                          body.get("delete_access_token", False))),
                },
                "created": int(time.time()), "callbacks": [],
            }
        return Response(204)

    def _sub_auth(self, req: Request):
        """Bearer (OAS) or Basic app token (Python SDK) -- U-S5. Returns (owner or '*', error)."""
        if self._basic_ok(req):
            return "*", None
        return self._user_or_401(req)

    def _sub_public(self, s: dict) -> dict:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in s.items()
                if k not in ("callbacks", "owner")}

    def h_sub_list(self, req: Request) -> Response:
        user, err = self._sub_auth(req)
        if err:
            return err
        with self.lock:
            data = [self._sub_public(s) for s in self.subscriptions.values()
                    if user == "*" or s["owner"].lower() == user.lower()]
        return json_response({"data": data})

    def h_sub_update(self, req: Request, sub_id: str) -> Response:
        user, err = self._sub_auth(req)
        if err:
            return err
        s = self.subscriptions.get(sub_id)
        if not s or (user != "*" and s["owner"].lower() != user.lower()):
            return json_response({"code": 404, "message": "Subscription not found"}, 404)
        try:
            body = req.json()
        except ValueError:
            return json_response({"code": 400, "message": "Invalid JSON."}, 400)
        attrs = (body or {}).get("attributes") or {}
        with self.lock:
            if body.get("event"):
                s["event"] = body["event"]
            ja = s["json_attributes"]
            if attrs.get("callback"):
                ja["callback_url"] = attrs["callback"]
            for k in ("use_tls_12", "docid_queryparam", "integration_id", "headers", "secret_key",
                      "delete_access_token"):
                if k in attrs:
                    ja[k] = attrs[k]
        return Response(204)

    def h_sub_delete(self, req: Request, sub_id: str) -> Response:
        user, err = self._sub_auth(req)
        if err:
            return err
        with self.lock:
            s = self.subscriptions.get(sub_id)
            if not s or (user != "*" and s["owner"].lower() != user.lower()):
                return json_response({"code": 404, "message": "Subscription not found"}, 404)
            del self.subscriptions[sub_id]
        return Response(204)

    def h_sub_callbacks(self, req: Request, sub_id: str | None = None) -> Response:
        user, err = self._sub_auth(req)
        if err:
            return err
        with self.lock:
            subs = [self.subscriptions[sub_id]] if sub_id in self.subscriptions else (
                [] if sub_id else list(self.subscriptions.values()))
            subs = [s for s in subs if user == "*" or s["owner"].lower() == user.lower()]
            if sub_id and not subs:
                return json_response({"code": 404, "message": "Subscription not found"}, 404)
            data = []
            for s in subs:
                for c in s["callbacks"]:
                    rec = c["_record"]
                    item = {k: v for k, v in c.items() if k != "_record"}
                    item.update(response_status_code=rec.get("status"), response_content=rec.get("error", ""),
                                request_end_time=c["request_start_time"], duration=0)
                    data.append(item)
        return json_response({"data": data})

    def sign_body(self, body: bytes, secret: str) -> str:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        return base64.b64encode(digest).decode() if self.webhook_secret_encoding == "base64" else digest.hex()

    def _events(self, doc: dict, events: list[str], initiator: str | None) -> list[tuple]:
        """Build (url, body, headers, record) for every subscription matching each document event."""
        batch = []
        for event in events:
            for s in self.subscriptions.values():
                if s["event"] == event and s["entity_id"] == doc["id"]:
                    pass
                elif s["event"] == "user." + event and s["entity_id"] == doc["user_id"]:
                    pass
                else:
                    continue
                ja = s["json_attributes"]
                url = ja["callback_url"]
                if ja.get("docid_queryparam"):
                    url += ("&" if "?" in url else "?") + "document_id=" + doc["id"]
                meta = {"timestamp": int(time.time()), "event": s["event"], "environment": self.environment,
                        "callback_url": url, "initiator_id": self.user_ids.get((initiator or "").lower(), ""),
                        "access_token": ""}
                if ja.get("delete_access_token"):
                    del meta["access_token"]
                else:
                    meta["access_token"] = self._issue(doc["owner"])["access_token"]
                payload = {"meta": meta, "content": {"document_id": doc["id"], "document_name": doc["document_name"],
                                                     "user_id": doc["user_id"], "viewer_user_unique_id": None}}
                raw = json.dumps(payload).encode()
                headers = {"Content-Type": "application/json", **{str(k): str(v) for k, v in ja["headers"].items()}}
                if ja.get("secret_key"):
                    headers["X-SignNow-Signature"] = self.sign_body(raw, ja["secret_key"])
                record = {"event": s["event"], "subscription_id": s["id"], "document_id": doc["id"],
                          "payload": payload}
                s["callbacks"].append({"id": new_id(), "entity_id": s["entity_id"], "event_subscription_id": s["id"],
                                       "event_subscription_active": True, "event_name": s["event"],
                                       "callback_url": url, "request_method": "POST",
                                       "request_start_time": int(time.time()), "request_content": payload,
                                       "request_headers": headers, "_record": record})
                batch.append((url, raw, headers, record))
        return batch

    # ------------------------------------------------------------------------------------------------ hooks
    def sign(self, document_id: str, email: str) -> None:
        """The emulated signer signs.  Raises ValueError when it is not their turn, expired, declined, etc."""
        with self.lock:
            doc = self.documents[document_id]
            fis = [fi for fi in doc["field_invites"] if fi["email"].lower() == email.lower()
                   and fi["status"] in ("created", "pending")]
            events = []
            if fis:
                fi = fis[0]
                if any(f["declined"] for f in doc["field_invites"]):
                    raise ValueError("invite was declined")
                if fi["status"] == "created":
                    raise ValueError("routing out of order: not this signer's turn yet")
                if fi["expiration_time"] < time.time():
                    raise ValueError("invite expired")
                fi["status"] = "fulfilled"
                fi["updated"] = str(int(time.time()))
                sig_id = new_id()
                doc["signatures"].append({"id": sig_id, "user_id": fi["signer_user_id"], "email": fi["email"],
                                          "role": fi["role"], "created": str(int(time.time()))})
                self._history(doc, "document_signing_session_completed", fi["email"], role=fi["role"])
                events.append("document.fieldinvite.signed")
                for nxt in self._advance(doc):
                    self._email(doc, "invite", nxt["email"], subject=nxt["_subject"], message=nxt["_message"],
                                field_invite_id=nxt["id"])
                done = all(f["status"] in ("fulfilled", "skipped") for f in doc["field_invites"])
            else:
                rq = next((r for r in doc["requests"] if r["signer_email"].lower() == email.lower()
                           and not r["signature_id"] and not r["canceled"]), None)
                if not rq:
                    raise ValueError(f"no open invite for {email} on {document_id}")
                rq["signature_id"] = new_id()
                doc["signatures"].append({"id": rq["signature_id"], "email": email,
                                          "created": str(int(time.time()))})
                self._history(doc, "document_signing_session_completed", email)
                events.append("document.freeform.signed")
                done = all(r["signature_id"] or r["canceled"] for r in doc["requests"]) and not any(
                    f["status"] in ("created", "pending") for f in doc["field_invites"])
            if done and not doc["completed"]:
                doc["completed"] = True
                events.append("document.complete")
                self._history(doc, "document_completed", None)
                for e in doc["cc"] + [s["email"] for s in sorted(doc["cc_step"], key=lambda s: s.get("step", 1))]:
                    self._email(doc, "cc", e, subject=doc["invite_meta"].get("cc_subject"))
                self._email(doc, "completed", doc["owner"])
            batch = self._events(doc, events, email)
        self._post_all(batch)

    def decline(self, document_id: str, email: str, reason: str = "Declined by signer") -> None:
        with self.lock:
            doc = self.documents[document_id]
            fi = next((f for f in doc["field_invites"] if f["email"].lower() == email.lower()
                       and f["status"] == "pending"), None)
            if not fi:
                raise ValueError(f"no pending field invite for {email} (freeform invites cannot be declined here)")
            fi["declined"].append({"declined_text": reason, "created": str(int(time.time())), "email": email})
            fi["is_full_declined"] = True
            fi["updated"] = str(int(time.time()))
            self._history(doc, "document_declined", email, reason=reason)
            self._email(doc, "declined", doc["owner"], reason=reason, signer=email)
            batch = self._events(doc, ["document.fieldinvite.decline"], email)
        self._post_all(batch)

    def expire(self, document_id: str) -> None:
        with self.lock:
            doc = self.documents[document_id]
            for fi in doc["field_invites"]:
                if fi["status"] in ("created", "pending"):
                    fi["expiration_time"] = int(time.time()) - 1

    def field_invite(self, document_id: str, email: str) -> dict:
        """The (internal) field invite record for a signer, for assertions."""
        return next(f for f in self.documents[document_id]["field_invites"] if f["email"].lower() == email.lower())
