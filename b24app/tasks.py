"""Platform upkeep."""
from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from .models import Portal
from .rest import B24Error
from .rest.oauth import refresh_portal_tokens

log = logging.getLogger("b24sign.tasks")

# Refresh tokens live 180 days (current docs) or 28 days (older docs, U1). A portal that made no call for
# 20 days gets one refresh, safe under both readings.  Never a fixed schedule per portal: the docs warn
# that refreshing on a timer can get an app blocked.
IDLE_REFRESH_AFTER = timedelta(days=20)


@shared_task
def refresh_idle_portals(limit: int = 100) -> int:
    cutoff = timezone.now() - IDLE_REFRESH_AFTER
    idle = Portal.objects.installed().filter(needs_reinstall=False, token_expires_at__lt=cutoff)[:limit]
    done = 0
    for portal in idle:
        try:
            refresh_portal_tokens(portal, portal.token_version)
            done += 1
        except B24Error as exc:
            log.warning("portal %s: idle refresh failed: %s", portal.member_id, exc.error)
    return done
