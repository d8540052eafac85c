"""Celery tasks of the CRM card."""
from __future__ import annotations

import logging
import random

from celery import shared_task
from django.conf import settings
from django.db import connection
from django.db.models import F

from b24app import coordination
from b24app.models import Portal
from b24app.rest import B24Error
from bizproc_ext import riders
from signing.models import SignatureRequest

from . import fields, placements, sync, triggers
from .models import CardState
from .sync import sync_requests

log = logging.getLogger("b24sign.crmcard")

# Requests synced per run of a portal's task (one job each in the portal's coalescer, all from the task's
# thread: their commands share batches, with each other and with the calls running beside them).
CARDS_PER_RUN = 100


def _scheduled(portal_id: int) -> str:
    return f"crmcard:scheduled:{portal_id}"


def announce_change(request_id: int, portal_id: int) -> None:
    """A request's card has a change to push: counted on its CardState, synced with the portal's others."""
    _count_change(request_id)
    if not (settings.CRM_CARD_WITH_ANSWER and riders.hold(_WithTheAnswer(request_id, portal_id), key=request_id)):
        schedule_portal(portal_id)


class _WithTheAnswer:
    """A change announced while a robot call runs in this thread (its send committing): the card's commands
    ride in the request that answers the call's workflow (bizproc_ext.riders) instead of one sync_cards task
    of the portal 2 s later, which in a spread was a request of its own.  A card that could not ride, or whose
    request failed, takes that path after all (its row stays due: the beat's sweep also finds it)."""

    def __init__(self, request_id: int, portal_id: int):
        self.request_id, self.portal_id = request_id, portal_id

    def board(self, co):
        boarded = sync.ride(self.request_id, co)
        if boarded is None:
            return None
        due, land = boarded

        def landed() -> None:
            outcome = land()
            if isinstance(outcome, int) and outcome > 0:
                return  # sent and recorded, its changes counted synced in the same UPDATE
            if not _synced(self.request_id, due, outcome):
                schedule_portal(self.portal_id)

        return landed

    def missed(self) -> None:
        schedule_portal(self.portal_id)


def _count_change(request_id: int) -> None:
    """One statement: the first change of a new request creates its row with the change counted (the model's
    defaults for the rest), a later one (or a race with another process creating it) counts it in place."""
    fields = [f for f in CardState._meta.concrete_fields if not f.primary_key]
    row = CardState(request_id=request_id, due=1)
    quote, table = connection.ops.quote_name, connection.ops.quote_name(CardState._meta.db_table)
    due = quote(CardState._meta.get_field("due").column)
    with connection.cursor() as cur:
        cur.execute(f"INSERT INTO {table} ({', '.join(quote(f.column) for f in fields)}) "
                    f"VALUES ({', '.join(['%s'] * len(fields))}) "
                    f"ON CONFLICT ({quote(CardState._meta.get_field('request').column)}) "
                    f"DO UPDATE SET {due} = {table}.{due} + 1",
                    [f.get_db_prep_save(f.pre_save(row, True), connection) for f in fields])


def schedule_portal(portal_id: int) -> None:
    """One sync of the portal's due cards soon; changes arriving meanwhile ride in the same run."""
    if coordination.recall(_scheduled(portal_id)):
        return
    # The mark only dedupes: it expires by itself if the task is lost (and the beat sweep finds the rows).
    coordination.remember(_scheduled(portal_id), 1, ttl=settings.CRM_CARD_SYNC_DELAY + 30)
    sync_cards.apply_async((portal_id,), countdown=settings.CRM_CARD_SYNC_DELAY)


@shared_task(bind=True, acks_late=True, max_retries=8)
def sync_cards(self, portal_id: int) -> None:
    """Every request of the portal whose card has unsynced changes: many requests changing together (a
    burst of sends, a bulk signing) cost a few shared batches, not a request each (issue 14)."""
    coordination.remember(_scheduled(portal_id), 0, ttl=0.001)  # a change from now on schedules a new run
    portal = Portal.objects.filter(pk=portal_id).first()
    if portal is None:
        return
    due = list(CardState.objects.filter(request__portal_id=portal_id, due__gt=F("synced"))
               .order_by("pk").values_list("request_id", "due")[:CARDS_PER_RUN])
    if not due:
        return
    outcomes = sync_requests([rid for rid, _ in due])  # shared with the portal's running calls (sync.py)
    failed = sum(1 for rid, n in due if not _synced(rid, n, outcomes[rid]))
    if failed:  # a transient failure: those rows are still due
        log.warning("portal %s: %d of %d CRM cards not updated for now; retrying", portal.member_id[:8], failed,
                    len(due))
        raise self.retry(countdown=min(600.0, 10.0 * 2 ** self.request.retries) * random.uniform(0.8, 1.2))
    if len(due) == CARDS_PER_RUN:
        schedule_portal(portal_id)


def _synced(request_id: int, due: int, outcome) -> bool:
    """Record one card's sync; False when it failed for now (Bitrix24, its lock, a bug: it stays due)."""
    if isinstance(outcome, B24Error):
        if outcome.transient:
            log.warning("request %s: CRM card not updated for now: %s", request_id, outcome)
            return False
        log.warning("request %s: CRM card not updated: %s", request_id, outcome)
    elif isinstance(outcome, BaseException):
        return False
    CardState.objects.filter(request_id=request_id, synced__lt=due).update(synced=due)
    return True


@shared_task
def sync_due_cards() -> int:
    """Safety net: portals whose cards have changes no task took (a worker died, Redis lost the task)."""
    portals = set(CardState.objects.filter(due__gt=F("synced")).values_list("request__portal_id", flat=True))
    for portal_id in portals:
        schedule_portal(portal_id)
    return len(portals)


@shared_task
def sync_card(request_id: int) -> None:
    """A task queued before the per-portal sync_cards: its change joins the portal's next sync."""
    portal_id = SignatureRequest.objects.filter(pk=request_id).values_list("portal_id", flat=True).first()
    if portal_id:
        announce_change(request_id, portal_id)


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
