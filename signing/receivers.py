"""Signing's own subscriptions, connected in ``SigningConfig.ready()``."""
from __future__ import annotations

from django.db import transaction
from django.dispatch import receiver

from .signals import request_ended
from .tasks import finalize_request


@receiver(request_ended, dispatch_uid="signing.finalize_when_ended")
def finalize_when_ended(sender, request, **kwargs):
    # After commit, so the worker reads the terminal state we just wrote.
    pk = request.pk
    transaction.on_commit(lambda: finalize_request.delay(pk), robust=True)
