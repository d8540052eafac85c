"""CRM cards synced while a provider-paced burst runs (issue 14, item 4).

Persona: portal A's manager moved many deals at once; the provider takes one send at a time, so every job
thread holds a call waiting for the provider, more calls are queued for a thread, and the answers trickle.
A card that changed meanwhile must ride in the next request of the running calls (their answers), neither
waiting behind the queued calls for a job thread nor costing a request of its own.
"""
from __future__ import annotations

import threading
import time
from urllib.parse import parse_qsl

import pytest
from django.db.models import F

from bizproc_ext import coalesce, pipeline
from bizproc_ext.models import RobotCall
from crmcard import tasks
from crmcard.models import CardState
from tests.robots.helpers import SEND_PROPS, deal_doc
from tests.support.memory_provider import MemoryProvider

pytestmark = pytest.mark.django_db(transaction=True)  # the job threads need committed rows

SEND_EACH = {**SEND_PROPS, "if_open_exists": "another"}


@pytest.fixture(autouse=True)
def cards_by_the_portals_sync(settings):
    """These are the portal's sync task's cases: the calls' own card changes do not ride in their answers
    (test_card_with_answer.py), as changes announced outside a call (a provider's webhook) never do."""
    settings.CRM_CARD_WITH_ANSWER = False


@pytest.fixture
def two_job_threads(settings, monkeypatch):
    """A worker process with two job threads (a pool of its own, shut down after the test)."""
    settings.ROBOT_COALESCE_THREADS = 2
    monkeypatch.setattr(coalesce, "_pool", None)
    yield
    if coalesce._pool is not None:
        coalesce._pool.shutdown(wait=True)


@pytest.fixture
def paced_provider(monkeypatch):
    """The provider takes the sends only once the test opens the gate (an account at its pace)."""
    gate, started = threading.Event(), threading.Semaphore(0)
    real = MemoryProvider.send

    def send(self, spec):
        started.release()
        assert gate.wait(60), "the test never opened the gate"
        return real(self, spec)

    monkeypatch.setattr(MemoryProvider, "send", send)
    yield gate, started
    gate.set()


def _commands(entry: dict, method: str) -> list[dict]:
    """The parameters of ``method``'s commands in one logged batch request."""
    return [dict(parse_qsl(query.partition("?")[2])) for query in entry["params"].get("cmd", {}).values()
            if str(query).startswith(method + "?")]


def test_a_card_sync_during_a_paced_burst_rides_in_the_running_calls_answer_request(
        portal_a, memory_account, memory_provider, deal, settings, two_job_threads, paced_provider):
    gate, started = paced_provider
    settings.ROBOT_COALESCE_WINDOW = 5.0  # the card's request may wait for its partners (it stops once all are in)
    emu = portal_a.emu
    # A request sent just before the burst: its card is due (its sync_cards task is what this test runs).
    earlier = emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_EACH)
    gate.set()
    pipeline.run(RobotCall.objects.get().pk)
    gate.clear()
    assert len(earlier.answers) == 1
    card = CardState.objects.get(request=RobotCall.objects.get().signature_request)
    assert card.due > card.synced

    flows = [emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_EACH) for _ in range(4)]
    ids = sorted(RobotCall.objects.exclude(answer_state="sent").values_list("pk", flat=True))
    done = threading.Event()
    assert coalesce.run_in_background(ids, then=lambda outcomes: done.set())
    for _ in range(2):  # both job threads hold a call waiting for the provider; two calls are queued
        assert started.acquire(timeout=30)
    emu.rest_log.clear()

    sync = threading.Thread(target=tasks.sync_cards, args=(portal_a.db.pk,))
    sync.start()
    try:
        co = coalesce._coalescers[portal_a.db.pk]
        deadline = time.monotonic() + 10
        while co.inside == 0 and time.monotonic() < deadline:  # the card's commands wait in the coalescer
            time.sleep(0.01)
        assert co.inside == 1, "the card sync waited for a job thread behind the queued calls"
    finally:
        gate.set()  # the provider takes the two running calls' sends: they answer
    sync.join(60)
    assert done.wait(60) and not sync.is_alive()

    assert [len(wf.answers) for wf in [earlier, *flows]] == [1] * 5
    card.refresh_from_db()
    assert card.synced == card.due and card.activity_id
    [card_request] = [e for e in emu.rest_log if _commands(e, "crm.activity.configurable.add")]
    answers = {c["EVENT_TOKEN"] for c in _commands(card_request, "bizproc.event.send")}
    assert answers == {wf.event_token for wf in flows[:2]}  # one request for the card and both answers, not three


def test_the_cards_of_a_quiet_portal_share_one_request_sent_at_once(portal_a, memory_account, memory_provider,
                                                                    deal):
    for _ in range(5):
        portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_EACH)
    for pk in RobotCall.objects.values_list("pk", flat=True):
        pipeline.run(pk)
    assert CardState.objects.filter(due__gt=F("synced")).count() == 5
    portal_a.emu.rest_log.clear()
    started = time.monotonic()
    tasks.sync_cards(portal_a.db.pk)
    assert time.monotonic() - started < 2.0  # nobody to wait for
    assert [e["method"] for e in portal_a.emu.rest_log] == ["batch"]  # five cards, ten commands: one request
    assert len(portal_a.emu.activities) == 5
    assert not CardState.objects.filter(due__gt=F("synced")).exists()
    portal_a.emu.rest_log.clear()
    tasks.sync_cards(portal_a.db.pk)
    assert portal_a.emu.rest_log == []  # a rerun sends nothing
