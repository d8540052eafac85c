"""A lone call's CRM card rides in the request answering its workflow (issue 14, sixth round).

Persona: portal A's manager moves one deal (a spread over many portals: every call alone in its portal).  The
call costs one request for its proof and reads and one for its answer; the card's "sent" change, announced
when the send commits, goes in that answer's request instead of a request of its own 2 s later.
"""
from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from bizproc_ext import coalesce, pipeline
from bizproc_ext.models import RobotCall
from crmcard import tasks
from crmcard.models import CardState
from tests.robots.helpers import SEND_PROPS, deal_doc
from tests.support.memory_provider import MemoryProvider

pytestmark = pytest.mark.django_db(transaction=True)  # the send's after-commit announcement runs for real


@pytest.fixture
def scheduled(monkeypatch):
    """The portal syncs that were scheduled (none run: this test is about what the call itself sends)."""
    portals = []
    monkeypatch.setattr(tasks.sync_cards, "apply_async", lambda args, countdown=None: portals.append(args[0]))
    return portals


def _methods(entry: dict) -> list[str]:
    if entry["method"] != "batch":
        return [entry["method"]]
    return [str(query).partition("?")[0] for query in entry["params"].get("cmd", {}).values()]


def _commands(entry: dict, method: str) -> list[dict]:
    return [dict(parse_qsl(query.partition("?")[2])) for query in entry["params"].get("cmd", {}).values()
            if str(query).startswith(method + "?")]


def test_a_lone_calls_card_rides_in_its_answer_request(portal_a, memory_account, memory_provider, deal,
                                                      scheduled):
    emu = portal_a.emu
    flow = emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    emu.rest_log.clear()
    pipeline.run(RobotCall.objects.get().pk)

    assert len(flow.answers) == 1 and flow.answers[0]["RETURN_VALUES"]["status"] == "sent"
    assert len(emu.rest_log) == 2, [_methods(e) for e in emu.rest_log]  # proof + reads, answer + card: not 3
    answer_request = emu.rest_log[1]
    methods = _methods(answer_request)
    assert methods[0] == "bizproc.event.send"  # the answer goes first, the card after it
    assert "crm.activity.configurable.add" in methods and "crm.item.update" in methods
    assert _commands(answer_request, "bizproc.event.send")[0]["EVENT_TOKEN"] == flow.event_token
    card = CardState.objects.get(request=RobotCall.objects.get().signature_request)
    assert card.activity_id and card.synced == card.due == 1
    assert len(emu.activities) == 1
    assert scheduled == []  # no sync of the portal left to do


def test_a_refused_card_command_leaves_the_answer_alone(portal_a, memory_account, memory_provider,
                                                                        deal, scheduled):
    emu = portal_a.emu
    emu.refuse_method("crm.activity.configurable.add", 500, "INTERNAL_SERVER_ERROR", "try later", times=1)
    flow = emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    emu.rest_log.clear()
    pipeline.run(RobotCall.objects.get().pk)

    call = RobotCall.objects.get()
    assert call.answer_state == "sent" and len(flow.answers) == 1 and flow.answers[0]["RETURN_VALUES"]["status"] == "sent"
    assert len(emu.rest_log) == 2
    card = CardState.objects.get(request=call.signature_request)
    assert card.activity_id is None and "card" in card.last_error
    # As in the portal's sync: the refusal is recorded, and the card's next change sends the card (only it:
    # the fields went out).
    assert scheduled == [] and card.synced == card.due
    emu.rest_log.clear()
    tasks.announce_change(call.signature_request_id, portal_a.db.pk)
    tasks.sync_cards(portal_a.db.pk)
    card.refresh_from_db()
    assert card.activity_id and card.synced == card.due and not card.last_error
    assert [_methods(e) for e in emu.rest_log] == [["crm.item.get", "crm.activity.configurable.add"]]


def test_an_answer_request_that_fails_as_a_whole_is_retried_and_so_is_the_card(
        portal_a, memory_account, memory_provider, deal, scheduled, monkeypatch):
    emu = portal_a.emu
    real = MemoryProvider.send

    def send(self, spec):  # the provider has it; then Bitrix24 fails the next request (answer + card) whole
        result = real(self, spec)
        emu.fail_next(1, status=500, error="INTERNAL_SERVER_ERROR", description="try again")
        return result

    monkeypatch.setattr(MemoryProvider, "send", send)
    flow = emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    call_id = RobotCall.objects.get().pk
    assert pipeline.run(call_id).retry_in  # the answer is owed: the call goes back to the queue
    call = RobotCall.objects.get()
    assert call.answer_state == "pending" and flow.answers == []
    card = CardState.objects.get(request=call.signature_request)
    assert card.due > card.synced and card.activity_id is None and scheduled == [portal_a.db.pk]

    RobotCall.objects.filter(pk=call_id).update(retry_at=None)
    pipeline.run(call_id)  # the retry answers once; the card is the portal's sync's
    tasks.sync_cards(portal_a.db.pk)
    assert len(flow.answers) == 1 and flow.answers[0]["RETURN_VALUES"]["status"] == "sent"
    card.refresh_from_db()
    assert card.activity_id and card.synced == card.due and len(emu.activities) == 1


def test_with_the_setting_off_the_card_waits_for_the_portals_sync(portal_a, memory_account, memory_provider, deal,
                                                                 scheduled, settings):
    settings.CRM_CARD_WITH_ANSWER = False
    emu = portal_a.emu
    emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    emu.rest_log.clear()
    pipeline.run(RobotCall.objects.get().pk)
    assert len(emu.rest_log) == 2 and "crm.activity.configurable.add" not in _methods(emu.rest_log[1])
    assert scheduled == [portal_a.db.pk] and not emu.activities


def test_a_riding_card_is_counted_synced_in_the_update_that_records_it(portal_a, memory_account, memory_provider,
                                                                       deal, scheduled):
    # The card's state: one upsert counting the change, one UPDATE recording the push and the changes it covered
    # (the portal's sync writes "synced" apart, after its Portal and due-cards queries).
    portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    with CaptureQueriesContext(connection) as ctx:
        pipeline.run(RobotCall.objects.get().pk)
    card_writes = [q["sql"] for q in ctx.captured_queries if '"crmcard_cardstate"' in q["sql"].split(" WHERE ")[0]
                   and q["sql"].startswith(("UPDATE", "INSERT"))]
    assert [w.split(" ")[0] for w in card_writes] == ["INSERT", "UPDATE"], card_writes
    assert '"synced" = 1' in card_writes[1]
    # Its request is read with its card, not with the portal again (the answering call has it).
    [card_read] = [q["sql"] for q in ctx.captured_queries if 'JOIN "crmcard_cardstate"' in q["sql"]]
    assert '"b24app_portal"' not in card_read


def test_the_cards_of_calls_run_together_ride_in_their_shared_answer_request(
        portal_a, memory_account, memory_provider, deal, scheduled, settings, monkeypatch):
    settings.ROBOT_COALESCE_THREADS = 2
    monkeypatch.setattr(coalesce, "_pool", None)
    emu = portal_a.emu
    flows = [emu.start_robot("b24sign_send", document_id=deal_doc(deal),
                             properties={**SEND_PROPS, "if_open_exists": "another"}) for _ in range(2)]
    emu.rest_log.clear()
    try:
        outcomes = coalesce.run_group(sorted(RobotCall.objects.values_list("pk", flat=True)))
    finally:
        if coalesce._pool is not None:
            coalesce._pool.shutdown(wait=True)
    assert all(o.retry_in is None for o in outcomes.values())
    assert [len(wf.answers) for wf in flows] == [1, 1]
    answered = [e for e in emu.rest_log if "bizproc.event.send" in _methods(e)]
    assert all("crm.activity.configurable.add" in _methods(e) for e in answered)
    assert not [e for e in emu.rest_log if "bizproc.event.send" not in _methods(e)
                and "crm.activity.configurable.add" in _methods(e)]  # no request for cards alone
    assert sum(_methods(e).count("crm.activity.configurable.add") for e in emu.rest_log) == 2
    assert not CardState.objects.filter(due__gt=F("synced")).exists() and scheduled == []
