"""Provider callbacks and signed-copy downloads.

A webhook is looked up by the secret path segment of its account (per-account URL), verified by the
provider (HMAC where it signs), recorded once per delivery, and handed to a worker: the answer is fast
and the effect is guarded by the request's state machine.
"""
from __future__ import annotations

import logging

from django.core import signing as django_signing
from django.db import transaction
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from . import services
from .base import ProviderError, SignerState, StatusSnapshot, WebhookRejected
from .models import ProviderAccount, SignatureRequest
from .tasks import refresh_request_status

log = logging.getLogger("b24sign.webhooks")
MAX_WEBHOOK_BODY = 60 * 1024 * 1024  # Evia may attach the signed PDF (base64) to its callback


@csrf_exempt
@require_POST
def webhook(request: HttpRequest, provider: str, secret: str) -> HttpResponse:
    account = ProviderAccount.objects.filter(webhook_secret_digest=ProviderAccount.digest(secret),
                                             provider=provider).select_related("portal").first()
    if account is None or not account.enabled or not account.portal.is_installed:  # disconnected: not ours
        return JsonResponse({"error": "unknown webhook"}, status=404)
    body = _read_body(request)
    if body is None:
        return JsonResponse({"error": "body too large"}, status=413)
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        events = account.provider_impl().parse_webhook(body, headers)
    except WebhookRejected as exc:
        log.warning("webhook for account %s rejected: %s", account.pk, exc)
        return JsonResponse({"error": str(exc)}, status=403)
    handled = 0
    for event in events:
        req = SignatureRequest.objects.filter(account=account, external_id=event.external_id).first()
        if req is None:
            continue  # not ours (or not yet recorded): nothing to do; the poller covers the race
        with transaction.atomic():
            if not req.log("webhook", event.kind, source="webhook", payload=_light(event.raw),
                           dedupe_key=f"wh:{event.dedupe_key}"[:255]):
                continue  # the same delivery again
            if event.files:
                try:
                    services.store_signed_files(req, event.files)
                except ProviderError as exc:  # not a PDF, or too big: never reaches the CRM; finalize asks the API
                    log.warning("webhook for request %s: attached file refused (%s)", req.public_id, exc)
            if event.status_hint:
                services.apply_snapshot(req, _hinted_snapshot(event), "webhook")
            else:  # a bare trigger: re-read the state from the provider
                transaction.on_commit(lambda pk=req.pk: refresh_request_status.delay(pk, "webhook"), robust=True)
        handled += 1
    return JsonResponse({"status": "ok", "handled": handled})


def _read_body(request: HttpRequest) -> bytes | None:
    """The body under this view's own limit, not Django's DATA_UPLOAD_MAX_MEMORY_SIZE (``request.body``
    refuses anything over 2 MiB, and a completed Evia callback carries the signed PDF in base64)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if declared > MAX_WEBHOOK_BODY:
        return None
    body = request.read(MAX_WEBHOOK_BODY + 1)
    return body if len(body) <= MAX_WEBHOOK_BODY else None


def _hinted_snapshot(event) -> StatusSnapshot:
    """For providers whose callbacks are the only status source: the hint, plus the signer who acted."""
    signer_status = {"partially_signed": "signed", "completed": "signed", "declined": "declined"}
    signers = []
    if event.signer_email and event.status_hint in signer_status:
        signers = [SignerState(email=event.signer_email, status=signer_status[event.status_hint])]
    return StatusSnapshot(status=event.status_hint, signers=signers, raw=_light(event.raw))


def _light(raw) -> dict:
    """The payload for the history, without embedded documents."""
    if not isinstance(raw, dict):
        return {}
    return {k: ("<omitted>" if k.lower() in ("documents", "documentcontent") else v) for k, v in raw.items()}


@require_GET
def signed_file(request: HttpRequest, token: str) -> HttpResponse:
    """The signed copy, by a signed link we returned to the workflow (valid 30 days)."""
    try:
        public_id, installation = services.load_signed_file_token(token)
    except django_signing.BadSignature:
        raise Http404("link expired or invalid")
    req = SignatureRequest.objects.filter(public_id=public_id).select_related("portal").first()
    if req is None or not req.signed_file or not req.portal.is_installed:  # links die with the installation
        raise Http404("no signed copy")
    if installation is not None and installation != int(req.portal.installed_at.timestamp()):
        raise Http404("no signed copy")
    name = f"{(req.document_name or req.title or 'document').rsplit('.', 1)[0]} - signed.pdf"
    return FileResponse(req.signed_file.open("rb"), as_attachment=True, filename=name,
                        content_type="application/pdf")
