"""Register the catalogue's robots on a portal, idempotently: list, then add what is missing and update
what exists.  Bitrix24 drops an app's robots on update (spec §1.6), so this runs on install, on
ONAPPUPDATE and from the settings page."""
from __future__ import annotations

import logging

from django.utils import timezone

from b24app.rest import B24Client, B24Error

from .models import RobotRegistration
from .robots import CATALOGUE_VERSION, catalogue

log = logging.getLogger("b24sign.robots")


def sync_robots(portal, client: B24Client | None = None) -> dict[str, str]:
    """Make the portal's robots match the catalogue.  Returns ``{code: "added"|"updated"}``."""
    client = client or B24Client(portal)
    existing = set(client.call("bizproc.robot.list") or [])
    robots = catalogue()
    calls, actions = {}, {}
    for code, robot in robots.items():
        payload = robot.payload(portal.language, portal.token_user_id)
        if code in existing:
            fields = {k: v for k, v in payload.items() if k != "CODE"}
            calls[code] = ("bizproc.robot.update", {"CODE": code, "FIELDS": fields})
            actions[code] = "updated"
        else:
            calls[code] = ("bizproc.robot.add", payload)
            actions[code] = "added"
    result = client.batch(calls)
    for code, err in result.errors.items():
        if err.get("error") == "ERROR_ACTIVITY_ALREADY_INSTALLED":  # a concurrent sync added it first
            client.call("bizproc.robot.update", {"CODE": code, "FIELDS": {
                k: v for k, v in robots[code].payload(portal.language, portal.token_user_id).items() if k != "CODE"}})
            actions[code] = "updated"
            continue
        raise B24Error(str(err.get("error")), str(err.get("error_description", "")), method=f"robot {code}")
    now = timezone.now()
    for code in robots:
        RobotRegistration.objects.update_or_create(portal=portal, code=code,
                                                   defaults={"version": CATALOGUE_VERSION, "registered_at": now})
    RobotRegistration.objects.filter(portal=portal).exclude(code__in=list(robots)).delete()
    log.info("portal %s: robots %s", portal.member_id, actions)
    return actions
