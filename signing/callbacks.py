"""Provider callbacks, applied to their request, including the ones that arrive before the send is over.

A signer can sign seconds after the invite (or through an embedded link) while our worker is still
inside ``send()``: the request's ``external_id`` is written only when ``send()`` returns.  But the
provider's id is in the request's checkpoints from the moment it exists, so such a callback still finds
its request; it is recorded at once and replayed the moment the send is recorded (``request_sent``),
instead of waiting for the first poll.
"""
from __future__ import annotations

import logging

from django.db import transaction

from b24app.rest import B24Error

from . import services
from .base import ProviderError, SignerState, StatusSnapshot, WebhookEvent
from .models import RequestEvent, SignatureRequest

log = logging.getLogger("b24sign.webhooks")

EARLY, REPLAYED = "callback-early", "callback-replayed"


def find_request(account, external_id: str) -> SignatureRequest | None:
    """The request this provider id belongs to: by ``external_id``, or, while its send is still running,
    by the ids its checkpoints hold (only this account's in-flight sends: a handful of rows)."""
    if not external_id:
        return None
    req = SignatureRequest.objects.filter(account=account, external_id=external_id).first()
    if req is not None:
        return req
    for candidate in SignatureRequest.objects.filter(account=account, send_phase="sending", external_id=""):
        if external_id in _ids(candidate.provider_state):
            return candidate
    return None


def _ids(state, depth: int = 0) -> set[str]:
    """Every scalar id in a provider's checkpoint (ids may sit in nested maps, e.g. Evia's signatories)."""
    if depth > 3:
        return set()
    if isinstance(state, dict):
        return set().union(*(_ids(v, depth + 1) for v in state.values())) if state else set()
    if isinstance(state, list):
        return set().union(*(_ids(v, depth + 1) for v in state)) if state else set()
    return {str(state)} if isinstance(state, (str, int)) and not isinstance(state, bool) and str(state) else set()


def hinted_snapshot(event: WebhookEvent, light: dict) -> StatusSnapshot:
    """For providers whose callbacks are the only status source: the hint, plus the signer who acted."""
    signer_status = {"partially_signed": "signed", "completed": "signed", "declined": "declined"}
    signers = []
    if event.signer_email and event.status_hint in signer_status:
        signers = [SignerState(email=event.signer_email, status=signer_status[event.status_hint])]
    return StatusSnapshot(status=event.status_hint, signers=signers, raw=light)


def apply(req: SignatureRequest, event: WebhookEvent, light: dict, refresh) -> bool:
    """One verified callback (inside the caller's transaction).  False if it was seen before.
    ``refresh(pk)`` re-reads the status from the provider (a task, after commit)."""
    if not req.log("webhook", event.kind, source="webhook", payload=light, dedupe_key=f"wh:{event.dedupe_key}"[:255]):
        return False  # the same delivery again
    if event.files:
        try:
            services.store_signed_files(req, event.files)
        except ProviderError as exc:  # not a PDF, or too big: never reaches the CRM; finalize asks the API
            log.warning("webhook for request %s: attached file refused (%s)", req.public_id, exc)
    if req.send_phase != "sent":  # the send is still running: keep it for the replay
        req.log(EARLY, event.kind, source="webhook", payload={
            "status_hint": event.status_hint or "", "signer_email": event.signer_email or "", "raw": light})
        pk = req.pk
        transaction.on_commit(lambda: replay_if_sent(pk), robust=True)  # the send may have ended meanwhile
    elif event.status_hint:
        services.apply_snapshot(req, hinted_snapshot(event, light), "webhook")
    else:  # a bare trigger: re-read the state from the provider
        transaction.on_commit(lambda pk=req.pk: refresh(pk), robust=True)
    return True


def replay_if_sent(pk: int) -> None:
    # Nearly every send had no callback during it: one cheap query, and the request is loaded only if it had.
    if not RequestEvent.objects.filter(request_id=pk, kind=EARLY, request__send_phase="sent").exists():
        return
    req = SignatureRequest.objects.select_related("account", "portal").filter(pk=pk, send_phase="sent").first()
    if req is not None:
        replay(req)


def replay(req: SignatureRequest) -> int:
    """Apply the callbacks that came while the send was running, each once (claimed by a conditional
    UPDATE, since the webhook view and the worker may both get here)."""
    done = 0
    for event in RequestEvent.objects.filter(request=req, kind=EARLY).order_by("created_at", "id"):
        if not RequestEvent.objects.filter(pk=event.pk, kind=EARLY).update(kind=REPLAYED):
            continue
        payload = event.payload or {}
        hint = payload.get("status_hint") or ""
        req.refresh_from_db()
        try:
            with transaction.atomic():
                if hint:
                    fake = WebhookEvent(kind=event.message, external_id=req.external_id, dedupe_key="",
                                        status_hint=hint, signer_email=payload.get("signer_email") or "")
                    services.apply_snapshot(req, hinted_snapshot(fake, payload.get("raw") or {}), "webhook")
                else:
                    services.apply_snapshot(req, req.account.provider_impl().status(req), "webhook")
        except (ProviderError, B24Error) as exc:  # the poller (first poll within minutes) catches up
            log.info("request %s: replay of an early callback failed: %s", req.pk, exc)
        done += 1
    return done
