"""Signing's own subscriptions, connected in ``SigningConfig.ready()``."""
from __future__ import annotations

from django.db import transaction
from django.dispatch import receiver

from .callbacks import replay_if_sent
from .signals import request_ended, request_sent
from .tasks import finalize_request


@receiver(request_ended, dispatch_uid="signing.finalize_when_ended")
def finalize_when_ended(sender, request, **kwargs):
    # After commit, so the worker reads the terminal state we just wrote.
    pk = request.pk
    transaction.on_commit(lambda: finalize_request.delay(pk), robust=True)


@receiver(request_sent, dispatch_uid="signing.replay_early_callbacks")
def replay_early_callbacks(sender, request, **kwargs):
    # A signer may have signed while the send was running: apply what they did now, not at the first poll.
    pk = request.pk
    transaction.on_commit(lambda: replay_if_sent(pk), robust=True)
