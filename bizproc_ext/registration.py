"""Register the catalogue's robots on a portal, idempotently: list, then add what is missing, update
what exists and delete what the catalogue no longer has (its handler would answer 404).  Bitrix24 drops
an app's robots on update (spec §1.6), so this runs on install, on ONAPPUPDATE and from the settings page.

The list can be stale by the time the batch runs (a concurrent sync): an add refused as already there
(``ERROR_ACTIVITY_ALREADY_INSTALLED``, or ``ERROR_ACTIVITY_ADD_FAILURE`` when the insert itself failed)
becomes an update, an update of a robot that is gone (``ERROR_ACTIVITY_NOT_FOUND``) becomes an add."""
from __future__ import annotations

import logging

from django.utils import timezone

from b24app.rest import B24Client, B24Error

from .models import RobotRegistration
from .robots import CATALOGUE_VERSION, catalogue

log = logging.getLogger("b24sign.robots")


ALREADY_THERE = {"ERROR_ACTIVITY_ALREADY_INSTALLED", "ERROR_ACTIVITY_ADD_FAILURE"}


def update_params(code: str, payload: dict) -> dict:
    """``bizproc.robot.update``'s parameters.  Some core versions validate ``PLACEMENT_HANDLER`` at the top
    level of the call rather than inside ``FIELDS`` (``ERROR_WRONG_HANDLER_URL`` otherwise): both."""
    fields = {k: v for k, v in payload.items() if k != "CODE"}
    params = {"CODE": code, "FIELDS": fields}
    if fields.get("PLACEMENT_HANDLER"):
        params["PLACEMENT_HANDLER"] = fields["PLACEMENT_HANDLER"]
    return params


def sync_robots(portal, client: B24Client | None = None) -> dict[str, str]:
    """Make the portal's robots match the catalogue.  Returns ``{code: "added"|"updated"|"deleted"}``."""
    client = client or B24Client(portal)
    existing = set(client.call("bizproc.robot.list") or [])
    robots = catalogue()
    payloads = {code: robot.payload(portal.language, portal.token_user_id) for code, robot in robots.items()}
    calls, actions = {}, {}
    for code, payload in payloads.items():
        if code in existing:
            calls[code] = ("bizproc.robot.update", update_params(code, payload))
            actions[code] = "updated"
        else:
            calls[code] = ("bizproc.robot.add", payload)
            actions[code] = "added"
    for code in sorted(existing - set(robots)):  # no longer in the catalogue
        calls[code] = ("bizproc.robot.delete", {"CODE": code})
        actions[code] = "deleted"
    result = client.batch(calls)
    for code, err in result.errors.items():
        error = err.get("error")
        if actions.get(code) == "added" and error in ALREADY_THERE:  # a concurrent sync added it first
            client.call("bizproc.robot.update", update_params(code, payloads[code]))
            actions[code] = "updated"
        elif actions.get(code) == "updated" and error == "ERROR_ACTIVITY_NOT_FOUND":  # deleted since the list
            client.call("bizproc.robot.add", payloads[code])
            actions[code] = "added"
        elif actions.get(code) == "deleted" and error == "ERROR_ACTIVITY_NOT_FOUND":
            pass  # someone deleted it already
        else:
            raise B24Error(str(error), str(err.get("error_description", "")), method=f"robot {code}")
    now = timezone.now()
    for code in robots:
        RobotRegistration.objects.update_or_create(portal=portal, code=code,
                                                   defaults={"version": CATALOGUE_VERSION, "registered_at": now})
    RobotRegistration.objects.filter(portal=portal).exclude(code__in=list(robots)).delete()
    log.info("portal %s: robots %s", portal.member_id, actions)
    return actions
