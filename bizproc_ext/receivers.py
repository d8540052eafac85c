"""What automation does when the platform or signing announces something (connected in ``ready()``)."""
from __future__ import annotations

from django.db import transaction
from django.dispatch import receiver

from b24app import signals as platform
from signing import signals as signing

from .answers import answer_waiting_calls
from .models import RobotRegistration
from .registration import sync_robots
from .tasks import sync_portal_robots


@receiver(platform.app_installed, dispatch_uid="bizproc_ext.register_robots")
def register_robots(sender, portal, client, **kwargs) -> dict[str, str]:
    """The install page registers the catalogue's robots with the admin's token (and shows the result)."""
    return sync_robots(portal, client)


@receiver(platform.app_updated, dispatch_uid="bizproc_ext.register_robots_again")
def register_robots_again(sender, portal, **kwargs) -> None:
    # Bitrix24 deletes an app's robots on update: register them again, off the request path.
    pk = portal.pk
    transaction.on_commit(lambda: sync_portal_robots.delay(pk))


@receiver(platform.app_uninstalled, dispatch_uid="bizproc_ext.forget_robots")
def forget_robots(sender, portal, clean, **kwargs) -> None:
    RobotRegistration.objects.filter(portal=portal).delete()  # Bitrix24 removed them itself


@receiver(signing.request_finished, dispatch_uid="bizproc_ext.answer_workflows")
def answer_workflows(sender, request, **kwargs) -> None:
    answer_waiting_calls(request)
