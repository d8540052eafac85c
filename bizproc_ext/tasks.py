"""Celery tasks of the robot side."""
from __future__ import annotations

import random
from datetime import timedelta

from celery import shared_task
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from b24app.models import Portal

from . import pipeline
from .coalesce import answer_requests_together, run_group, run_in_background, run_one
from .models import RobotCall
from .registration import sync_robots


def _countdown(outcome) -> float:
    # Jittered, and far below the broker's visibility timeout (see docs/decisions.md).
    return min(900.0, outcome.retry_in) * random.uniform(0.8, 1.2)


def _retry_each(outcomes: dict) -> None:
    for pk, outcome in outcomes.items():
        if outcome.retry_in is not None:
            process_robot_call.apply_async((pk,), countdown=_countdown(outcome))


# PostgreSQL refusing a connection (restart, max_connections reached) fails a task before it claims anything:
# the task itself is tried again within seconds, instead of the call waiting for the sweeper's republish
# (ROBOT_CALL_REPUBLISH_AFTER + a beat).  A retry of a call already claimed is absorbed by the claim.
DATABASE_UNREACHABLE = dict(autoretry_for=(OperationalError, InterfaceError), retry_backoff=1, retry_backoff_max=60,
                            retry_jitter=True)


@shared_task(bind=True, acks_late=True, max_retries=None, **DATABASE_UNREACHABLE)
def process_robot_call(self, call_id: int, portal_id: int | None = None) -> None:
    # A lone call joins its portal's calls running in this process, if any (a burst arriving in pieces).
    # ``portal_id``: the drainer's, so the task need not look it up (a hint: the claim loads the call's own).
    outcome = run_one(call_id, None if self.request.is_eager else _retry_each, portal_id=portal_id)
    if outcome is not None and outcome.retry_in is not None:
        raise self.retry(countdown=_countdown(outcome))


@shared_task(bind=True, acks_late=True, max_retries=None, **DATABASE_UNREACHABLE)
def process_robot_calls(self, call_ids: list[int]) -> None:
    """Calls of one portal that were ready together (coalesce.py); retries go out one call each."""
    if not self.request.is_eager and run_in_background(list(call_ids), _retry_each):
        return
    _retry_each(run_group(list(call_ids)))


@shared_task
def sweep_robot_calls() -> int:
    stuck = pipeline.sweep()
    for call_id in stuck:
        process_robot_call.delay(call_id)
    return len(stuck)


@shared_task
def answer_finished_requests(limit: int = 200) -> int:
    """Waiting calls whose request was finalized but whose answer was lost on the way (worker killed
    between the two).  Finalization itself has its own sweep (``signing.tasks.finalize_stragglers``)."""
    calls = RobotCall.objects.filter(state=RobotCall.WAITING, answer_state="pending",
                                     signature_request__finalized_at__lte=timezone.now() - timedelta(minutes=2))
    requests = {call.signature_request for call in calls.select_related("signature_request__portal")[:limit]}
    answer_requests_together(list(requests))  # one portal's requests share answer batches (coalesce.py)
    return len(requests)


@shared_task
def sync_portal_robots(portal_id: int) -> None:
    portal = Portal.objects.installed().filter(pk=portal_id).first()
    if portal:
        sync_robots(portal)
