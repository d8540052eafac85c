"""Robot calls of one portal ready together share their Bitrix24 batches (issue 14, item 1).

Personas: portal A's manager moves many deals at once (a burst of "Send for e-signature" calls); one of
them has a bad input, one a forged event token; portal B's calls arrive at the same moment.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from bizproc_ext import coalesce, drainer, pipeline
from bizproc_ext.models import RobotCall
from signing.models import SignatureRequest
from tests.conftest import ADMIN_ID, MANAGER_ID
from tests.robots.helpers import SEND_PROPS, deal_doc

# Many calls for one deal and one document, each meant as its own send (the default would return the
# first open request: tests/providers/test_e2e_open_requests.py).
SEND_EACH = {**SEND_PROPS, "if_open_exists": "another"}

pytestmark = pytest.mark.django_db(transaction=True)  # the group's threads need committed rows


def burst(portal, deal, n: int, user_id: int = 1, run_as: bool = False, **props) -> list:
    # run_as=False: calls without a run-as token of their own (they read with the portal's token);
    # run_as=True: as the queue server sends them, with the token of the user the rule runs as.
    return [portal.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties={**SEND_EACH, **props},
                                   send_access_token=run_as, user_id=user_id)
            for _ in range(n)]


def read_batches(portal) -> list[dict]:
    return [r for r in portal.emu.rest_log if r["method"] == "batch"
            and any(str(c).startswith("crm.item.get") for c in r["params"]["cmd"].values())]


def ids_of(portal) -> list[int]:
    return sorted(RobotCall.objects.filter(portal__member_id=portal.emu.member_id).values_list("pk", flat=True))


def test_a_burst_of_twenty_calls_costs_a_few_requests_and_each_is_answered_once(portal_a, memory_account,
                                                                              memory_provider, deal):
    flows = burst(portal_a, deal, 20)
    before = portal_a.emu.stats.requests
    # A wide window: the calls share one deal, so the open-request lock lets them finish one by one.
    outcomes = coalesce.run_group(ids_of(portal_a), window=2.0)
    assert all(o.retry_in is None for o in outcomes.values())
    assert [len(wf.answers) for wf in flows] == [1] * 20 and all(wf.return_values["status"] == "sent" for wf in flows)
    assert SignatureRequest.objects.count() == 20 and memory_provider.sends == 20
    used = portal_a.emu.stats.requests - before
    assert used <= 10, used  # 40 one call at a time (proof+reads, answer), far fewer shared


def test_one_calls_bad_input_in_a_shared_batch_never_fails_its_neighbours(portal_a, memory_account,
                                                                         memory_provider, deal):
    good = burst(portal_a, deal, 3)
    bad = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(999999), properties=SEND_PROPS)  # no deal
    coalesce.run_group(ids_of(portal_a))
    assert [wf.return_values["status"] for wf in good] == ["sent"] * 3
    assert len(bad.answers) == 1 and bad.return_values["status"] == "error"
    assert "cannot read item" in bad.return_values["error"]
    assert memory_provider.sends == 3


def test_a_forged_call_in_the_group_is_refused_alone_and_reads_nothing(portal_a, memory_account, memory_provider,
                                                                      deal):
    good = burst(portal_a, deal, 2)
    forged = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS,
                                      deliver=False)
    pairs = [(k, forged.event_token[:-4] + "0000" if k == "event_token" else v) for k, v in forged.pairs]
    assert portal_a.emu.post_robot_call(forged, pairs).status_code == 200
    portal_a.emu.stats.by_method.clear()
    coalesce.run_group(ids_of(portal_a))
    assert [wf.return_values["status"] for wf in good] == ["sent"] * 2
    refused = RobotCall.objects.get(answer_state="refused")
    assert refused.event_token != good[0].event_token and forged.answers == []
    assert portal_a.emu.stats.by_method["crm.item.get"] == 2  # the forged call's reads never ran
    assert memory_provider.sends == 2


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the simulated death
def test_a_worker_killed_between_the_shared_batch_and_the_answers_answers_each_call_once(
        portal_a, memory_account, memory_provider, deal, settings, monkeypatch):
    flows = burst(portal_a, deal, 4)
    real_answer = pipeline.answer

    def killed(*args, **kwargs):  # the process dies right after the shared batch, before any answer
        raise SystemExit("worker killed")
    monkeypatch.setattr(pipeline, "answer", killed)
    coalesce.run_group(ids_of(portal_a))
    monkeypatch.setattr(pipeline, "answer", real_answer)
    assert set(RobotCall.objects.values_list("state", flat=True)) == {RobotCall.RUNNING}
    assert all(wf.answers == [] for wf in flows)
    assert SignatureRequest.objects.count() == 4  # sent, not answered

    # The dead worker's heartbeat stopped: its leases run out (issue 11's lease replaced the stale age).
    RobotCall.objects.update(lease_until=timezone.now() - timedelta(seconds=1))
    stuck = pipeline.sweep()  # the safety net: running calls of a dead worker go back to the queue
    assert sorted(stuck) == ids_of(portal_a)
    coalesce.run_group(stuck)
    assert [len(wf.answers) for wf in flows] == [1] * 4
    assert memory_provider.sends == 4 and SignatureRequest.objects.count() == 4  # nothing sent twice


def test_query_limit_exceeded_mid_burst_is_ridden_out(portal_a, memory_account, memory_provider, deal):
    flows = burst(portal_a, deal, 6)
    portal_a.emu.fail_next(2)  # two requests answered 503 QUERY_LIMIT_EXCEEDED
    outcomes = coalesce.run_group(ids_of(portal_a))
    for pk, outcome in outcomes.items():  # anything still owed is retried as a single call
        if outcome.retry_in is not None:
            pipeline.run(pk)
    assert [len(wf.answers) for wf in flows] == [1] * 6
    assert all("QUERY_LIMIT" not in (wf.return_values.get("error") or "") for wf in flows)


def test_calls_of_two_portals_never_share_a_batch(portal_a, portal_b, memory_account, deal):
    burst(portal_a, deal, 3)
    b_deal = portal_b.emu.crm.add_deal("B deal")
    for _ in range(2):
        portal_b.emu.start_robot("b24sign_send", document_id=deal_doc(b_deal), properties=SEND_PROPS)
    rows = list(RobotCall.objects.order_by("pk").values_list("pk", "portal_id"))
    groups = drainer.groups(rows, 20)
    assert sorted(map(sorted, groups)) == sorted([ids_of(portal_a), ids_of(portal_b)])
    # Even a mixed list handed to the group runner is run per call, never in one portal's batch.
    before_b = portal_b.emu.stats.requests
    coalesce.run_group(ids_of(portal_a) + ids_of(portal_b))
    for entry in portal_a.emu.rest_log:
        assert all(portal_b.emu.member_id not in str(v) for v in entry["params"].values())
    assert portal_b.emu.stats.requests > before_b


def test_many_requests_finishing_together_share_their_answer_batches(portal_a, memory_account, memory_provider,
                                                                    deal):
    from datetime import timedelta

    from django.utils import timezone

    from bizproc_ext.tasks import answer_finished_requests

    flows = burst(portal_a, deal, 6, wait="Y")
    coalesce.run_group(ids_of(portal_a))
    assert all(wf.answers == [] for wf in flows)  # waiting for the signers
    # A bulk signing: every request finished and was finalized; the answers are still owed.
    SignatureRequest.objects.update(status="completed", finalized_at=timezone.now() - timedelta(minutes=5))
    portal_a.emu.rest_log.clear()
    assert answer_finished_requests() == 6
    assert [len(wf.answers) for wf in flows] == [1] * 6
    assert all(wf.return_values["status"] == "completed" for wf in flows)
    sends = [e for e in portal_a.emu.rest_log if e["method"] == "batch"
             and any(str(v).startswith("bizproc.event.send") for v in e["params"].get("cmd", {}).values())]
    assert len(portal_a.emu.rest_log) <= 2 and len(sends) >= 1  # 6 alone


def test_run_as_calls_of_one_user_share_read_batches_sent_with_that_users_token(portal_a, memory_account,
                                                                                memory_provider, deal):
    flows = burst(portal_a, deal, 12, user_id=MANAGER_ID, run_as=True)
    portal_a.emu.rest_log.clear()
    coalesce.run_group(ids_of(portal_a), window=2.0)
    assert [len(wf.answers) for wf in flows] == [1] * 12 and memory_provider.sends == 12
    reads = read_batches(portal_a)
    assert sum(len(r["params"]["cmd"]) for r in reads) >= 12 * 3  # every call's reads went out
    assert len(reads) <= 3, len(reads)  # shared (12 alone), and never with the admin's rights:
    assert all(r["user_id"] == MANAGER_ID for r in reads)
    proofs = [c for r in portal_a.emu.rest_log if r["method"] == "batch" for c in r["params"]["cmd"].values()
              if str(c).startswith("bizproc.activity.log")]
    assert len(proofs) >= 12


def test_run_as_calls_of_two_users_never_share_a_read_batch(portal_a, memory_account, memory_provider, deal):
    burst(portal_a, deal, 4, user_id=ADMIN_ID, run_as=True)
    burst(portal_a, deal, 4, user_id=MANAGER_ID, run_as=True)
    portal_a.emu.rest_log.clear()
    coalesce.run_group(ids_of(portal_a), window=2.0)
    assert memory_provider.sends == 8
    by_user = {}
    for r in read_batches(portal_a):
        by_user.setdefault(r["user_id"], 0)
        by_user[r["user_id"]] += sum(1 for c in r["params"]["cmd"].values() if str(c).startswith("crm.item.get"))
    assert by_user == {ADMIN_ID: 4, MANAGER_ID: 4}  # each user's reads with that user's own token


def test_a_forged_run_as_call_claiming_a_users_id_reads_nothing_in_their_batch(portal_a, memory_account,
                                                                               memory_provider, deal):
    good = burst(portal_a, deal, 3, user_id=MANAGER_ID, run_as=True)
    # An employee replays the queue server's form with a made-up event token, claiming the manager's user id.
    forged = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_EACH,
                                      user_id=MANAGER_ID, deliver=False)
    pairs = [(k, forged.event_token[:-4] + "0000" if k == "event_token" else v) for k, v in forged.pairs]
    assert portal_a.emu.post_robot_call(forged, pairs).status_code == 200
    portal_a.emu.rest_log.clear()
    coalesce.run_group(ids_of(portal_a), window=2.0)
    assert [len(wf.answers) for wf in good] == [1] * 3 and memory_provider.sends == 3
    assert RobotCall.objects.get(answer_state="refused").signature_request is None
    reads = sum(1 for r in read_batches(portal_a) for c in r["params"]["cmd"].values() if str(c).startswith("crm.item.get"))
    assert reads == 3  # the forged call's reads never ran
