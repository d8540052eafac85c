"""Celery tasks of the robot side."""
from __future__ import annotations

import random

from celery import shared_task

from . import pipeline


@shared_task(bind=True, acks_late=True, max_retries=None)
def process_robot_call(self, call_id: int) -> None:
    outcome = pipeline.run(call_id)
    if outcome.retry_in is not None:
        # Jittered, and far below the broker's visibility timeout (see docs/decisions.md).
        raise self.retry(countdown=min(900.0, outcome.retry_in) * random.uniform(0.8, 1.2))


@shared_task
def sweep_robot_calls() -> int:
    stuck = pipeline.sweep()
    for call_id in stuck:
        process_robot_call.delay(call_id)
    return len(stuck)


@shared_task
def sync_portal_robots(portal_id: int) -> None:
    from b24app.models import Portal

    from .registration import sync_robots

    portal = Portal.objects.installed().filter(pk=portal_id).first()
    if portal:
        sync_robots(portal)
