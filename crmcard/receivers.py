"""What the CRM card does when the platform or signing announces something (connected in ``ready()``)."""
from __future__ import annotations

from django.db import transaction
from django.dispatch import receiver

from b24app import signals as platform
from b24app.models import Portal
from signing import signals as signing
from signing.registry import all_providers

from .models import CardSetup
from .notify import connection_recovered, notify_admins
from .tasks import announce_change, setup_portal, setup_portal_card


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
    pk, portal_id = request.pk, request.portal_id
    transaction.on_commit(lambda: announce_change(pk, portal_id), robust=True)


@receiver(signing.request_changed, dispatch_uid="crmcard.card_on_change")
def card_on_change(sender, request, old_status, new_status, **kwargs) -> None:
    _soon(request)


@receiver(signing.signers_changed, dispatch_uid="crmcard.card_on_signers")
def card_on_signers(sender, request, **kwargs) -> None:
    _soon(request)


@receiver(signing.request_finished, dispatch_uid="crmcard.card_on_finish")
def card_on_finish(sender, request, **kwargs) -> None:
    _soon(request)


BREAKS = {"auth": "the %s connection stopped working (the provider refused our credentials); reconnect it in "
                  "b24sign's settings.",
          "callbacks": "%s does not send b24sign its status updates (the webhook subscription failed); b24sign "
                       "polls instead — reconnect the account to fix it."}


@receiver(signing.account_broken, dispatch_uid="crmcard.tell_admins")
def tell_admins(sender, account, reason, message="", **kwargs) -> None:
    label = all_providers()[account.provider].label if account.provider in all_providers() else account.provider
    text = BREAKS.get(reason, "%s: " + message) % label
    pk, key = account.portal_id, f"account:{account.pk}:{reason}"
    # After commit, and at most once per account and kind of break until it is reconnected (PortalNotice).
    transaction.on_commit(lambda: _notify(pk, key, text), robust=True)


LOSS = {True: "%s stopped sending b24sign its status updates (the webhook subscription was gone: deleted or "
              "expired at %s); b24sign subscribed again, nothing to do.",
        False: "%s stopped sending b24sign its status updates (the webhook subscription was gone: deleted or "
               "expired at %s) and subscribing again failed (%s); b24sign polls instead — reconnect the account."}


@receiver(signing.callbacks_lost, dispatch_uid="crmcard.tell_admins_callbacks_lost")
def tell_admins_callbacks_lost(sender, account, lost_at, restored, message="", **kwargs) -> None:
    label = all_providers()[account.provider].label if account.provider in all_providers() else account.provider
    text = LOSS[restored] % ((label, label) if restored else (label, label, message[:200]))
    # One notice per loss (keyed by when it was first seen) and outcome: a later check that finds the same loss,
    # or a retry, says nothing more; a loss that could not be restored and later is, says so once.
    key = f"account:{account.pk}:lost:{int(lost_at.timestamp())}:{'restored' if restored else 'failed'}"
    pk = account.portal_id
    transaction.on_commit(lambda: _notify(pk, key, text), robust=True)


def _notify(portal_id: int, key: str, text: str) -> None:
    portal = Portal.objects.installed().filter(pk=portal_id).first()
    if portal:
        notify_admins(portal, key, text)


@receiver(signing.account_connected, dispatch_uid="crmcard.connection_ok")
def connection_ok(sender, account, **kwargs) -> None:
    connection_recovered(account.portal, f"account:{account.pk}:")
