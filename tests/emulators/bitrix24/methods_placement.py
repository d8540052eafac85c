"""Placements, CRM automation triggers and system notifications (registered into methods.METHODS).

From bitrix24/b24restdocs: api-reference/widgets/placement-{bind,unbind,get}.md,
api-reference/crm/automation/triggers/crm-automation-trigger-{add,list,delete,execute}.md,
api-reference/chats/notifications/im-notify-system-add.md.  State lives on the portal
(``placements``, ``triggers``, ``trigger_runs``, ``notifications``); Bitrix24 drops an application's
placements and triggers itself when the application is updated or uninstalled (events.py).
"""
from __future__ import annotations

import re
import time

from .core import B24Error, iso
from .crm import supported_type
from .methods import method, upper
from .portal import Ctx

TRIGGER_CODE_RE = re.compile(r"^[A-Za-z0-9.\-_]+$")
# The CRM placements the docs list (widgets/crm/*): detail tab, activity, timeline menu, doc generator button.
PLACEMENT_RE = re.compile(
    r"^(CRM_(DEAL|LEAD|CONTACT|COMPANY|QUOTE|SMART_INVOICE|DYNAMIC_\d+)_(DETAIL_TAB|DETAIL_ACTIVITY|"
    r"ACTIVITY_TIMELINE_MENU|DOCUMENTGENERATOR_BUTTON|DETAIL_TOOLBAR|LIST_TOOLBAR|LIST_MENU)|"
    r"DEFAULT|LEFT_MENU|PAGE_BACKGROUND_WORKER|IM_CONTEXT_MENU|BIZPROC_ACTIVITY_PROPERTIES_DIALOG)$")
MAX_MESSAGE = 20000


def _admin(ctx: Ctx, text: str = "Access denied!") -> None:
    if not ctx.is_admin:
        raise B24Error("ACCESS_DENIED", text, 403)


# ====================================================================== placement.*
@method("placement.bind", "placement")
def placement_bind(ctx: Ctx, p):
    _admin(ctx)
    u = upper(p)
    placement, handler = u.get("PLACEMENT"), u.get("HANDLER")
    for name, value in (("PLACEMENT", placement), ("HANDLER", handler)):
        if value in (None, ""):
            raise B24Error("ERROR_ARGUMENT", f"Argument '{name}' is null or empty", 400, argument=name)
        if not isinstance(value, str):
            raise B24Error("ERROR_ARGUMENT", f"The value of an argument '{name}' must be of type string", 400,
                           argument=name)
    placement = placement.upper()
    if not PLACEMENT_RE.match(placement):
        raise B24Error("ERROR_PLACEMENT_NOT_FOUND", "Placement not found", 400)
    if not re.match(r"^https?://", handler):
        raise B24Error("ERROR_WRONG_HANDLER_URL", "Wrong handler URL", 400)
    if u.get("USER_ID") not in (None, "", 0, "0") and placement != "PAGE_BACKGROUND_WORKER":
        raise B24Error("ERROR_PLACEMENT_USER_MODE", "User mode is not available", 400)
    portal = ctx.portal
    with portal.lock:
        if any(b["placement"] == placement and b["handler"] == handler for b in portal.placements):
            raise B24Error("ERROR_PLACEMENT_HANDLER_ALREADY_BINDED", "Handler already binded", 400)
        portal.placements.append({
            "placement": placement, "userId": 0, "handler": handler,
            "options": u.get("OPTIONS") if isinstance(u.get("OPTIONS"), dict) else [],
            "title": str(u.get("TITLE") or ""), "description": str(u.get("DESCRIPTION") or ""),
            "langAll": u.get("LANG_ALL") if isinstance(u.get("LANG_ALL"), dict) else {}})
    return True


@method("placement.unbind", "placement")
def placement_unbind(ctx: Ctx, p):
    _admin(ctx)
    u = upper(p)
    placement, handler = u.get("PLACEMENT"), u.get("HANDLER")
    if placement in (None, ""):
        raise B24Error("ERROR_ARGUMENT", "Argument 'PLACEMENT' is null or empty", 400, argument="PLACEMENT")
    if not isinstance(placement, str):
        raise B24Error("ERROR_ARGUMENT", "The value of an argument 'PLACEMENT' must be of type string", 400,
                       argument="PLACEMENT")
    portal = ctx.portal
    with portal.lock:
        gone = [b for b in portal.placements
                if b["placement"] == placement.upper() and (not handler or b["handler"] == handler)]
        portal.placements = [b for b in portal.placements if b not in gone]
    return {"count": 2 * len(gone)}  # the docs: +1 per record found, +1 per record removed


@method("placement.get", "placement")
def placement_get(ctx: Ctx, p):
    _admin(ctx)
    with ctx.portal.lock:
        return [dict(b) for b in ctx.portal.placements]


# ====================================================================== crm.automation.trigger.*
def _trigger_code(u: dict) -> str:
    code = u.get("CODE")
    if code in (None, "", 0, "0"):
        raise B24Error("", "Empty trigger code!", 400)
    if not isinstance(code, str) or not TRIGGER_CODE_RE.match(code):
        raise B24Error("", "Wrong trigger code!", 400)
    return code


def _trigger_admin(ctx: Ctx) -> None:
    _admin(ctx, "Access denied! Admin permissions required")


@method("crm.automation.trigger.add", "crm")
def trigger_add(ctx: Ctx, p):
    _trigger_admin(ctx)
    u = upper(p)
    code = _trigger_code(u)
    name = u.get("NAME")
    if name in (None, "", 0, "0"):
        raise B24Error("", "Empty trigger name!", 400)
    with ctx.portal.lock:
        ctx.portal.triggers[code] = str(name)
    return True


@method("crm.automation.trigger.list", "crm")
def trigger_list(ctx: Ctx, p):
    _trigger_admin(ctx)
    with ctx.portal.lock:
        return [{"NAME": name, "CODE": code} for code, name in ctx.portal.triggers.items()]


@method("crm.automation.trigger.delete", "crm")
def trigger_delete(ctx: Ctx, p):
    _trigger_admin(ctx)
    code = _trigger_code(upper(p))
    with ctx.portal.lock:
        if code not in ctx.portal.triggers:
            raise B24Error("", f"Trigger with code {code} is not registered.", 400)
        del ctx.portal.triggers[code]
    return True


@method("crm.automation.trigger.execute", "crm")
def trigger_execute(ctx: Ctx, p):
    _trigger_admin(ctx)
    u = upper(p)
    code = _trigger_code(u)
    portal = ctx.portal
    if code not in portal.triggers:
        raise B24Error("", f"Trigger with code {code} is not registered.", 400)
    try:
        etid = int(u.get("OWNER_TYPE_ID"))
    except (TypeError, ValueError):
        etid = 0
    if not supported_type(etid):
        raise B24Error("", "Incorrect parameter OWNER_TYPE_ID.", 400)
    try:
        owner = int(u.get("OWNER_ID"))
    except (TypeError, ValueError):
        owner = 0
    if owner <= 0:
        raise B24Error("", "Incorrect parameter OWNER_ID.", 400)
    with portal.lock:  # true even when no item or no stage is linked (the docs' warning)
        portal.trigger_runs.append({"code": code, "entityTypeId": etid, "entityId": owner, "at": iso(time.time())})
    return True


# ====================================================================== im.notify.system.add
@method("im.notify.system.add", "im")
def notify_system_add(ctx: Ctx, p):
    u = upper(p)
    try:
        user_id = int(u.get("USER_ID"))
    except (TypeError, ValueError):
        user_id = 0
    if user_id <= 0:
        raise B24Error("USER_ID_EMPTY", "User ID can't be empty", 400)
    message = str(u.get("MESSAGE") or "").strip()
    if not message:
        raise B24Error("MESSAGE_EMPTY", "Message can't be empty", 400)
    attach = u.get("ATTACH")
    if attach not in (None, "") and len(str(attach)) > 30 * 1024:
        raise B24Error("ATTACH_OVERSIZE", "You have exceeded the maximum allowable size of attach", 400)
    portal = ctx.portal
    with portal.lock:
        tag = str(u.get("TAG") or "")
        if tag:  # "When adding a notification with an existing tag, other notifications will be removed"
            portal.notifications = [n for n in portal.notifications if n["tag"] != tag]
        portal._notify_seq += 1
        portal.notifications.append({"id": portal._notify_seq, "user_id": user_id, "message": message[:MAX_MESSAGE],
                                     "message_out": str(u.get("MESSAGE_OUT") or ""), "tag": tag,
                                     "sub_tag": str(u.get("SUB_TAG") or ""), "sent": 1, "at": iso(time.time())})
        portal.notify_sends += 1
        return portal._notify_seq
