"""signNow callbacks: verify, then parse into trigger events (the worker re-reads the document).

Verification (spec §7 U-S1; signNow documents ``secret_key`` only as "enables the HMAC security logic"):

* ``X-SignNow-Signature`` present: it must be HMAC-SHA256(raw body, our secret_key), in hex **or** base64
  (third-party receivers disagree on the encoding), compared in constant time;
* header absent: the static header we registered with the subscription (``attributes.headers``) must be
  there with our token;
* anything else is rejected.  The per-account secret URL path is checked by the view before we run.

Payload: ``{meta:{timestamp, event, environment, callback_url, initiator_id, access_token?},
content:{document_id, document_name, user_id, viewer_user_unique_id}}``.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from signing.base import WebhookEvent, WebhookRejected

SIGNATURE_HEADER = "x-signnow-signature"
TOKEN_HEADER = "X-B24Sign-Token"   # registered in attributes.headers; signNow sends it back verbatim


def signature_matches(body: bytes, secret: str, given: str) -> bool:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    given = given.strip()
    if given.lower().startswith("sha256="):
        given = given[7:]
    candidates = []
    try:
        candidates.append(bytes.fromhex(given))
    except ValueError:
        pass
    try:
        candidates.append(base64.b64decode(given, validate=True))
    except (binascii.Error, ValueError):
        pass
    # compare every reading (no early exit on the first mismatch)
    return any([hmac.compare_digest(c, digest) for c in candidates])


def verify(body: bytes, headers: dict, credentials: dict) -> None:
    headers = {k.lower(): v for k, v in headers.items()}
    secret = credentials.get("webhook_hmac_secret") or ""
    token = credentials.get("webhook_header_token") or ""
    given = headers.get(SIGNATURE_HEADER)
    if given is not None:
        if not secret:
            raise WebhookRejected("signNow: a signed callback arrived but no webhook secret is stored")
        if not signature_matches(body, secret, given):
            raise WebhookRejected("signNow: the callback signature does not match")
        return
    sent_token = headers.get(TOKEN_HEADER.lower())
    if token and sent_token is not None and hmac.compare_digest(sent_token.encode(), token.encode()):
        return
    raise WebhookRejected("signNow: the callback carries neither a valid signature nor our header")


def parse(body: bytes, headers: dict, credentials: dict) -> list[WebhookEvent]:
    verify(body, headers, credentials)
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise WebhookRejected("signNow: the callback body is not JSON") from exc
    if not isinstance(payload, dict):
        raise WebhookRejected("signNow: the callback body is not an object")
    meta = payload.get("meta") if isinstance(payload.get("meta"), dict) else {}
    content = payload.get("content") if isinstance(payload.get("content"), dict) else {}
    document_id = str(content.get("document_id") or "")
    if not document_id:
        raise WebhookRejected("signNow: the callback names no document")
    event = str(meta.get("event") or "unknown")
    meta = {k: v for k, v in meta.items() if k != "access_token"}  # never keep a token in our history
    parts = ["signnow", event, document_id, str(meta.get("timestamp", "")),
             str(meta.get("initiator_id") or content.get("user_id") or "")]
    if content.get("viewer_user_unique_id"):  # two signers opening it in the same second differ only by this
        parts.append(str(content["viewer_user_unique_id"]))
    dedupe = ":".join(parts)
    return [WebhookEvent(external_id=document_id, kind=event, dedupe_key=dedupe,
                         raw={"meta": meta, "content": content}, status_hint="")]
