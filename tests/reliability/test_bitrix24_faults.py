"""Bitrix24 under stress: an expired token hit by 20 workers at once, and a QUERY_LIMIT_EXCEEDED storm.

Workers are threads here (each with its own database connection), running the same code as the Celery
task; the refresh lock and the rate-limit buckets live in Redis, exactly as across processes.
"""
from __future__ import annotations

import threading

import pytest
from django.db import connection

from bizproc_ext import pipeline
from bizproc_ext.models import RobotCall
from tests.robots.helpers import SEND_PROPS, deal_doc

# Many calls for one deal and one document, each meant as its own send (the default would return the
# first open request: tests/providers/test_e2e_open_requests.py).
SEND_EACH = {**SEND_PROPS, "if_open_exists": "another"}

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def calls(live_portal_a, memory_provider, fast_portal_limits, pdf_bytes):
    """``calls(n)`` -> n workflows whose robot calls are recorded (queued) on portal A."""
    from signing.models import ProviderAccount

    fast_portal_limits(live_portal_a)
    ProviderAccount.objects.create(portal=live_portal_a.db, provider="memory", is_default=True)
    emu = live_portal_a.emu
    anna = emu.crm.add_contact("Anna", "Buyer", emails=["anna@customer.test"])
    deal = emu.crm.add_deal("Deal", contact_ids=[anna], files={"ufCrmContract": ("c.pdf", pdf_bytes)})

    def make(n: int):
        # Calls without a token of their own: they read with the portal's stored token, the one whose
        # single-flight refresh this suite is about (a call's own token renews with its own refresh
        # token: tests/robots/test_run_as_user.py).
        flows = [emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_EACH,
                                 send_access_token=False) for _ in range(n)]
        assert [wf.response_status for wf in flows] == [200] * n
        return flows
    return make


def run_concurrently(pks, rounds: int = 6) -> None:
    """One thread per call, started together; calls that ask for a retry run again (without the wait)."""
    for _ in range(rounds):
        pending = list(RobotCall.objects.filter(pk__in=pks, state=RobotCall.QUEUED).values_list("pk", flat=True))
        if not pending:
            return
        barrier = threading.Barrier(len(pending))
        errors = []

        def work(pk):
            try:
                barrier.wait(20)
                pipeline.run(pk)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=work, args=(pk,)) for pk in pending]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors


def test_an_expired_token_hit_by_20_workers_is_refreshed_once(live_portal_a, live_cloud, calls, memory_provider):
    flows = calls(20)
    live_portal_a.emu.expire_access_tokens()  # Bitrix24 says expired; our row still thinks it is fresh
    live_cloud.oauth_delay = 0.3               # widen the race window
    refreshed_before = live_cloud.refresh_ok

    run_concurrently(list(RobotCall.objects.values_list("pk", flat=True)))

    assert live_cloud.refresh_ok - refreshed_before == 1
    assert not live_portal_a.db.needs_reinstall
    assert memory_provider.sends == 20
    assert [len(wf.answers) for wf in flows] == [1] * 20


def test_a_rate_limit_storm_delays_but_loses_nothing(live_portal_a, calls, memory_provider):
    flows = calls(10)
    live_portal_a.emu.fail_next(30, 503, "QUERY_LIMIT_EXCEEDED")  # another app on our IP ate the budget

    run_concurrently(list(RobotCall.objects.values_list("pk", flat=True)))

    assert live_portal_a.emu.stats.injected_faults == 30
    assert memory_provider.sends == 10
    assert [len(wf.answers) for wf in flows] == [1] * 10
