"""Operations you can see (issue 14): /metrics for Prometheus, and log lines that say what they are about.

Personas: the operator's Prometheus (holds the metrics token), a stranger without it, portal A's queue
server, portal B.
"""
from __future__ import annotations

import logging

import pytest
import redis as redis_lib
from django.conf import settings

from b24app import logcontext
from b24app.models import Portal
from bizproc_ext import pipeline
from bizproc_ext.models import RobotCall
from signing.models import SignatureRequest
from tests.robots.helpers import SEND_PROPS, deal_doc, run_worker

TOKEN = "metrics-token-for-tests-0123456789"


@pytest.fixture
def scrape(client, settings):
    settings.METRICS_TOKEN = TOKEN

    def get() -> str:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
        return response.content.decode()
    return get


def value(text: str, line_start: str) -> float:
    lines = [ln for ln in text.splitlines() if ln.startswith(line_start)]
    assert lines, f"{line_start} not in the exposition"
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)


@pytest.mark.django_db
def test_metrics_are_closed_without_the_token(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404  # no token configured: no endpoint
    settings.METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


@pytest.mark.django_db
def test_a_robot_call_is_counted_from_arrival_to_answer(scrape, portal_a, portal_b, memory_account, deal):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    portal_a.emu.post_robot_call(wf)  # a duplicate delivery
    forged = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS,
                                      deliver=False)
    pairs = [(k, "f" * 32 if k == "auth[application_token]" else v) for k, v in forged.pairs]
    assert portal_a.emu.post_robot_call(forged, pairs).status_code == 403

    before = scrape()
    assert value(before, 'b24sign_robot_calls_received_total{robot="b24sign_send"}') == 1
    assert value(before, 'b24sign_robot_calls_duplicate_total{robot="b24sign_send"}') == 1
    assert value(before, 'b24sign_robot_calls_refused_total{status="403"}') == 1
    assert value(before, 'b24sign_unanswered_calls{state="queued"}') == 1
    assert value(before, "b24sign_oldest_unanswered_call_seconds") >= 0

    run_worker()
    after = scrape()
    assert value(after, 'b24sign_robot_calls_answered_total{outcome="sent",robot="b24sign_send"}') == 1
    assert value(after, 'b24sign_robot_answer_latency_seconds_count{robot="b24sign_send",wait="N"}') == 1
    assert value(after, 'b24sign_robot_answer_latency_seconds_bucket{le="+Inf",robot="b24sign_send",wait="N"}') == 1
    assert value(after, 'b24sign_rest_requests_total{plan="standard"}') >= 2
    assert value(after, "b24sign_oldest_unanswered_call_seconds") == 0
    assert value(after, 'b24sign_open_requests{provider="memory",status="sent"}') == 1
    depth = redis_lib.Redis.from_url(settings.CELERY_BROKER_URL).llen("celery")
    assert value(after, 'b24sign_celery_queue_depth{queue="celery"}') == depth
    # Nothing that names a tenant or a secret.
    for secret in (portal_a.emu.member_id, portal_a.emu.application_token, portal_a.db.domain,
                   portal_b.emu.member_id, "anna@customer.test", str(SignatureRequest.objects.get().public_id)):
        assert secret not in after


@pytest.mark.django_db
def test_query_limit_answers_and_bucket_waits_are_counted(scrape, portal_a, memory_account, deal):
    Portal.objects.filter(pk=portal_a.db.pk).update(rate_burst=1, rate_drain=20)
    for _ in range(2):
        portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    run_worker()
    text = scrape()
    assert value(text, 'b24sign_bucket_waits_total{bucket="bitrix24"}') >= 1
    assert value(text, 'b24sign_bucket_wait_seconds_total{bucket="bitrix24"}') > 0


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.addFilter(logcontext.ContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.mark.django_db
def test_worker_log_lines_name_the_portal_the_call_and_the_request(portal_a, memory_account, memory_provider, deal):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    assert wf.response_status == 200
    handler = Collect()
    logging.getLogger("b24sign").addHandler(handler)
    try:
        with logcontext.bound():
            pipeline.run(RobotCall.objects.get().pk)
    finally:
        logging.getLogger("b24sign").removeHandler(handler)
    call = RobotCall.objects.get()
    req = SignatureRequest.objects.get()
    assert handler.records, "the worker logged nothing"
    for record in handler.records:
        assert record.portal == portal_a.emu.member_id[:8] and record.call == str(call.pk)
    assert any(r.request == str(req.public_id)[:8] for r in handler.records)
    assert logcontext.current() == {}  # nothing leaks into the next task
