"""What the CRM card does when the platform or signing announces something (connected in ``ready()``)."""
from __future__ import annotations

from django.db import transaction
from django.dispatch import receiver

from b24app import signals as platform
from signing import signals as signing

from .models import CardSetup
from .tasks import setup_portal, setup_portal_card, sync_card


@receiver(platform.app_installed, dispatch_uid="crmcard.setup_on_install")
def setup_on_install(sender, portal, client, **kwargs) -> dict[str, str]:
    return setup_portal(portal, client)


@receiver(platform.app_updated, dispatch_uid="crmcard.setup_on_update")
def setup_on_update(sender, portal, **kwargs) -> None:
    # Bitrix24 dropped the app's placements and triggers with the update: set them up again, off the request path.
    pk = portal.pk
    transaction.on_commit(lambda: setup_portal_card.delay(pk), robust=True)


@receiver(platform.app_uninstalled, dispatch_uid="crmcard.forget_on_uninstall")
def forget_on_uninstall(sender, portal, clean, **kwargs) -> None:
    # Bitrix24 removes the app's placements and triggers itself (our tokens are void by now).
    CardSetup.objects.filter(portal=portal).update(placements={}, triggers={})


def _soon(request) -> None:
    pk = request.pk
    transaction.on_commit(lambda: sync_card.delay(pk), robust=True)


@receiver(signing.request_changed, dispatch_uid="crmcard.card_on_change")
def card_on_change(sender, request, old_status, new_status, **kwargs) -> None:
    _soon(request)


@receiver(signing.signers_changed, dispatch_uid="crmcard.card_on_signers")
def card_on_signers(sender, request, **kwargs) -> None:
    _soon(request)


@receiver(signing.request_finished, dispatch_uid="crmcard.card_on_finish")
def card_on_finish(sender, request, **kwargs) -> None:
    _soon(request)
