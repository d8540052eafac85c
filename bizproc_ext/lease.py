"""A running call's lease: how the sweeper tells a live worker from a dead one in under a minute.

``claim()`` takes the call with a lease of ``ROBOT_CALL_LEASE`` seconds; while the worker works on it
(long downloads and uploads included) the process's heartbeat thread renews it every third of that.  A
worker that is SIGKILLed stops renewing, the lease runs out, and the sweeper puts the call back in the
queue.  The renewal is fenced by ``attempts``: a worker whose call was already taken over renews nothing.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from .models import RobotCall

log = logging.getLogger("b24sign.pipeline")


def lease_length() -> timedelta:
    return timedelta(seconds=settings.ROBOT_CALL_LEASE)


def expiry():
    return timezone.now() + lease_length()


@contextmanager
def heartbeat(call: RobotCall):
    """Keep the call's lease alive while the block runs.  One thread per process renews the leases of all
    its running calls, in one UPDATE per beat (a thread and a connection per call
    cost a PostgreSQL backend start each once calls ran longer than a beat: BENCHMARKS.md)."""
    if settings.CELERY_TASK_ALWAYS_EAGER or connection.in_atomic_block:
        yield  # in-process tests: the row is not committed, another connection cannot see it
        return
    _beats.add(call.pk, call.attempts)
    try:
        yield
    finally:
        _beats.discard(call.pk)


def renew_all(calls: dict[int, int]) -> int:
    """Renew the leases of ``calls`` (id -> attempt), each fenced by its attempt: a call taken over by
    another worker (a newer attempt) or finished is left alone.  Returns how many were renewed."""
    renewed, items = 0, list(calls.items())
    for start in range(0, len(items), 500):
        fence = Q()
        for pk, attempt in items[start:start + 500]:
            fence |= Q(pk=pk, attempts=attempt)
        renewed += RobotCall.objects.filter(fence, state=RobotCall.RUNNING).update(lease_until=expiry())
    return renewed


class _Beats:
    """The process's running calls and the one thread that renews their leases every third of a lease."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls: dict[int, int] = {}
        self.thread: threading.Thread | None = None

    def add(self, pk: int, attempt: int) -> None:
        with self.lock:
            self.calls[pk] = attempt
            if self.thread is None or not self.thread.is_alive():  # first call, or a forked child
                self.thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)
                self.thread.start()

    def discard(self, pk: int) -> None:
        with self.lock:
            self.calls.pop(pk, None)

    def _run(self) -> None:
        while True:
            time.sleep(max(0.5, settings.ROBOT_CALL_LEASE / 3))
            with self.lock:
                calls = dict(self.calls)
            if not calls:
                continue
            try:
                renew_all(calls)
            except Exception:  # a database hiccup: try again at the next beat
                log.warning("lease renewal failed for %d running call(s)", len(calls), exc_info=True)
            finally:
                connection.close()  # one connection per beat and process; none held between beats


_beats = _Beats()
