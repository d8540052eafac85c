"""Bitrix24 portal events about signing (KEDO status changes), routed here by the platform.

``SigningConfig.ready()`` registers them with :func:`b24app.signals.register_portal_event`, so the
platform binds them on install and hands over verified calls.
"""
from __future__ import annotations

from b24app.lifecycle import Rejected
from b24app.models import Portal

from .models import SignatureRequest
from .tasks import refresh_request_status

PORTAL_EVENTS = ("ONSIGNB2EDOCUMENTSTATUSCHANGED", "ONSIGNB2EMEMBERSTATUSCHANGED")


def kedo_status_changed(portal: Portal, data: dict) -> str:
    uid = str(data.get("documentUid", ""))
    if not uid:
        raise Rejected(400, "data[documentUid] is required")
    request = SignatureRequest.objects.filter(portal=portal, provider="b24kedo", external_id=uid).first()
    if request is None:
        return "ignored"
    # The event is a trigger: the worker re-reads the document's state with sign.b2e.document.get.
    refresh_request_status.delay_on_commit(request.pk, "event")
    return "queued"
