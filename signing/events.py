"""Bitrix24 portal events about signing (KEDO status changes), delivered to /b24/events/."""
from __future__ import annotations

PORTAL_EVENTS = ("ONSIGNB2EDOCUMENTSTATUSCHANGED", "ONSIGNB2EMEMBERSTATUSCHANGED")


def handle_portal_event(event: str, form: dict) -> str:
    from b24app.lifecycle import Rejected, verified_portal

    if event not in PORTAL_EVENTS:
        raise Rejected(400, f"unsupported event {event or '(none)'}")
    portal = verified_portal(form)
    data = form.get("data") if isinstance(form.get("data"), dict) else {}
    uid = str(data.get("documentUid", ""))
    if not uid:
        raise Rejected(400, "data[documentUid] is required")
    from .models import SignatureRequest
    from .tasks import refresh_request_status

    request = SignatureRequest.objects.filter(portal=portal, provider="b24kedo", external_id=uid).first()
    if request is None:
        return "ignored"
    # The event is a trigger: the worker re-reads the document's state with sign.b2e.document.get.
    refresh_request_status.delay_on_commit(request.pk, "event")
    return "queued"
