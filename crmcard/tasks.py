"""Celery tasks of the CRM card."""
from __future__ import annotations

import logging
import random

from celery import shared_task

from b24app.models import Portal
from b24app.rest import B24Error

from . import fields, placements, triggers
from .sync import sync_request

log = logging.getLogger("b24sign.crmcard")


@shared_task(bind=True, acks_late=True, max_retries=8)
def sync_card(self, request_id: int) -> None:
    try:
        sync_request(request_id)
    except B24Error as exc:
        if not exc.transient:
            log.warning("request %s: CRM card not updated: %s", request_id, exc)
            return
        raise self.retry(countdown=min(600.0, 10.0 * 2 ** self.request.retries) * random.uniform(0.8, 1.2)) from exc


def setup_portal(portal, client=None) -> dict:
    """Placements, triggers, fields: each part on its own, so one failing does not stop the others."""
    shown = {}
    for name, step in (("placements", placements.bind_all), ("triggers", triggers.register_all),
                       ("fields", fields.ensure_fields)):
        try:
            step(portal, client)
            shown[f"crm_{name}"] = "ok"
        except B24Error as exc:
            log.warning("portal %s: CRM card %s not set up: %s", portal.member_id[:8], name, exc)
            shown[f"crm_{name}"] = f"failed: {exc.error}"
    return shown


@shared_task
def setup_portal_card(portal_id: int) -> None:
    portal = Portal.objects.installed().filter(pk=portal_id).first()
    if portal:
        setup_portal(portal)


@shared_task
def recreate_fields(portal_id: int, entity_type_id: int) -> None:
    """A status field was deleted in Bitrix24: create it again once; a failure stays in Settings, not in a loop."""
    portal = Portal.objects.installed().filter(pk=portal_id).first()
    if portal:
        fields.ensure_fields(portal, only=[entity_type_id])
