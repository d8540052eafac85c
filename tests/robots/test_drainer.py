"""Ingest off the publish path (issue 14): the handler only INSERTs, the drainer publishes committed rows.

Personas: portal A's queue server delivering robot calls; the broker is this test run's Redis DB.
"""
from __future__ import annotations

import base64
import json
import threading

import pytest
import redis as redis_lib
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from b24app.crypto import token_digest
from bizproc_ext import drainer
from bizproc_ext.models import RobotCall
from tests.robots.helpers import SEND_PROPS, deal_doc

DEAD_BROKER = "redis://127.0.0.1:1/0"


def queued_tasks() -> list[int]:
    """The call ids waiting in the broker's default queue."""
    raw = redis_lib.Redis.from_url(settings.CELERY_BROKER_URL).lrange("celery", 0, -1)
    out = []
    for m in raw:
        first = json.loads(base64.b64decode(json.loads(m)["body"]))[0][0]  # a call id, or a group's ids
        out.extend(first if isinstance(first, list) else [first])
    return sorted(out)


def deliver(portal, deal, n: int) -> list:
    return [portal.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
            for _ in range(n)]


@pytest.mark.django_db
def test_the_handler_publishes_nothing_and_the_drainer_publishes_each_call_once(portal_a, deal):
    flows = deliver(portal_a, deal, 3)
    assert all(wf.response_status == 200 for wf in flows)
    assert queued_tasks() == []  # nothing on the request path
    assert drainer.drain_once() == 3
    ids = sorted(RobotCall.objects.values_list("pk", flat=True))
    assert queued_tasks() == ids
    assert drainer.drain_once() == 0 and queued_tasks() == ids  # not published again
    assert not RobotCall.objects.filter(published_at__isnull=True).exists()


@pytest.mark.django_db
def test_a_broker_outage_costs_no_call(portal_a, deal):
    flows = deliver(portal_a, deal, 2)
    assert all(wf.response_status == 200 for wf in flows)  # the queue server hears "queued" regardless
    with pytest.raises(Exception):
        drainer.drain_once(broker_url=DEAD_BROKER)
    assert RobotCall.objects.filter(published_at__isnull=True).count() == 2  # still waiting, not lost
    assert drainer.drain_once() == 2 and len(queued_tasks()) == 2


@pytest.mark.django_db
def test_the_drainer_skips_calls_already_running_or_answered(portal_a, deal):
    deliver(portal_a, deal, 2)
    first = RobotCall.objects.order_by("pk").first()
    RobotCall.objects.filter(pk=first.pk).update(state=RobotCall.RUNNING)
    assert drainer.drain_once() == 1
    assert first.pk not in queued_tasks() and len(queued_tasks()) == 1


@pytest.mark.django_db(transaction=True)
def test_four_drainers_at_once_publish_every_committed_call_exactly_once(portal_a, deal):
    for _ in range(4):
        deliver(portal_a, deal, 30)
    counts, errors = [], []

    def run():
        try:
            while n := drainer.drain_once(limit=7):
                counts.append(n)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and sum(counts) == 120
    assert queued_tasks() == sorted(RobotCall.objects.values_list("pk", flat=True))  # each once


@pytest.mark.django_db
def test_a_burst_from_one_portal_reads_the_portal_once(portal_a, deal):
    deliver(portal_a, deal, 1)  # the first call of the burst reads and caches the portal
    with CaptureQueriesContext(connection) as queries:
        flows = deliver(portal_a, deal, 5)
    assert all(wf.response_status == 200 for wf in flows) and RobotCall.objects.count() == 6
    portal_reads = [q["sql"] for q in queries.captured_queries if 'FROM "b24app_portal"' in q["sql"]]
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('INSERT INTO "bizproc_ext_robotcall"')]
    assert portal_reads == [] and len(inserts) == 5


@pytest.mark.django_db
def test_a_rotated_token_is_accepted_at_once_and_a_forged_one_still_refused(portal_a, deal):
    wf = deliver(portal_a, deal, 1)[0]
    assert wf.response_status == 200
    # Another process stored a new application token (ONAPPUPDATE): this process still caches the old one.
    portal_a.db.__class__.objects.filter(pk=portal_a.db.pk).update(app_token_digest=token_digest("new-token-1"))
    rotated = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS,
                                       deliver=False)
    pairs = [(k, "new-token-1" if k == "auth[application_token]" else v) for k, v in rotated.pairs]
    assert portal_a.emu.post_robot_call(rotated, pairs).status_code == 200
    forged = [(k, "f" * 32 if k == "auth[application_token]" else v) for k, v in rotated.pairs]
    assert portal_a.emu.post_robot_call(rotated, forged).status_code == 403


@pytest.mark.django_db
def test_a_lone_call_is_published_with_its_portal_so_its_task_need_not_look_it_up(portal_a, deal):
    deliver(portal_a, deal, 1)
    drainer.drain_once()
    (message,) = redis_lib.Redis.from_url(settings.CELERY_BROKER_URL).lrange("celery", 0, -1)
    args, kwargs, _ = json.loads(base64.b64decode(json.loads(message)["body"]))
    assert args == [RobotCall.objects.get().pk] and kwargs == {"portal_id": portal_a.db.pk}
