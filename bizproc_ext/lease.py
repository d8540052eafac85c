"""A running call's lease: how the sweeper tells a live worker from a dead one in under a minute.

``claim()`` takes the call with a lease of ``ROBOT_CALL_LEASE`` seconds; while the worker works on it
(long downloads and uploads included) a heartbeat thread renews the lease every third of that.  A
worker that is SIGKILLed stops renewing, the lease runs out, and the sweeper puts the call back in the
queue.  The renewal is fenced by ``attempts``: a worker whose call was already taken over renews nothing.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .models import RobotCall

log = logging.getLogger("b24sign.pipeline")


def lease_length() -> timedelta:
    return timedelta(seconds=settings.ROBOT_CALL_LEASE)


def expiry():
    return timezone.now() + lease_length()


def renew(call_id: int, attempt: int) -> bool:
    return bool(RobotCall.objects.filter(pk=call_id, state=RobotCall.RUNNING, attempts=attempt)
                .update(lease_until=expiry()))


@contextmanager
def heartbeat(call: RobotCall):
    """Keep the call's lease alive while the block runs (in a thread with its own connection)."""
    if settings.CELERY_TASK_ALWAYS_EAGER or connection.in_atomic_block:
        yield  # in-process tests: the row is not committed, another connection cannot see it
        return
    stop = threading.Event()
    interval = max(0.5, settings.ROBOT_CALL_LEASE / 3)

    def beat():
        try:
            while not stop.wait(interval):
                try:
                    if not renew(call.pk, call.attempts):
                        return  # taken over, or finished: nothing left to hold
                except Exception:  # a database hiccup: try again at the next beat
                    log.warning("robot call %s: lease renewal failed", call.pk, exc_info=True)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"lease-{call.pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
