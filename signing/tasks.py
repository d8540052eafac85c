"""Celery tasks of the signing side: status refresh, finalization, the poller."""
from __future__ import annotations

import logging
import random
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from b24app import coordination, logcontext
from b24app.rest import B24Error

from . import services, states
from .base import ProviderError
from .models import ProviderAccount, SignatureRequest

log = logging.getLogger("b24sign.signing")
TRANSIENT = (ProviderError, B24Error)


def _retry(task, exc, base: float = 10.0):
    """Retry a transient failure with jittered exponential backoff (capped well below the broker's
    visibility timeout); permanent errors are re-raised as they are."""
    if getattr(exc, "permanent", False):
        raise exc
    delay = getattr(exc, "retry_after", None) or min(600.0, base * 2 ** task.request.retries)
    raise task.retry(exc=exc, countdown=delay * random.uniform(0.8, 1.2), max_retries=12)


@shared_task(bind=True, acks_late=True)
def refresh_request_status(self, request_pk: int, source: str = "poll") -> None:
    req = SignatureRequest.objects.select_related("account", "portal").filter(pk=request_pk).first()
    if req is None or req.is_terminal or req.send_phase != "sent":
        return
    with logcontext.bound(portal=req.portal.member_id, request=str(req.public_id)[:8]):
        try:
            snapshot = req.account.provider_impl().status(req)
        except TRANSIENT as exc:
            if getattr(exc, "code", "") in ("no_status", "unsupported"):  # reports by callback only (Evia)
                return
            services.report_provider_error(req.account, exc)
            _retry(self, exc)
        services.apply_snapshot(req, snapshot, source)


@shared_task(bind=True, acks_late=True)
def finalize_request(self, request_pk: int) -> None:
    req = SignatureRequest.objects.select_related("account", "portal").filter(pk=request_pk).first()
    if req is None or not req.is_terminal:
        return
    with logcontext.bound(portal=req.portal.member_id, request=str(req.public_id)[:8]):
        try:
            services.finalize(req)
        except TRANSIENT as exc:
            services.report_provider_error(req.account, exc)
            if getattr(exc, "permanent", False):
                services.give_up_finalizing(req, str(exc))
                return
            _retry(self, exc, base=15.0)


@shared_task
def poll_open_requests(limit: int = 200) -> int:
    """Catch requests whose webhook never came: re-read those due for a poll, slowly backing off."""
    due = list(SignatureRequest.objects.open().filter(send_phase="sent", next_poll_at__lte=timezone.now())
               .order_by("next_poll_at")[:limit])
    for req in due:
        services.schedule_next_poll(req)
        refresh_request_status.delay(req.pk, "poll")
    return len(due)


@shared_task
def finalize_stragglers(limit: int = 200) -> int:
    """Terminal requests whose finalization task was lost (worker killed, broker restarted).  Answers
    lost after finalization are the automation layer's sweep (``bizproc_ext.tasks``)."""
    stuck = SignatureRequest.objects.filter(status__in=list(states.TERMINAL), finalized_at__isnull=True,
                                            status_changed_at__lte=timezone.now() - timedelta(minutes=2))[:limit]
    n = 0
    for req in stuck:
        finalize_request.delay(req.pk)
        n += 1
    return n


@shared_task
def check_callbacks() -> dict[str, int]:
    """Beat: every connected account's webhook subscriptions still exist at the provider (re-made if not).
    A provider that is down or refuses us is logged and tried again on the next run, never announced as a loss."""
    found: dict[str, int] = {}
    accounts = ProviderAccount.objects.filter(enabled=True, portal__uninstalled_at__isnull=True).select_related(
        "portal")
    for account in accounts:
        with logcontext.bound(portal=account.portal.member_id):
            try:
                verdict = services.check_callbacks(account)
            except coordination.LockTimeout:
                verdict = "busy"  # another check of this account is running
            except ProviderError as exc:
                log.warning("account %s: webhook subscriptions not checked: %s", account.pk, exc)
                services.report_provider_error(account, exc)
                verdict = "unreachable"
        found[verdict] = found.get(verdict, 0) + 1
    return found
