"""Evia Sign callbacks: the captured v1 shape (spec §2.8), which Evia does not sign (U-E4).

Authenticity comes from the secret segment of our webhook URL (checked by the view) and from the caller
accepting only ``RequestId``s we created; here we accept only the known shape and decode attached files::

    {RequestId, UserName, Email, Subject, EventId, EventDescription, EventTime,
     Documents?[{DocumentName, DocumentContent (base64)}]}
"""
from __future__ import annotations

import base64
import binascii
import json
import logging

from signing import states
from signing.base import SignedFiles, WebhookEvent, WebhookRejected

from .client import ci_get

log = logging.getLogger("b24sign.providers.evia")

# EventId -> (kind, status hint).  5 comes from a code comment only (U-E5); no expiry event exists.
EVENTS = {
    1: ("SignRequestReceived", states.SENT),
    2: ("SignatoryCompleted", states.PARTIALLY_SIGNED),
    3: ("RequestCompleted", states.COMPLETED),
    5: ("RequestRejected", states.DECLINED),
}
MAX_BODY = 60 * 1024 * 1024  # completed callbacks carry base64 PDFs


def parse_callback(body: bytes) -> list[WebhookEvent]:
    if len(body) > MAX_BODY:
        raise WebhookRejected("callback body too large")
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected("callback body is not JSON") from None
    items = data if isinstance(data, list) else [data]
    if not items:
        raise WebhookRejected("empty callback")
    return [_event(item) for item in items]


def _event(item) -> WebhookEvent:
    if not isinstance(item, dict):
        raise WebhookRejected("callback is not an object")
    request_id = ci_get(item, "RequestId")
    event_id = ci_get(item, "EventId")
    event_time = ci_get(item, "EventTime")
    if not isinstance(request_id, str) or not request_id.strip():
        raise WebhookRejected("callback has no RequestId")
    if isinstance(event_id, bool) or not str(event_id).strip().isdigit():
        raise WebhookRejected("callback has no numeric EventId")
    if not isinstance(event_time, str) or not event_time.strip():
        raise WebhookRejected("callback has no EventTime")
    event_id = int(str(event_id).strip())
    email = str(ci_get(item, "Email", default="") or "").strip()
    kind, hint = EVENTS.get(event_id, (str(ci_get(item, "EventDescription", default="") or f"Event{event_id}"), ""))
    if not hint:
        log.warning("Evia callback with unknown EventId %s for request %s", event_id, request_id)
    raw = {k: v for k, v in item.items() if str(k).lower() != "documents"}
    docs = ci_get(item, "Documents")
    if isinstance(docs, list):  # keep names in the history, never the (large) content
        raw["Documents"] = [{"DocumentName": ci_get(d, "DocumentName", default="")} for d in docs
                            if isinstance(d, dict)]
    files = _files(docs, request_id) if event_id == 3 else None
    return WebhookEvent(
        external_id=request_id.strip(),
        kind=kind,
        dedupe_key=f"{request_id.strip()}:{event_id}:{email}:{event_time.strip()}",
        raw=raw,
        status_hint=hint,
        signer_email=email,
        files=files,
    )


def _files(docs, request_id: str) -> SignedFiles | None:
    """The signed document (first non-audit attachment) and the audit trail when Evia attaches one."""
    if not isinstance(docs, list):
        return None
    signed: tuple[str, bytes] | None = None
    audit: tuple[str, bytes] | None = None
    for d in docs:
        name = str(ci_get(d, "DocumentName", default="") or "")
        content = ci_get(d, "DocumentContent")
        if not isinstance(content, str) or not content:
            continue
        try:
            data = base64.b64decode(content, validate=False)
        except (binascii.Error, ValueError):
            log.warning("Evia callback for %s: attachment %r is not base64", request_id, name)
            continue
        if "audit" in name.lower():
            audit = audit or (name, data)
        elif signed is None:
            signed = (name or "signed.pdf", data)
    if signed is None:
        return None
    return SignedFiles(pdf=signed[1], pdf_name=signed[0], audit=audit[1] if audit else None,
                       audit_name=audit[0] if audit else "")
