"""How long a shared request waits for partners (b24app/rest/coalesce.py, issue 14 item 4).

Persona: portal A during a provider-paced burst: many jobs run (most of them waiting for the provider, not
for Bitrix24), and the answers trickle.  A lone job never waits; a burst waits its burst window; a burst
that lasts waits longer, so a request of the portal's token fills at that pace; a run-as user's reads (whose
partners all come out of the same proof round) never wait out a burst window.
"""
from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from b24app.models import Portal
from b24app.rest import B24Client
from b24app.rest.coalesce import Coalescer
from tests.conftest import MANAGER_ID

pytestmark = pytest.mark.django_db(transaction=True)

WINDOWS = {"window": 0.05, "burst_window": 1.0, "sustained_window": 3.0, "sustained_after": 1.5}


class Running:
    """``n`` jobs participating in ``co`` that submit nothing (they wait for the provider) until stopped."""

    def __init__(self, co: Coalescer, n: int):
        self.stop, self.threads = threading.Event(), []
        entered = threading.Semaphore(0)

        def job():
            with co.participate():
                entered.release()
                self.stop.wait(30)

        co.expect(n)
        for _ in range(n):
            self.threads.append(threading.Thread(target=job))
            self.threads[-1].start()
        for _ in range(n):
            assert entered.acquire(timeout=10)

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(10)


def _timed_submit(co: Coalescer, commands: dict, client: B24Client | None = None) -> float:
    """One more participant submits ``commands``: seconds until its request was answered."""
    thread, out = _submit_in_background(co, commands, client)
    thread.join(30)
    assert not out["result"].errors
    return out["took"]


def _submit_in_background(co: Coalescer, commands: dict, client: B24Client | None = None):
    out = {}

    def job():
        try:
            with co.participate():
                started = time.monotonic()
                result = co.submit(commands, halt=False, client=client)
                out["took"], out["result"] = time.monotonic() - started, result
        except Exception as exc:  # noqa: BLE001  (the test looks at what each job heard)
            out["error"] = exc
        finally:
            connection.close()

    co.expect(1)
    t = threading.Thread(target=job)
    t.start()
    return t, out


@pytest.fixture
def coalescer(portal_a):
    return Coalescer(B24Client(Portal.objects.get(pk=portal_a.db.pk)), **WINDOWS)


def test_a_lone_job_is_not_delayed(coalescer):
    assert _timed_submit(coalescer, {"me": ("profile", {})}) < 0.5


def test_a_burst_waits_its_burst_window_and_a_lasting_burst_its_longer_window(coalescer):
    others = Running(coalescer, 9)  # a burst: nine calls waiting for the provider
    try:
        first = _timed_submit(coalescer, {"me": ("profile", {})})
        time.sleep(max(0.0, WINDOWS["sustained_after"] - first))
        lasting = _timed_submit(coalescer, {"me": ("profile", {})})
    finally:
        others.close()
    assert 0.9 <= first < 2.5, first
    assert lasting >= 2.9, lasting  # the answers trickle: a request of the portal's token waits to fill


def test_a_run_as_users_reads_never_wait_out_the_burst_window(portal_a, coalescer):
    others = Running(coalescer, 9)
    try:
        time.sleep(WINDOWS["sustained_after"])
        user = B24Client(coalescer.client.portal, user_token=portal_a.emu.issue_tokens(MANAGER_ID)["access_token"])
        user.shares_as = MANAGER_ID  # proven (the coalescer only sees proven run-as clients)
        took = _timed_submit(coalescer, {"me": ("profile", {})}, client=user)
    finally:
        others.close()
    assert took < 0.8, took  # the base window, not 1 s (burst) nor 3 s (lasting burst)


def test_a_run_as_users_reads_go_ahead_of_a_request_of_the_portals_token_still_filling(portal_a, coalescer):
    others = Running(coalescer, 9)
    try:
        time.sleep(WINDOWS["sustained_after"])
        answer, answered = _submit_in_background(coalescer, {"me": ("profile", {})})  # waits up to 3 s to fill
        time.sleep(0.3)
        user = B24Client(coalescer.client.portal, user_token=portal_a.emu.issue_tokens(MANAGER_ID)["access_token"])
        user.shares_as = MANAGER_ID
        took = _timed_submit(coalescer, {"me": ("profile", {})}, client=user)
        answer.join(30)
    finally:
        others.close()
    assert took < 0.8, took  # not behind the filling request
    assert answered["took"] >= 2.9 and not answered["result"].errors  # which still waited to fill


def test_a_rate_limit_store_failure_reaches_every_waiting_job_instead_of_hanging_them(coalescer, monkeypatch):
    """Redis (the portal's bucket) down while a request waits for its slot: each job sharing that request hears
    the error (the sweepers retry their calls); none waits forever for a leader that is gone."""
    def bucket_down(method="batch"):
        raise ConnectionError("Redis is down")
    monkeypatch.setattr(coalescer.client, "wait_for_slot", bucket_down)
    running = Running(coalescer, 1)  # a burst: the request waits for partners
    try:
        jobs = [_submit_in_background(coalescer, {"u": ("user.current", {})}) for _ in range(3)]
        for thread, _ in jobs:
            thread.join(15)
            assert not thread.is_alive(), "a job still waits for a request that will never be sent"
    finally:
        running.close()
    assert all(isinstance(out.get("error"), ConnectionError) for _, out in jobs)
