"""The queries that look for open robot calls stay index scans once the table is mostly done calls.

Migration 0009 made those indexes partial, so that the handler's INSERT writes four indexes instead of
eight: a query the planner cannot match to a partial index's predicate would scan the whole table, on every
sweep and every scrape.  Each query the sweeper, the drainer, the metrics and the answer sweep make is
captured, and its plan read, with 20,000 done calls beside a few open ones.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from b24app.models import Portal
from bizproc_ext import drainer, metrics, pipeline, tasks
from bizproc_ext.models import RobotCall
from signing.models import ProviderAccount, SignatureRequest

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

TABLE = RobotCall._meta.db_table


@pytest.fixture
def mostly_done(settings):
    if connection.vendor != "postgresql":
        pytest.skip("query plans are checked on PostgreSQL")
    portal = Portal.objects.create(member_id="plans", domain="plans.test", client_endpoint="https://plans.test/rest/",
                                   server_endpoint="https://oauth.bitrix.info/rest/", app_token_digest="x")
    account = ProviderAccount.objects.create(portal=portal, provider="signnow")
    now, long_ago = timezone.now(), timezone.now() - timedelta(hours=2)
    finished = SignatureRequest.objects.create(portal=portal, account=account, provider="signnow", title="Signed",
                                               status="signed", entity_type_id=2, entity_id=1, finalized_at=long_ago)
    done = [RobotCall(portal=portal, code="b24sign_send", event_token=f"done-{i}", workflow_id="wf",
                      state=RobotCall.DONE, answer_state="sent", published_at=long_ago,
                      signature_request=finished if i % 10 == 0 else None) for i in range(20_000)]
    RobotCall.objects.bulk_create(done, batch_size=5000)

    def call(token, **kw):
        return RobotCall.objects.create(portal=portal, code="b24sign_send", event_token=token, workflow_id="wf", **kw)

    stuck = call("stuck", published_at=long_ago)                                  # its task was lost
    lost = call("lost", state=RobotCall.RUNNING, claimed_at=long_ago, lease_until=long_ago)  # its worker died
    unpublished = call("new")                                                     # for the drainer
    waiting = call("waiting", state=RobotCall.WAITING, published_at=long_ago, signature_request=finished)
    sending = call("sending", state=RobotCall.RUNNING, claimed_at=now, lease_until=now + timedelta(minutes=5),
                   answer_state="sending", published_at=now)
    # updated_at is auto_now: age the open calls after the fact, as time would have.
    RobotCall.objects.filter(pk__in=[stuck.pk, lost.pk, waiting.pk, sending.pk]).update(updated_at=long_ago)
    with connection.cursor() as cur:
        cur.execute(f"ANALYZE {TABLE}")
    return {"stuck": stuck, "lost": lost, "new": unpublished, "waiting": waiting, "sending": sending}


def robot_call_plans(fn):
    """(what ``fn`` returned, the plan of each query it made that reads robot calls)."""
    with CaptureQueriesContext(connection) as ctx:
        result = fn()
    plans = []
    with connection.cursor() as cur:
        for q in ctx.captured_queries:
            sql = q["sql"]
            if TABLE not in sql or not sql.lstrip().upper().startswith(("SELECT", "UPDATE")):
                continue
            cur.execute("EXPLAIN " + sql)
            plans.append((sql, "\n".join(row[0] for row in cur.fetchall())))
    assert plans, "no query on robot calls was captured"
    return result, plans


def assert_no_table_scan(plans):
    for sql, plan in plans:
        assert f"Seq Scan on {TABLE}" not in plan, f"{sql}\n{plan}"


def test_the_sweeper_finds_the_stuck_and_the_lost_call_by_index(mostly_done, settings):
    settings.ROBOT_CALL_REPUBLISH_AFTER = 60
    swept, plans = robot_call_plans(pipeline.sweep)
    assert sorted(swept) == sorted([mostly_done["stuck"].pk, mostly_done["lost"].pk])
    assert RobotCall.objects.get(pk=mostly_done["sending"].pk).answer_state == "pending"  # its sender died
    assert_no_table_scan(plans)
    assert any("robotcall_open" in plan for _, plan in plans)
    assert any("robotcall_answer_sending" in plan for _, plan in plans)


def test_the_drainer_and_the_metrics_read_only_the_open_calls(mostly_done):
    pending, plans = robot_call_plans(lambda: list(drainer.unpublished().values_list("pk", flat=True)))
    assert pending == [mostly_done["new"].pk]
    assert_no_table_scan(plans)

    families, plans = robot_call_plans(lambda: list(metrics.unanswered()))
    by_state = {s.labels["state"]: s.value for f in families if f.name == "b24sign_unanswered_calls"
                for s in f.samples}
    assert by_state == {"queued": 2, "running": 2, "waiting": 1}  # none of the 20,000 done calls
    assert_no_table_scan(plans)


def test_waiting_calls_whose_request_finished_are_found_by_index(mostly_done, monkeypatch):
    answered = []
    monkeypatch.setattr(tasks, "answer_requests_together", answered.extend)
    count, plans = robot_call_plans(tasks.answer_finished_requests)
    assert count == 1 and [r.pk for r in answered] == [mostly_done["waiting"].signature_request_id]
    assert_no_table_scan(plans)

