"""Signing's own subscriptions, connected in ``SigningConfig.ready()``."""
from __future__ import annotations

from django.db import transaction
from django.dispatch import receiver

from b24app import signals as platform

from .models import ProviderAccount, SignatureRequest
from .signals import request_ended
from .tasks import finalize_request


@receiver(request_ended, dispatch_uid="signing.finalize_when_ended")
def finalize_when_ended(sender, request, **kwargs):
    # After commit, so the worker reads the terminal state we just wrote.
    pk = request.pk
    transaction.on_commit(lambda: finalize_request.delay(pk), robust=True)


@receiver(platform.app_uninstalled, dispatch_uid="signing.purge_on_clean_uninstall")
def purge_on_clean_uninstall(sender, portal, clean, **kwargs):
    """``CLEAN=1``: the portal's requests, their signed files and its provider accounts (with their secrets)
    go before the portal row (``SignatureRequest.account`` is PROTECT, so the order matters)."""
    if not clean:
        return
    requests = SignatureRequest.objects.filter(portal=portal)
    names = [name for pair in requests.values_list("signed_file", "audit_file") for name in pair if name]
    requests.delete()
    ProviderAccount.objects.filter(portal=portal).delete()
    storage = SignatureRequest._meta.get_field("signed_file").storage
    transaction.on_commit(lambda: [storage.delete(name) for name in names], robust=True)
