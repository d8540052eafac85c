"""Robot call payloads: structure checks for the handler, typed property values for the worker.

Bitrix24 posts form-encoded PHP bracket keys (spec §3).  Property values arrive as strings whose shape
is only partly documented (§3.5, U5/U6): multiple values as ``k[0]``, ``k[]`` or a bare value, users as
``user_N`` or a bare id, dates in several formats.  We accept every reading and report anything else as
an input error, which the worker returns to the workflow instead of failing silently.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime

from .robots import Prop, Robot

PG_INT_MAX = 2**31 - 1  # RobotCall's integer columns


class MalformedCall(ValueError):
    """The body is not a robot call we can record (answered 400)."""


@dataclass
class CallEnvelope:
    code: str
    workflow_id: str
    event_token: str
    document_id: list[str]
    document_type: list[str]
    use_subscription: bool
    timeout_duration: int
    ts: int | None
    auth: dict
    raw_properties: dict = field(default_factory=dict)


def _list(value) -> list:
    """A PHP array arrives as a dict keyed "0", "1", … (or a plain string when single)."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (not str(k).isdigit(), int(k) if str(k).isdigit() else 0, str(k)))
        return [value[k] for k in keys]
    if isinstance(value, list):
        return value
    return [] if value in (None, "") else [value]


def envelope(form: dict, path_code: str) -> CallEnvelope:
    def text(key: str, limit: int) -> str:
        value = form.get(key)
        if not isinstance(value, str) or not value.strip():
            raise MalformedCall(f"{key} is required")
        if len(value) > limit:
            raise MalformedCall(f"{key} is too long")
        return value.strip()

    code = text("code", 64)
    if code != path_code:
        raise MalformedCall("code does not match the handler URL")
    document_id = [str(x) for x in _list(form.get("document_id"))]
    if len(document_id) != 3 or not all(document_id):
        raise MalformedCall("document_id must have three parts")
    auth = form.get("auth")
    if not isinstance(auth, dict):
        raise MalformedCall("auth is required")
    properties = form.get("properties", {})
    if not isinstance(properties, (dict, str)):
        raise MalformedCall("properties must be a set of values")
    try:
        timeout = int(form.get("timeout_duration") or 0)
        ts = int(form["ts"]) if re.fullmatch(r"[0-9]{1,12}", str(form.get("ts", ""))) else None
    except (TypeError, ValueError):
        raise MalformedCall("timeout_duration must be a number") from None
    return CallEnvelope(
        code=code, workflow_id=text("workflow_id", 64), event_token=text("event_token", 512),
        document_id=document_id, document_type=[str(x) for x in _list(form.get("document_type"))][:3],
        use_subscription=form.get("use_subscription") == "Y",
        timeout_duration=min(max(0, timeout), PG_INT_MAX), ts=ts, auth=auth,
        raw_properties=properties if isinstance(properties, dict) else {})


# --- typed values ------------------------------------------------------------------------------------
_USER = re.compile(r"^(?:user_)?(\d+)$", re.I)
_DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%m/%d/%Y")
_DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M",
                     "%Y-%m-%d %H:%M", "%m/%d/%Y %I:%M:%S %p")


def parse_bool(value) -> bool | None:
    text = str(value).strip().lower()
    if text in ("y", "yes", "1", "true", "on"):
        return True
    if text in ("n", "no", "0", "false", "off"):
        return False
    return None


def parse_user(value) -> int | None:
    m = _USER.match(str(value).strip())
    return int(m.group(1)) if m else None


def parse_date(value, with_time: bool) -> str | None:
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed.isoformat() if with_time else parsed.date().isoformat()
    except ValueError:
        pass
    for fmt in (_DATETIME_FORMATS + _DATE_FORMATS) if with_time else (_DATE_FORMATS + _DATETIME_FORMATS):
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return parsed.isoformat() if with_time else date(parsed.year, parsed.month, parsed.day).isoformat()
    return None


def _one(key: str, prop: Prop, value, errors: list[str]):
    text = (value if type(value) is str else str(value)).strip()
    if text == "":
        return None
    if prop.type == "string" or prop.type == "text":  # most properties: taken as they are
        return text
    label = prop.name.get("en", key)
    if prop.type == "bool":
        parsed = parse_bool(text)
    elif prop.type == "int":
        parsed = int(text) if re.fullmatch(r"[+-]?\d+", text) else None
    elif prop.type == "double":
        try:
            parsed = float(text.replace(",", "."))
        except ValueError:
            parsed = None
        if parsed is not None and not math.isfinite(parsed):
            parsed = None  # "1e400", "nan": JSON (and PostgreSQL's jsonb) has no such number
    elif prop.type == "user":
        parsed = parse_user(text)
        if parsed is None and text.startswith("group_"):
            errors.append(f"{label}: groups are not supported, choose people ({text})")
            return None
    elif prop.type in ("date", "datetime"):
        parsed = parse_date(text, prop.type == "datetime")
    elif prop.type == "select":
        parsed = text if text in (prop.options or {}) else None
    else:
        return text
    if parsed is None:
        errors.append(f"{label}: {text!r} is not a valid {prop.type}")
    return parsed


def typed_properties(robot: Robot, raw: dict) -> tuple[dict, list[str]]:
    """Values per the catalogue's declared types, defaults applied; plus readable input errors."""
    values: dict = {}
    errors: list[str] = []
    for key, prop in robot.properties.items():
        given = raw.get(key)
        if not prop.multiple and (given is None or type(given) is str):  # most: one value or none, as posted
            if given is not None:
                value = _one(key, prop, given, errors)
            else:
                value = None if prop.default is None else _one(key, prop, prop.default, [])
            if value is None and prop.required:
                errors.append(f"{prop.name.get('en', key)} is required")
            values[key] = value
            continue
        items = _list(given) if prop.multiple or isinstance(given, (dict, list)) else (
            [] if given is None else [given])
        parsed = [v for v in (_one(key, prop, item, errors) for item in items if not isinstance(item, dict))
                  if v is not None]
        if not parsed and prop.default is not None and given is None:
            parsed = [x for x in [_one(key, prop, prop.default, [])] if x is not None]
        if prop.multiple:
            values[key] = parsed
        else:
            if len(parsed) > 1:  # e.g. a rule saved while the property was still multiple
                errors.append(f"{prop.name.get('en', key)} takes one value (got {len(parsed)})")
            values[key] = parsed[0] if parsed else None
        if prop.required and not parsed:
            errors.append(f"{prop.name.get('en', key)} is required")
    return values, errors
