"""Work that rides in the request answering a robot call's workflow (issue 14, sixth round).

In a spread over many portals a call is nearly always alone in its portal: one request for its proof and
reads, one for its answer, and its CRM card's "sent" change (announced when the send commits, just before
the answer) used to wait for the portal's sync task, which sent it 2 s later in a request of its own unless
another call happened to be running then.  Now a layer above (``crmcard.tasks.announce_change``) may
:func:`hold` such work while a call runs in this thread (:func:`collecting`, around ``pipeline.run``); when the
call's answer (or its last workflow log line) goes out, :func:`boarding` puts the held work's commands in that
very request, after the answer, as independent jobs of the portal's coalescer (``Coalescer.ride``): their
errors are their own, a request that fails as a whole fails them all as it would have alone, and the answer
neither waits for them nor changes (its claim, its exactly-once send, its retries are answers.py's).

A rider is an object with ``board(coalescer)`` (puts its commands in; returns what records its results after
the request, or None when it cannot ride now) and ``missed()`` (its ordinary path: the call ended without
an answer request, or boarding failed).
"""
from __future__ import annotations

import contextlib
import logging
from contextvars import ContextVar

from django.conf import settings

from b24app.rest import B24Client
from b24app.rest.coalesce import Coalescer
from b24app.rest.coalescing import active_for

log = logging.getLogger("b24sign.pipeline")

_held: ContextVar[list | None] = ContextVar("b24sign_riders", default=None)


@contextlib.contextmanager
def collecting():
    """While a robot call runs in this thread: work announced meanwhile may wait for the call's answer."""
    held: list = []
    token = _held.set(held)
    try:
        yield
    finally:
        _held.reset(token)
        for rider in held:  # no answer request took them (a retry later, a forged call): the ordinary path
            _missed(rider)


def hold(rider, key=None) -> bool:
    """Let ``rider`` go with the answer of the call running in this thread; False when none is running.  A
    rider whose ``key`` is already held is covered by that one (a card planned when it boards sends every
    change counted by then), so it is dropped."""
    held = _held.get()
    if held is None:
        return False
    if key is None or all(getattr(r, "key", None) != key for r in held):
        rider.key = key
        held.append(rider)
    return True


@contextlib.contextmanager
def boarding(portal):
    """Around the request that answers the workflow: the held riders board it, and land after it."""
    held = _held.get()
    if not held:
        yield
        return
    riders = list(held)
    held.clear()
    missed = []
    try:
        with _participating(portal) as co:
            landings = []
            for rider in riders:
                try:
                    landing = rider.board(co)
                except Exception:  # noqa: BLE001  (a rider's trouble never stops the answer)
                    log.exception("work riding with an answer could not board")
                    landing = None
                if landing is None:
                    missed.append(rider)
                else:
                    landings.append(landing)
            try:
                yield
            finally:
                for landing in landings:  # each one sends its commands itself if the answer's request did not
                    try:
                        landing()
                    except Exception:  # noqa: BLE001
                        log.exception("work riding with an answer was not recorded")
    finally:
        for rider in missed:  # only now: its ordinary path may run at once (eager tasks) and need what boarded
            _missed(rider)


@contextlib.contextmanager
def _participating(portal):
    """The portal's coalescer this thread is a participant of (a call of a group), else one of its own: a lone
    call's answer then goes through it at once (it is the only participant, so nothing is waited for)."""
    co = active_for(portal.pk)
    if co is not None:
        yield co
        return
    co = Coalescer(B24Client(portal), window=settings.ROBOT_COALESCE_WINDOW)
    co.expect(1)
    with co.participate():
        yield co


def _missed(rider) -> None:
    try:
        rider.missed()
    except Exception:  # noqa: BLE001
        log.exception("work held for an answer could not take its ordinary path")
