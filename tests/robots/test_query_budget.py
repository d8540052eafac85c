"""What one robot call costs the database (issue 14, "spread": 100 portals x 100 calls were CPU-bound, and most
of the worker's CPU was building and running SQL).  These fail when per-call queries grow back.

Personas: portal A's manager fires "Send for e-signature" for a deal; the worker sends it and answers.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bizproc_ext import coalesce, lease, pipeline, tasks
from bizproc_ext.models import RobotCall
from crmcard.models import CardState
from crmcard.sync import sync_request
from crmcard.tasks import announce_change
from signing.models import SignatureRequest
from tests.robots.helpers import SEND_PROPS, deal_doc

# Measured after the cuts (the test's transaction adds its SAVEPOINTs): 27 since the sixth round; 39 before it,
# 43 before the fourth.
SEND_CALL_BUDGET = 27


def _statements(ctx, table: str = "", verb: str = "") -> list[str]:
    return [q["sql"] for q in ctx.captured_queries
            if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT")) and table in q["sql"]
            and q["sql"].startswith(verb)]


def _run_one_send(portal_a, deal):
    """A second send for the deal (the first one warms what is cached per process); its queries."""
    for _ in range(2):
        portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal),
                                 properties={**SEND_PROPS, "if_open_exists": "another"})
    first, second = RobotCall.objects.order_by("pk").values_list("pk", flat=True)
    with TestCase.captureOnCommitCallbacks(execute=True):
        pipeline.run(first)
    with CaptureQueriesContext(connection) as ctx, TestCase.captureOnCommitCallbacks(execute=True):
        pipeline.run(second)
    assert RobotCall.objects.get(pk=second).answer_state == "sent"
    return ctx


@pytest.mark.django_db
def test_a_send_call_stays_within_its_query_budget(portal_a, memory_account, memory_provider, deal):
    ctx = _run_one_send(portal_a, deal)
    assert len(ctx.captured_queries) <= SEND_CALL_BUDGET, "\n".join(q["sql"][:160] for q in ctx.captured_queries)


@pytest.mark.django_db
def test_the_sent_line_and_the_answer_read_the_signers_once(portal_a, memory_account, memory_provider, deal):
    # Once to send and record the provider's signer states (3 before the sixth round: once more for those), once
    # for the log line and the answer.
    ctx = _run_one_send(portal_a, deal)
    assert len(_statements(ctx, '"signing_signerrow"', "SELECT")) == 2


@pytest.mark.django_db
def test_a_send_without_early_callbacks_does_not_load_its_request_again_to_replay_them(
        portal_a, memory_account, memory_provider, deal):
    ctx = _run_one_send(portal_a, deal)
    assert len(_statements(ctx, '"signing_requestevent"', "SELECT")) == 1  # only the EXISTS
    # replay_if_sent loaded the request with its account and portal (their secrets decrypted) for every send
    assert not [q for q in _statements(ctx, 'JOIN "signing_provideraccount"', "SELECT")
                if """"send_phase" = 'sent'""" in q]


@pytest.mark.django_db
def test_a_checkpoint_with_nothing_new_writes_nothing(portal_a, memory_account, memory_provider, deal):
    ctx = _run_one_send(portal_a, deal)
    writes = [q for q in _statements(ctx, '"signing_signaturerequest"', "UPDATE") if '"provider_state"' in q]
    assert len(writes) == 1, writes  # the memory provider's own doc_id checkpoint; the empty one is skipped


@pytest.mark.django_db
def test_announcing_a_change_costs_one_statement_for_a_new_card_and_one_after(portal_a, memory_account,
                                                                              memory_provider, deal):
    portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    with TestCase.captureOnCommitCallbacks(execute=False):  # the send's own announcement is not run
        pipeline.run(RobotCall.objects.get().pk)
    req = SignatureRequest.objects.get()
    CardState.objects.filter(request=req).delete()
    with CaptureQueriesContext(connection) as first:
        announce_change(req.pk, req.portal_id)
    with CaptureQueriesContext(connection) as second:
        announce_change(req.pk, req.portal_id)
    # (an UPDATE, then an INSERT in a savepoint for a new card, before the sixth round: now one upsert)
    assert len(first.captured_queries) == 1 and len(second.captured_queries) == 1
    assert CardState.objects.get(request=req).due == 2


@pytest.mark.django_db
def test_a_send_opens_two_transactions_with_no_savepoint_inside(portal_a, memory_account, memory_provider, deal):
    # The request's creation and the recorded send; create_request and move_to inside them took a savepoint each,
    # and so did the card's first announcement (in the test's own transaction, every outer block is a savepoint).
    ctx = _run_one_send(portal_a, deal)
    assert len([q for q in ctx.captured_queries if q["sql"].startswith("SAVEPOINT")]) == 2


@pytest.mark.django_db
def test_an_answer_reads_its_call_once_and_writes_it_twice(portal_a, memory_account, memory_provider, deal):
    # Before the sixth round: the answer's try count read back after its claim, the run-as token forgotten in an
    # UPDATE of its own after the answer, the portal's flag cleared though it was seen unset, and the open-request
    # finding written apart from the request the call created.
    ctx = _run_one_send(portal_a, deal)
    assert len(_statements(ctx, '"bizproc_ext_robotcall"', "SELECT")) == 1  # the claim's load
    assert not _statements(ctx, '"b24app_portal"', "UPDATE")
    updates = _statements(ctx, '"bizproc_ext_robotcall"', "UPDATE")
    # claimed, proven, its request (and open_request), the answer claimed, the answer sent (and the token gone)
    assert len(updates) == 5, updates
    assert '"auth_access_token" = \'\'' in updates[-1]
    call = RobotCall.objects.order_by("pk").last()
    assert call.auth_access_token == "" and call.open_request == "another" and call.answer_attempts == 1


@pytest.mark.django_db
def test_a_lone_calls_task_loads_its_portal_only_with_the_claim(portal_a, memory_account, memory_provider, deal):
    # The task asked for the portal's id (is it running here?), then loaded the whole portal row (its tokens
    # decrypted) to find out again, then the claim loaded it a third time.
    portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    with CaptureQueriesContext(connection) as ctx, TestCase.captureOnCommitCallbacks(execute=False):
        tasks.process_robot_call.apply(args=[RobotCall.objects.get().pk])
    assert RobotCall.objects.get().answer_state == "sent"
    portal_rows = [q for q in _statements(ctx, 'FROM "b24app_portal"', "SELECT")
                   if '"b24app_portal"."access_token"' in q]
    assert portal_rows == []  # (the claim's load joins it: FROM "bizproc_ext_robotcall")


@pytest.mark.django_db
def test_a_card_sync_reads_the_signers_once(portal_a, memory_account, memory_provider, deal):
    portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    with TestCase.captureOnCommitCallbacks(execute=False):
        pipeline.run(RobotCall.objects.get().pk)
    req = SignatureRequest.objects.get()
    announce_change(req.pk, req.portal_id)  # as the send's after-commit hook does
    with CaptureQueriesContext(connection) as ctx:
        assert sync_request(req.pk) == 1
    assert len(_statements(ctx, '"signing_signerrow"', "SELECT")) == 1
    assert not _statements(ctx, 'FROM "crmcard_cardstate"', "SELECT")  # it came with the request
    assert len(_statements(ctx)) <= 5, _statements(ctx)  # request+card, signers, setup, the card's save, its event


@pytest.mark.django_db(transaction=True)
def test_job_threads_keep_their_connection_across_queued_jobs_and_close_it_when_idle(monkeypatch, portal_a):
    # One job thread, three jobs queued at once: they run one after the other on one PostgreSQL connection
    # (a connection per job cost a backend start each), and the thread gives it back when the queue is empty.
    monkeypatch.setattr(coalesce, "_pool", ThreadPoolExecutor(1, thread_name_prefix="coalesced-test"))
    release = threading.Event()

    def job():
        release.wait(5)
        with connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            return cur.fetchone()[0]

    futures = coalesce._submit(portal_a.db, [job, job, job])
    release.set()
    pids = [f.result(timeout=10) for f in futures]
    assert len(set(pids)) == 1, pids
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pids[0]])
            if cur.fetchone()[0] == 0:
                break
        time.sleep(0.05)
    else:
        pytest.fail("the idle job thread still holds its connection")
    coalesce._pool.shutdown()


@pytest.mark.django_db(transaction=True)
def test_one_thread_renews_the_leases_of_all_running_calls_in_one_statement(monkeypatch, settings, portal_a, deal):
    # Before, every running call had a heartbeat thread of its own, which opened a connection of its own.
    settings.ROBOT_CALL_LEASE = 1.5  # a beat every 0.5 s
    monkeypatch.setattr(lease, "_beats", lease._Beats())
    for _ in range(2):
        portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    calls = [pipeline.claim(pk) for pk in RobotCall.objects.order_by("pk").values_list("pk", flat=True)]
    earlier = set(threading.enumerate())  # an earlier test's process-wide heartbeat may still be alive
    with lease.heartbeat(calls[0]), lease.heartbeat(calls[1]):
        time.sleep(2.5)  # longer than a lease
        names = [t.name for t in set(threading.enumerate()) - earlier if t.name.startswith("lease")]
        assert names == ["lease-heartbeat"]
        assert RobotCall.objects.filter(state=RobotCall.RUNNING, lease_until__gt=timezone.now()).count() == 2


@pytest.mark.django_db
def test_a_renewal_is_fenced_by_the_attempt(portal_a, deal):
    portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    call = pipeline.claim(RobotCall.objects.get().pk)
    assert lease.renew_all({call.pk: call.attempts + 1}) == 0  # taken over by a newer attempt: left alone
    assert lease.renew_all({call.pk: call.attempts}) == 1


@pytest.mark.django_db(transaction=True)
def test_a_job_arriving_soon_after_the_last_runs_on_the_same_connection(monkeypatch, settings, portal_a):
    # A spread's jobs trickle in: a thread that closed its connection after every job reconnected for each.
    settings.ROBOT_COALESCE_LINGER = 2.0
    monkeypatch.setattr(coalesce, "_pool", ThreadPoolExecutor(1, thread_name_prefix="coalesced-test"))

    def job():
        with connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            return cur.fetchone()[0]

    [first] = coalesce._submit(portal_a.db, [job])
    first_pid = first.result(timeout=10)
    time.sleep(0.3)  # the queue was empty for a while
    [second] = coalesce._submit(portal_a.db, [job])
    assert second.result(timeout=10) == first_pid
    coalesce._pool.shutdown()


@pytest.mark.django_db
def test_a_lone_calls_task_with_its_portal_from_the_drainer_asks_nothing_before_its_claim(
        portal_a, memory_account, memory_provider, deal):
    portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    call = RobotCall.objects.get()
    with CaptureQueriesContext(connection) as ctx, TestCase.captureOnCommitCallbacks(execute=False):
        tasks.process_robot_call.apply(args=[call.pk], kwargs={"portal_id": call.portal_id})
    assert RobotCall.objects.get().answer_state == "sent"
    first = _statements(ctx)[0]
    assert first.startswith("UPDATE") and "bizproc_ext_robotcall" in first  # the claim, nothing before it


@pytest.mark.django_db
def test_a_wrong_portal_hint_never_puts_a_call_among_another_portals_calls(
        portal_a, portal_b, memory_account, memory_provider, deal):
    # The hint only says whether to look for running neighbours; with portal B "busy" here, portal A's call
    # still runs as portal A's (its own request, its own portal's answer).
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    call = RobotCall.objects.get()
    b_requests = len(portal_b.emu.rest_log)
    with coalesce.alongside(portal_b.db), TestCase.captureOnCommitCallbacks(execute=True):
        outcome = coalesce.run_one(call.pk, portal_id=portal_b.db.pk)
    assert outcome.retry_in is None
    call.refresh_from_db()
    assert call.answer_state == "sent" and len(wf.answers) == 1  # answered once, on its own portal
    assert len(portal_b.emu.rest_log) == b_requests  # nothing of it went to portal B
