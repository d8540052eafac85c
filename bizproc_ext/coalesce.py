"""Robot calls of one portal that are ready together share their Bitrix24 requests (issue 14).

The drainer publishes the calls of one portal that it finds waiting together as one group task (at most
``ROBOT_COALESCE_MAX``).  The group runs each call through the ordinary ``pipeline.run`` in its own thread,
inside one :class:`b24app.rest.coalesce.Coalescer` for that portal: the calls' first requests (the
event-token proof, then the CRM reads) go out as one shared ``batch``, and so do their answers
(``bizproc.activity.log`` + ``bizproc.event.send``).  Everything else about a call is unchanged: its claim
(conditional UPDATE), its proof (checked per call: a refused one is refused alone), its errors, retries
and exactly-once answer all stay the pipeline's and answers.py's.  A call the group could not finish
(``retry_in``) is retried as a single call, as before.
"""
from __future__ import annotations

import logging
import threading
from contextvars import copy_context

from django.conf import settings
from django.db import connections

from b24app.models import Portal
from b24app.rest import B24Client
from b24app.rest.coalesce import Coalescer

from . import pipeline
from .answers import answer_waiting_calls

log = logging.getLogger("b24sign.pipeline")


def run_group(call_ids: list[int], window: float | None = None) -> dict[int, pipeline.Outcome]:
    """Run calls of one portal together; returns each call's outcome."""
    portal_ids = set(pipeline.RobotCall.objects.filter(pk__in=call_ids).values_list("portal_id", flat=True))
    if len(portal_ids) != 1:  # never mix portals (the drainer groups by portal; this is the guard)
        return {pk: pipeline.run(pk) for pk in call_ids}
    portal = Portal.objects.get(pk=portal_ids.pop())
    results = together(portal, [lambda pk=pk: pipeline.run(pk) for pk in call_ids], window)
    return {pk: (r if isinstance(r, pipeline.Outcome) else pipeline.Outcome(retry_in=60.0))
            for pk, r in zip(call_ids, results)}


def answer_requests_together(requests: list) -> None:
    """Finalization in bulk (a mass signing finishing at once): the waiting calls of many requests of one
    portal are answered in shared batches; each call still gets its own exactly-once answer."""
    by_portal: dict[int, list] = {}
    for req in requests:
        by_portal.setdefault(req.portal_id, []).append(req)
    for reqs in by_portal.values():
        together(reqs[0].portal, [lambda req=req: answer_waiting_calls(req) for req in reqs])


def together(portal, jobs: list, window: float | None = None) -> list:
    """Run ``jobs`` (callables) in threads sharing one coalescer of ``portal``; their results in order
    (an exception is logged and returned in its place, a dead thread leaves None)."""
    if len(jobs) == 1:
        return [_guarded(jobs[0])]
    co = _shared(portal, settings.ROBOT_COALESCE_WINDOW if window is None else window, len(jobs))
    results: list = [None] * len(jobs)

    def one(i: int) -> None:
        try:
            with co.participate(expected=True), _slots():  # a slot bounds this process's DB connections
                results[i] = _guarded(jobs[i])
        finally:
            connections.close_all()  # this thread's own connection ends with it

    threads = [threading.Thread(target=copy_context().run, args=(one, i), name=f"{portal.pk}-{i}")
               for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


_coalescers: dict[int, Coalescer] = {}
_coalescers_lock = threading.Lock()


def _shared(portal, window: float, jobs: int) -> Coalescer:
    """One coalescer per portal per process: groups of the same portal running at once (several Celery
    threads) share it too.  A new one (a fresh portal row and client) when nobody is using the old one."""
    with _coalescers_lock:
        co = _coalescers.get(portal.pk)
        if co is None or co.participants == 0:
            co = _coalescers[portal.pk] = Coalescer(B24Client(portal), window=window)
        co.expect(jobs)
        return co


_semaphore: threading.BoundedSemaphore | None = None
_semaphore_lock = threading.Lock()


def _slots() -> threading.BoundedSemaphore:
    """At most ROBOT_COALESCE_THREADS group jobs run at once in this process (each holds a DB connection;
    a waiting one still counts as a participant, so its group's batches wait at most the window for it)."""
    global _semaphore
    with _semaphore_lock:
        if _semaphore is None:
            _semaphore = threading.BoundedSemaphore(max(1, settings.ROBOT_COALESCE_THREADS))
    return _semaphore


def _guarded(job):
    try:
        return job()
    except Exception as exc:  # a bug in one job must not stop its neighbours; the sweepers retry it
        log.exception("coalesced job failed")
        return exc
