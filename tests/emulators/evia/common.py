"""Evia Sign vocabularies, the error shape and body helpers used by every API area."""
from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from ..base import Response, json_response

E164_RE = re.compile(r"^\+[1-9]\d{7,14}$")
HEX_COLOR_RE = re.compile(r"^#(?:[0-9a-fA-F]{3}){1,2}$")
STAMP_TYPES = {"signature", "initial", "name", "email", "date", "text"}
EVENT_NAMES = {1: "SignRequestReceived", 2: "SignatoryCompleted", 3: "RequestCompleted", 5: "RequestRejected"}
CALLBACK_TYPE_NAMES = {"request.sent": 1, "signatory.completed": 2, "request.completed": 3, "request.rejected": 5}
WEBHOOK_EVENTS = {"request.sent": 1, "request.completed": 3}
SIGNATORY_FIELDS = {"email", "name", "order", "privatemessage", "signatorytype", "color", "otp"}
OTP_FIELDS = {"isrequired", "accesscode", "type", "mobilenumber"}
SIGN = "/_apis/sign/api/v2"


def _bad(message: str, errors: dict | None = None, status: int = 400) -> Response:
    title = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}.get(status, "Error")
    return json_response({"title": title, "status": status, "message": message, "errors": errors or {}}, status)


def _field_err(field: str, msg: str) -> Response:
    return _bad(f"{field}: {msg}", {field: [msg]})


def _ci(d: dict) -> dict:
    """Case-insensitive view: lower-case key -> value."""
    return {str(k).lower(): v for k, v in d.items()}


def _iso(ts: float | None = None) -> str:
    dt = datetime.fromtimestamp(ts or time.time(), tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
