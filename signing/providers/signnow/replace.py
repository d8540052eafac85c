"""signNow replace-signer: delete the old field invite, stage one for the new email, trigger it.

Each step tolerates the error signNow gives when it already ran, so a retry after a partial run picks up
where the last attempt stopped.
"""
from __future__ import annotations

import math
import time

from signing.base import ProviderError

from .documents import OPEN, as_float, detect_mode, document_id, read_document
from .invites import EMAIL_RE

REPLACE_MAX_EXPIRY = 30  # U-S4: a replacement invite takes at most 30 days


def replace_signer(client, request, old_email: str, new_email: str) -> None:
    if not EMAIL_RE.match(new_email or ""):
        raise ProviderError(f"signNow: {new_email or '(empty)'} is not a valid email address", permanent=True,
                            code="input")
    doc_id = document_id(request)
    doc = read_document(client, doc_id)
    if detect_mode(doc) == "freeform":
        raise ProviderError("signNow cannot replace the signer of a freeform invite; cancel and send again",
                            permanent=True, code="unsupported")
    invites = doc.get("field_invites") or []
    old = next((fi for fi in invites if fi.get("email", "").lower() == old_email.lower()
                and str(fi.get("status", "")).lower() in OPEN), None)
    new = next((fi for fi in invites if fi.get("email", "").lower() == new_email.lower()), None)
    if new is not None and old is None:
        return  # done already
    auth = _replacement_auth(request)
    if old is not None:
        role_id, expiry = old.get("role_id"), _remaining_expiry(old)
        _delete_invite(client, old)
    else:
        role_id, expiry = _orphan_role(doc, invites, old_email), REPLACE_MAX_EXPIRY
    _stage_invite(client, new_email, role_id, expiry, auth)
    _trigger(client, doc_id)


def _replacement_auth(request) -> dict:
    """The new signer gets the same authentication as the old one, or we refuse before touching anything.

    The request's options keep the robot's ``signer_auth`` (pipeline.request_options); the password itself
    is never in them.  If the request carries it encrypted (``signer_auth_secret``) it is used; otherwise
    (it is erased once sent) the replacement is refused rather than sent unprotected."""
    auth = str((request.options or {}).get("signer_auth") or "none")
    if auth == "password":
        secret = getattr(request, "signer_auth_secret", "") or ""
        if not secret:
            raise ProviderError("signNow: the signer is password-protected and the password is not kept; "
                                "cancel and send again", permanent=True, code="unsupported")
        return {"authentication_type": "password", "password": secret}
    if auth == "sms":
        raise ProviderError("signNow: an SMS-authenticated signer cannot be replaced (the new signer's phone "
                            "is unknown); cancel and send again", permanent=True, code="unsupported")
    return {}


def _remaining_expiry(old: dict) -> int:
    """The days the old invite had left, within what a replacement invite accepts."""
    days_left = (as_float(old.get("expiration_time")) - time.time()) / 86400
    return min(REPLACE_MAX_EXPIRY, max(1, math.ceil(days_left))) if days_left > 0 else REPLACE_MAX_EXPIRY


def _orphan_role(doc: dict, invites: list[dict], old_email: str) -> str:
    # Step 1 ran in an earlier attempt: the role left without an invite is the one to refill.
    taken = {fi.get("role_id") for fi in invites}
    orphans = [r for r in doc.get("roles") or [] if r.get("unique_id") not in taken]
    if len(orphans) != 1:
        raise ProviderError(f"signNow: {old_email} has no open invite on this document", permanent=True,
                            code="input")
    return orphans[0]["unique_id"]


def _delete_invite(client, old: dict) -> None:
    """Step 1."""
    try:
        client.json("DELETE", f"/field_invite/{old['id']}")
    except ProviderError as exc:
        if exc.code != "66502":
            raise


def _stage_invite(client, new_email: str, role_id, expiry: int, auth: dict) -> None:
    """Step 2."""
    try:
        client.json("POST", "/field_invite", {"email": new_email, "role_id": role_id, "is_replace": True,
                                              "expiration_days": expiry, "decline_by_signature": 1, **auth})
    except ProviderError as exc:
        if exc.code != "65615":  # "Invite already exists.": step 2 ran in an earlier attempt
            raise


def _trigger(client, doc_id: str) -> None:
    """Step 3."""
    try:
        client.json("POST", f"/document/{doc_id}/trigger_fieldinvite")
    except ProviderError as exc:
        if exc.code != "65615":  # nothing staged any more: step 3 ran in an earlier attempt
            raise
