"""The outbox drainer: publishes committed ``queued`` robot calls to Celery, in batches, off the request path.

The robot handler only INSERTs the call (the row is the outbox, issue 14).  A drainer process beside every
Celery worker (or ``manage.py drain_robot_calls`` on its own) takes unpublished rows with
``SELECT … FOR UPDATE SKIP LOCKED`` — so any number of drainers share the work without taking a row twice —
publishes them over one broker connection, and marks them published in the same transaction.  If the
broker is down the transaction rolls back and the rows wait for the next round: a broker outage delays
calls, it never loses one.  A row published twice (a crash between publish and COMMIT) is harmless:
``pipeline.claim`` is a conditional UPDATE.  The sweeper stays the safety net for tasks lost later.
"""
from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone

from .models import RobotCall
from .tasks import process_robot_call, process_robot_calls

log = logging.getLogger("b24sign.drainer")

BATCH = 500


def unpublished():
    return RobotCall.objects.filter(state=RobotCall.QUEUED, published_at__isnull=True)


def drain_once(limit: int = BATCH, broker_url: str | None = None, connection=None) -> int:
    """Publish up to ``limit`` committed, unpublished calls; returns how many.  Raises if the broker is
    unreachable (nothing is marked then)."""
    with transaction.atomic():
        rows = list(unpublished().select_for_update(skip_locked=True).order_by("pk")
                    .values_list("pk", "portal_id")[:limit])
        if not rows:
            return 0
        if connection is not None:
            publish(rows, connection)
        else:
            with process_robot_call.app.connection_for_write(broker_url) as conn:
                publish(rows, conn)
        RobotCall.objects.filter(pk__in=[pk for pk, _ in rows]).update(published_at=timezone.now())
    return len(rows)


def groups(rows: list[tuple[int, int]], size: int) -> list[list[int]]:
    """Call ids by portal, in chunks of at most ``size``: calls of two portals never share a group."""
    by_portal: dict[int, list[int]] = {}
    for pk, portal_id in rows:
        by_portal.setdefault(portal_id, []).append(pk)
    return [ids[i:i + size] for ids in by_portal.values() for i in range(0, len(ids), max(1, size))]


def publish(rows: list[tuple[int, int]], conn) -> None:
    """One connection and producer for the whole batch (a new kombu client per publish was the handler's
    largest CPU cost, BENCHMARKS.md).  A lone call goes as itself; calls of one portal waiting together
    go as one group (coalesce.py)."""
    conn.ensure_connection(max_retries=1, timeout=5)
    producer = process_robot_call.app.amqp.Producer(conn)
    portal_of = dict(rows)
    for ids in groups(rows, settings.ROBOT_COALESCE_MAX):
        if len(ids) == 1:  # with its portal's id: the task need not ask the database for it (coalesce.run_one)
            process_robot_call.apply_async((ids[0],), {"portal_id": portal_of[ids[0]]}, producer=producer,
                                           retry=False)
        else:
            process_robot_calls.apply_async((ids,), producer=producer, retry=False)


class Drainer:
    """Drains until stopped: at once while there is work, every ``interval`` seconds when idle.  Keeps
    one broker connection and drops it on any error."""

    def __init__(self, interval: float | None = None):
        self.interval = interval if interval is not None else settings.ROBOT_CALL_DRAIN_INTERVAL
        self.stopping = threading.Event()
        self.conn = None

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                if self.conn is None:
                    self.conn = process_robot_call.app.connection_for_write()
                published = drain_once(connection=self.conn)
            except Exception as exc:  # broker or database away: the rows stay, try again shortly
                log.warning("drainer: nothing published this round (%s)", exc.__class__.__name__)
                published = 0
                self._drop()
                self.stopping.wait(1.0)
            if not published:
                self.stopping.wait(self.interval)
        self._drop()

    def _drop(self) -> None:
        close_old_connections()
        if self.conn is not None:
            try:
                self.conn.release()
            except Exception:  # noqa: BLE001  (already broken)
                pass
            self.conn = None

    def stop(self) -> None:
        self.stopping.set()


_sidecar: subprocess.Popen | None = None


@worker_ready.connect
def start_beside_worker(**_) -> None:
    """Every Celery worker starts a drainer process beside itself (``ROBOT_CALL_DRAINER=0``: not).

    A process, not a thread: a publishing thread inside the worker's consumer process broke the consumer's
    own reconnect after a broker restart (kombu's redis transport), so the drainer keeps its own."""
    global _sidecar
    if settings.ROBOT_CALL_DRAINER and _sidecar is None:
        manage = Path(settings.BASE_DIR) / "manage.py"
        _sidecar = subprocess.Popen([sys.executable, str(manage), "drain_robot_calls"], cwd=settings.BASE_DIR)


@worker_shutdown.connect
def stop_beside_worker(**_) -> None:
    if _sidecar is not None and _sidecar.poll() is None:
        _sidecar.terminate()
        try:
            _sidecar.wait(10)
        except subprocess.TimeoutExpired:
            _sidecar.kill()
