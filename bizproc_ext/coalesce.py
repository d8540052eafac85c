"""Robot calls of one portal that are ready together share their Bitrix24 requests (issue 14).

The drainer publishes the calls of one portal that it finds waiting together as one group task (at most
``ROBOT_COALESCE_MAX``).  The task hands them to the worker process's job threads and returns, so the
calls of every group of a burst run side by side, each through the ordinary ``pipeline.run``, inside one
:class:`b24app.rest.coalesce.Coalescer` per portal: the calls' first requests (the
event-token proof, then the CRM reads) go out as one shared ``batch``, and so do their answers
(``bizproc.activity.log`` + ``bizproc.event.send``).  Everything else about a call is unchanged: its claim
(conditional UPDATE), its proof (checked per call: a refused one is refused alone), its errors, retries
and exactly-once answer all stay the pipeline's and answers.py's.  A call the group could not finish
(``retry_in``) is retried as a single call, as before.
"""
from __future__ import annotations

import contextlib
import logging
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context

from django.conf import settings
from django.db import close_old_connections, connections

from b24app.models import Portal
from b24app.rest import B24Client
from b24app.rest.coalesce import Coalescer
from b24app.rest.coalescing import active_for

from . import pipeline
from .answers import answer_waiting_calls

log = logging.getLogger("b24sign.pipeline")


def run_group(call_ids: list[int], window: float | None = None) -> dict[int, pipeline.Outcome]:
    """Run calls of one portal together; returns each call's outcome."""
    portal = _portal_of(call_ids)
    if portal is None:  # never mix portals (the drainer groups by portal; this is the guard)
        return {pk: pipeline.run(pk) for pk in call_ids}
    results = together(portal, [lambda pk=pk: pipeline.run(pk) for pk in call_ids], window)
    return {pk: _outcome(r) for pk, r in zip(call_ids, results)}


def run_one(call_id: int, then=None, portal_id: int | None = None) -> pipeline.Outcome | None:
    """A lone call (the drainer found nothing of its portal beside it): it joins its portal's jobs running in
    this process (in the background with ``then``: None is returned and ``then`` gets its outcome; else here),
    or, with none running, runs at once as itself.  Its portal's id comes with the drainer's message, else it
    costs a query; the portal row is loaded only by the call's own claim (in a spread nearly every call is
    such a lone call).  The id only decides whether to join: whom a call shares batches with is decided by the
    portal its row names (``run_in_background`` loads it), so a wrong one can never mix portals."""
    if portal_id is None:
        portal_id = _portal_id_of(call_id)
    if busy(portal_id):
        if then is not None and run_in_background([call_id], then, join_only=True, portal_id=portal_id):
            return None
        return run_group([call_id])[call_id]
    return _outcome(_guarded(lambda: pipeline.run(call_id)))


def _portal_of(call_ids: list[int]) -> Portal | None:
    """The one portal these calls belong to (None: several, or none); one query."""
    portals = list(Portal.objects.filter(robot_calls__pk__in=call_ids).distinct()[:2])
    return portals[0] if len(portals) == 1 else None


def _portal_id_of(call_id: int) -> int | None:
    return pipeline.RobotCall.objects.filter(pk=call_id).values_list("portal_id", flat=True).first()


def _outcome(result) -> pipeline.Outcome:
    # A job that raised (logged by _guarded) or died is retried as a single call, a minute later.
    return result if isinstance(result, pipeline.Outcome) else pipeline.Outcome(retry_in=60.0)


def answer_requests_together(requests: list) -> None:
    """Finalization in bulk (a mass signing finishing at once): the waiting calls of many requests of one
    portal are answered in shared batches; each call still gets its own exactly-once answer."""
    by_portal: dict[int, list] = {}
    for req in requests:
        by_portal.setdefault(req.portal_id, []).append(req)
    for reqs in by_portal.values():
        together(reqs[0].portal, [lambda req=req: answer_waiting_calls(req) for req in reqs])


def together(portal, jobs: list, window: float | None = None) -> list:
    """Run ``jobs`` (callables) on the process's job threads, sharing the coalescer of ``portal``; their
    results in order (an exception is logged and returned in its place).  A lone job runs as itself (one
    request of its own, no wait) unless jobs of its portal are running in this process."""
    if getattr(_pool_thread, "active", False) or (len(jobs) == 1 and not busy(portal.pk)):
        return [_guarded(job) for job in jobs]  # already on a job thread: never wait for a free one
    return [f.result() for f in _submit(portal, jobs, window)]


def run_in_background(call_ids: list[int], then, join_only: bool = False, portal_id: int | None = None) -> bool:
    """Hand a group to the process's job threads and return at once, so the Celery thread takes the next
    group and every call of a burst can share the portal's batches (Celery's thread count no longer caps the
    calls in flight; ROBOT_COALESCE_THREADS does).  ``then(outcomes)`` runs when the group is done.  False
    when the process already holds ROBOT_COALESCE_BACKLOG calls: the caller runs the group itself
    (back-pressure).  A process that dies with calls in hand loses none: their leases run out (or they
    were never claimed and stay queued) and the sweeper requeues them.  ``join_only``: only when jobs of
    the portal are already running here (a lone call otherwise runs at once, as itself)."""
    global _backlog
    if join_only and not busy(portal_id if portal_id is not None else _portal_id_of(call_ids[0])):
        return False  # nothing of its portal running here: the lone call runs at once, as itself
    portal = _portal_of(call_ids)
    if portal is None or (join_only and not busy(portal.pk)):
        return False
    with _backlog_lock:
        if _backlog + len(call_ids) > settings.ROBOT_COALESCE_BACKLOG:
            return False
        _backlog += len(call_ids)
    outcomes: dict[int, pipeline.Outcome] = {}
    left = [len(call_ids)]
    lock = threading.Lock()

    def finished(pk: int, future) -> None:
        global _backlog
        result = future.result()
        with lock:
            outcomes[pk] = _outcome(result)
            left[0] -= 1
            last = left[0] == 0
        with _backlog_lock:
            _backlog -= 1
        if last:
            try:
                then(outcomes)
            except Exception:  # noqa: BLE001  (the sweeper requeues a call whose retry was not scheduled)
                log.exception("scheduling the retries of a group failed")

    futures = _submit(portal, [lambda pk=pk: pipeline.run(pk) for pk in call_ids])
    for pk, future in zip(call_ids, futures):
        future.add_done_callback(lambda f, pk=pk: finished(pk, f))
    return True


@contextlib.contextmanager
def alongside(portal):
    """This thread's requests for ``portal`` share the batches of the portal's jobs running in this process,
    as one more participant (a CRM card sync riding in the running calls' next request, however many cards
    it pushes).  It takes no job thread, so it never waits behind queued calls for one; with nobody else
    running, its requests go out at once, as alone."""
    if active_for(portal.pk) is not None:  # already a participant (a job thread, an eager task inside one)
        yield
        return
    co = _coalescer_for(portal, settings.ROBOT_COALESCE_WINDOW, 1)
    with co.participate():
        yield


def busy(portal_id: int) -> bool:
    """Jobs of this portal are running or waiting in this process (a lone call should join them)."""
    with _coalescers_lock:
        co = _coalescers.get(portal_id)
        return co is not None and co.participants + co.expected > 0


# --- the process's job threads ----------------------------------------------------------------------------
# ROBOT_COALESCE_THREADS threads run every coalesced job of the process (robot calls, card syncs, answers),
# whatever portal: each holds a PostgreSQL connection only while it runs jobs, so the process never opens
# more than that many for them however large the burst; jobs beyond wait in the queue.  A thread that finds
# the next job within ROBOT_COALESCE_LINGER of finishing one runs it on the same connection; it closes its
# connection before it goes idle (a connection per job cost a PostgreSQL backend start each: BENCHMARKS.md).
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_pool_thread = threading.local()
_queue: queue.SimpleQueue = queue.SimpleQueue()  # (future, context, coalescer, job) not taken by a thread yet
_coalescers: dict[int, Coalescer] = {}
_coalescers_lock = threading.Lock()
_backlog = 0
_backlog_lock = threading.Lock()


def _submit(portal, jobs: list, window: float | None = None) -> list:
    """Hand ``jobs`` of ``portal`` to the job threads; their futures."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max(1, settings.ROBOT_COALESCE_THREADS), thread_name_prefix="coalesced")
    co = _coalescer_for(portal, settings.ROBOT_COALESCE_WINDOW if window is None else window, len(jobs))
    futures = []
    for job in jobs:
        future = Future()
        _queue.put((future, copy_context(), co, job))
        futures.append(future)
        _pool.submit(_take_jobs)  # one taker per job: a taker that finds the queue empty only returns
    return futures


def _take_jobs() -> None:
    """Run queued jobs on this thread on one connection; once it has run one, wait up to
    ROBOT_COALESCE_LINGER for the next before it gives the connection back and goes idle."""
    linger, ran = settings.ROBOT_COALESCE_LINGER, False
    try:
        while True:
            try:
                future, context, co, job = _queue.get(block=ran and linger > 0, timeout=linger if ran else None)
            except queue.Empty:
                return  # (a taker that found nothing to do held no connection: it leaves at once)
            ran = True
            if future.set_running_or_notify_cancel():
                future.set_result(context.run(_run_job, co, job))
            try:
                close_old_connections()  # between jobs as between requests: a broken or too old one is dropped
            except Exception:  # noqa: BLE001  (a taker never stops with jobs queued: a fresh connection next)
                log.warning("dropping a job thread's connection failed", exc_info=True)
    finally:
        connections.close_all()  # an idle thread holds no connection (and tests can drop their DB)


def _run_job(co: Coalescer, job):
    _pool_thread.active = True
    try:
        with co.participate():
            return _guarded(job)
    except BaseException:  # noqa: BLE001  (SystemExit in a job thread ends that job, as a dead thread would)
        log.exception("coalesced job stopped")
        return None
    finally:
        _pool_thread.active = False


def _coalescer_for(portal, window: float, jobs: int) -> Coalescer:
    """The portal's coalescer in this process, expecting ``jobs`` more participants (all announced before
    the first starts, so none thinks it is alone).  Jobs of the same portal running at once share it; a new
    one (a fresh portal row and client) when nobody is using the old one."""
    with _coalescers_lock:
        co = _coalescers.get(portal.pk)
        if co is None or co.participants + co.expected == 0:
            co = _coalescers[portal.pk] = Coalescer(
                B24Client(portal), window=window, burst_window=settings.ROBOT_COALESCE_BURST_WINDOW,
                sustained_window=settings.ROBOT_COALESCE_SUSTAINED_WINDOW,
                sustained_after=settings.ROBOT_COALESCE_SUSTAINED_AFTER)
        co.expect(jobs)
        return co


def _guarded(job):
    try:
        return job()
    except Exception as exc:  # a bug in one job must not stop its neighbours; the sweepers retry it
        log.exception("coalesced job failed")
        return exc
