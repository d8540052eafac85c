"""REST methods for robots: bizproc.robot.add/update/list/delete (registered into methods.METHODS)."""
from __future__ import annotations

import re

from .core import B24Error
from .methods import _check_handler, method, upper
from .portal import Ctx

# ====================================================================== robots (§4.5)
CODE_RE = re.compile(r"^[a-z0-9.\-_]+$", re.I)
PROP_RE = re.compile(r"^[a-z][a-z0-9_]*$", re.I)


def _vf(text: str) -> B24Error:
    return B24Error("ERROR_ACTIVITY_VALIDATION_FAILURE", text, 400)


def _require_admin(ctx: Ctx) -> None:
    if not ctx.is_admin:
        raise B24Error("ACCESS_DENIED", "Access denied!", 403)


def _check_update_placement(ctx: Ctx, d: dict, fields: dict) -> None:
    """Some core versions validate ``PLACEMENT_HANDLER`` at the top level of ``bizproc.robot.update`` when
    the update turns the placement on, not the one inside ``FIELDS`` (``robot_update_top_placement``)."""
    cloud = ctx.portal.cloud
    if cloud.robot_update_top_placement and str(fields.get("USE_PLACEMENT", "")).upper() == "Y":
        _check_handler(cloud, d.get("PLACEMENT_HANDLER"))


def _listed_robots(portal) -> list:
    """What bizproc.robot.list shows: the portal's robots, or the stale snapshot a test set (a concurrent
    sync changed them between our list and our batch)."""
    return list(portal.stale_robot_list) if portal.stale_robot_list is not None else list(portal.robots)


def _duplicate_add(portal) -> B24Error:
    """A second add of a code: the core's pre-check (``ERROR_ACTIVITY_ALREADY_INSTALLED``), or its insert
    failing when a concurrent add won (``ERROR_ACTIVITY_ADD_FAILURE``; ``cloud.robot_add_race``)."""
    if portal.cloud.robot_add_race:
        return B24Error("ERROR_ACTIVITY_ADD_FAILURE", "Activity or Robot already added", 400)
    return B24Error("ERROR_ACTIVITY_ALREADY_INSTALLED", "Activity or Robot already installed!", 400)


def _validate_code(code) -> None:
    if not code:
        raise _vf("Empty activity code!")
    if not isinstance(code, str) or not CODE_RE.match(code):
        raise _vf("Wrong activity code!")


def _norm_props(props) -> dict:
    """Validate PROPERTIES/RETURN_PROPERTIES and upper-case the attribute keys, as the core does."""
    if isinstance(props, list):  # a PHP list: keys 0..n-1
        props = {str(i): v for i, v in enumerate(props)}
    if not isinstance(props, dict):
        raise _vf("Wrong properties array!")
    if not props:
        raise _vf("Wrong property key (0)!")
    out = {}
    for key, value in props.items():
        if not PROP_RE.match(str(key)):
            raise _vf(f"Wrong property key ({key})!")
        attrs = upper(value) if isinstance(value, dict) else {}
        if not attrs.get("NAME"):
            raise _vf(f"Empty property NAME ({key})!")
        out[key] = attrs
    return out


def _validate_fields(ctx: Ctx, d: dict, partial: bool) -> dict:
    cloud = ctx.portal.cloud
    if not partial or "HANDLER" in d:
        _check_handler(cloud, d.get("HANDLER"))
    if (not partial or "NAME" in d) and not d.get("NAME"):
        raise _vf("Empty activity NAME!")
    for k in ("PROPERTIES", "RETURN_PROPERTIES"):
        if k in d:
            d[k] = _norm_props(d[k])
    if "DOCUMENT_TYPE" in d:
        dt = d["DOCUMENT_TYPE"]
        if not (isinstance(dt, list) and len(dt) == 3 and all(isinstance(x, str) and x for x in dt)):
            raise _vf("Wrong activity DOCUMENT_TYPE!")
    if "FILTER" in d:
        f = d["FILTER"]
        if not isinstance(f, dict) or any(str(k).upper() not in ("INCLUDE", "EXCLUDE") for k in f) \
                or any(not isinstance(v, list) for v in f.values()):
            raise _vf("Wrong activity FILTER!")
    if not partial and str(d.get("USE_PLACEMENT", "")).upper() == "Y":
        _check_handler(cloud, d.get("PLACEMENT_HANDLER"))
    elif partial and "PLACEMENT_HANDLER" in d:
        _check_handler(cloud, d.get("PLACEMENT_HANDLER"))
    for k in ("USE_SUBSCRIPTION", "USE_PLACEMENT"):
        if k in d and isinstance(d[k], bool):
            d[k] = "Y" if d[k] else "N"
    return d


@method("bizproc.robot.add", "bizproc")
def robot_add(ctx: Ctx, p):
    _require_admin(ctx)
    d = upper(p)
    if not d:
        raise _vf("Empty data!")
    _validate_code(d.get("CODE"))
    d = _validate_fields(ctx, d, partial=False)
    portal = ctx.portal
    with portal.lock:
        if d["CODE"] in portal.robots:
            raise _duplicate_add(portal)
        d.setdefault("AUTH_USER_ID", ctx.token.user_id)
        portal.robots[d["CODE"]] = d
    return True


@method("bizproc.robot.update", "bizproc")
def robot_update(ctx: Ctx, p):
    _require_admin(ctx)
    d = upper(p)
    code = d.get("CODE")
    _validate_code(code)
    portal = ctx.portal
    if code not in portal.robots:
        raise B24Error("ERROR_ACTIVITY_NOT_FOUND", "Activity or Robot not found!", 400)
    fields = upper(d.get("FIELDS")) if isinstance(d.get("FIELDS"), dict) else {}
    fields.pop("CODE", None)
    if not fields:
        raise _vf("No fields to update")
    _check_update_placement(ctx, d, fields)
    fields = _validate_fields(ctx, fields, partial=True)
    with portal.lock:
        robot = portal.robots[code]
        merged = {**robot, **fields}
        if str(merged.get("USE_PLACEMENT", "")).upper() == "Y":
            _check_handler(portal.cloud, merged.get("PLACEMENT_HANDLER"))
        elif str(merged.get("USE_PLACEMENT", "")).upper() == "N":
            merged.pop("PLACEMENT_HANDLER", None)  # USE_PLACEMENT=N removes the settings placement
        robot.clear()
        robot.update(merged)
    return True


@method("bizproc.robot.list", "bizproc")
def robot_list(ctx: Ctx, p):
    _require_admin(ctx)  # the core checks the admin right here too
    return _listed_robots(ctx.portal)


@method("bizproc.robot.delete", "bizproc")
def robot_delete(ctx: Ctx, p):
    _require_admin(ctx)
    code = upper(p).get("CODE")
    _validate_code(code)
    with ctx.portal.lock:
        if code not in ctx.portal.robots:
            raise B24Error("ERROR_ACTIVITY_NOT_FOUND", "Activity or Robot not found!", 400)
        del ctx.portal.robots[code]
    return True
