"""Configurable timeline activities and log messages (registered into methods.METHODS).

From bitrix24/b24restdocs: api-reference/crm/timeline/activities/configurable/crm-activity-configurable-
{add,update,get}.md with structure/{layout,header,body,footer,action,icon}.md, and
api-reference/crm/timeline/logmessage/crm-timeline-logmessage-add.md.  The layout is checked by the
documented structure rules (required and redundant fields, enums, key symbols, item limits).
"""
from __future__ import annotations

import re
import time

from .core import B24Error, iso
from .crm import supported_type
from .methods import method
from .portal import Ctx

KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
ICONS = {"info", "call-completed", "call-incoming", "call-outgoing", "document", "comment", "attention",
         "check", "email", "task", "sign"}
TAG_TYPES = {"success", "failure", "warning", "primary", "secondary"}
BUTTON_TYPES = {"primary", "secondary"}
BLOCK_TYPES = {"text", "largeText", "link", "withTitle", "lineOfBlocks", "deadline"}
ACTION_FIELDS = {"redirect": ({"type", "uri"}, {"type", "uri"}),
                 "restEvent": ({"type", "id"}, {"type", "id", "actionParams", "animationType"}),
                 "openRestApp": ({"type"}, {"type", "actionParams", "sliderParams"})}


def _err(code: str, text: str) -> B24Error:
    return B24Error(code, text, 400)


def _fields(obj, where: str, required: set, allowed: set) -> dict:
    if not isinstance(obj, dict):
        raise _err("FIELD_IS_REQUIRED", f"{where} must be an object")
    for k in required:
        if obj.get(k) in (None, "", {}, []):
            raise _err("FIELD_IS_REQUIRED", f"Field `{where}.{k}` is required")
    for k in obj:
        if k not in allowed:
            raise _err("FIELD_IS_REDUNDANT", f"Field `{where}.{k}` is redundant")
    return obj


def _keys(d, where: str, limit: int) -> dict:
    if not isinstance(d, dict):
        raise _err("WRONG_FIELD_VALUE", f"{where} must be an associative array")
    if len(d) > limit:
        raise _err("TOO_MANY_ITEMS", f"Too many items in {where} (max {limit})")
    for k in d:
        if not KEY_RE.match(str(k)):
            raise _err("KEY_CONTAIN_WRONG_SYMBOLS", f"Key `{k}` of {where} contains wrong symbols")
    return d


def _action(a, where: str) -> None:
    if not isinstance(a, dict) or a.get("type") not in ACTION_FIELDS:
        raise _err("ENUM_FIELD", f"{where}.type is not one of {sorted(ACTION_FIELDS)}")
    required, allowed = ACTION_FIELDS[a["type"]]
    _fields(a, where, required, allowed | {"uri", "id", "actionParams", "animationType", "sliderParams"})
    extra = set(a) - set().union(*(f[1] for f in ACTION_FIELDS.values()))
    if extra:
        raise _err("FIELD_IS_REDUNDANT", f"Field `{where}.{sorted(extra)[0]}` is redundant")
    params = a.get("actionParams")
    if params is not None:
        _keys(params, f"{where}.actionParams", 20)
    if a["type"] == "restEvent" and a.get("animationType") not in (None, "loader", "disable"):
        raise _err("ENUM_FIELD", f"{where}.animationType must be loader or disable")


def _block(b, where: str) -> None:
    _fields(b, where, {"type"}, {"type", "properties", "scope"})
    if b["type"] not in BLOCK_TYPES:
        raise _err("ENUM_FIELD", f"{where}.type `{b['type']}` is not a content block type")
    props = b.get("properties") or {}
    if b["type"] == "link":
        _fields(props, f"{where}.properties", {"text", "action"}, {"text", "action", "bold"})
        _action(props["action"], f"{where}.properties.action")
    elif b["type"] in ("text", "largeText"):
        _fields(props, f"{where}.properties", {"value"}, {"value", "multiline", "bold", "size", "color"})
    elif b["type"] == "withTitle":
        _fields(props, f"{where}.properties", {"title", "block"}, {"title", "block", "inline"})
        _block(props["block"], f"{where}.properties.block")
    elif b["type"] == "lineOfBlocks":
        _fields(props, f"{where}.properties", {"blocks"}, {"blocks"})
        for k, inner in _keys(props["blocks"], f"{where}.properties.blocks", 20).items():
            _block(inner, f"{where}.properties.blocks.{k}")


def validate_layout(layout) -> dict:
    if not layout:
        raise _err("ERROR_EMPTY_LAYOUT", "The layout field must be filled")
    _fields(layout, "layout", {"icon", "header", "body"}, {"icon", "header", "body", "footer"})
    icon = _fields(layout["icon"], "layout.icon", {"code"}, {"code"})
    if icon["code"] not in ICONS:
        raise _err("ENUM_FIELD", f"Unknown icon code `{icon['code']}`")
    header = _fields(layout["header"], "layout.header", {"title"}, {"title", "titleAction", "tags"})
    if header.get("titleAction") is not None:
        _action(header["titleAction"], "layout.header.titleAction")
    for k, tag in _keys(header.get("tags") or {}, "layout.header.tags", 2).items():
        _fields(tag, f"layout.header.tags.{k}", {"title", "type"}, {"title", "type", "action"})
        if tag["type"] not in TAG_TYPES:
            raise _err("ENUM_FIELD", f"Tag type `{tag['type']}` is not allowed")
    body = _fields(layout["body"], "layout.body", {"blocks"}, {"logo", "blocks"})
    for k, b in _keys(body["blocks"], "layout.body.blocks", 20).items():
        _block(b, f"layout.body.blocks.{k}")
    footer = layout.get("footer")
    if footer is not None:
        _fields(footer, "layout.footer", set(), {"buttons", "menu"})
        for k, btn in _keys(footer.get("buttons") or {}, "layout.footer.buttons", 2).items():
            _fields(btn, f"layout.footer.buttons.{k}", {"title", "type", "action"},
                    {"title", "type", "action", "scope", "hideIfReadonly"})
            if btn["type"] not in BUTTON_TYPES:
                raise _err("ENUM_FIELD", f"Button type `{btn['type']}` is not allowed")
            _action(btn["action"], f"layout.footer.buttons.{k}.action")
        menu = footer.get("menu")
        if menu is not None:
            _fields(menu, "layout.footer.menu", set(), {"showPinItem", "showPostponeItem", "showDeleteItem", "items"})
            for k, item in _keys(menu.get("items") or {}, "layout.footer.menu.items", 10).items():
                _fields(item, f"layout.footer.menu.items.{k}", {"title", "action"},
                        {"title", "action", "scope", "hideIfReadonly", "sort"})
                _action(item["action"], f"layout.footer.menu.items.{k}.action")
    return layout


def _owner(portal, etid, eid) -> tuple[int, int]:
    try:
        etid, eid = int(etid), int(eid)
    except (TypeError, ValueError):
        raise _err("100", "Required fields are not filled") from None
    if not supported_type(etid) or portal.crm.get(etid, eid) is None:
        raise _err("NOT_FOUND", "Not found.")
    return etid, eid


def _app(ctx: Ctx) -> str:
    return ctx.portal.cloud.client_id  # OAuth tokens are always in an application's context here



@method("crm.activity.configurable.add", "crm")
def configurable_add(ctx: Ctx, p):
    portal = ctx.portal
    fields = p.get("fields")
    if p.get("ownerTypeId") in (None, "") or p.get("ownerId") in (None, "") or not isinstance(fields, dict):
        raise _err("100", "Required fields are not filled")
    etid, eid = _owner(portal, p.get("ownerTypeId"), p.get("ownerId"))
    layout = validate_layout(p.get("layout"))
    if fields.get("isIncomingChannel") in (True, "Y", "1", 1, "true") and fields.get("deadline"):
        raise _err("INCOMING_ACTIVITY_CAN_NOT_BE_WITH_DEADLINE", "Incoming activity cannot have a deadline")
    with portal.lock:
        portal._activity_seq += 1
        aid = portal._activity_seq
        portal.activities[aid] = {"id": aid, "ownerTypeId": etid, "ownerId": eid, "fields": dict(fields),
                                  "layout": layout, "app": _app(ctx), "updates": 0, "created": iso(time.time())}
    return {"activity": {"id": aid}}


@method("crm.activity.configurable.update", "crm")
def configurable_update(ctx: Ctx, p):
    portal = ctx.portal
    fields = p.get("fields")
    if p.get("id") in (None, "") or not isinstance(fields, dict):
        raise _err("100", "Required fields are not filled")
    try:
        act = portal.activities.get(int(p.get("id")))
    except (TypeError, ValueError):
        act = None
    if act is None:
        raise _err("NOT_FOUND", "Not found.")
    if act["app"] != _app(ctx):
        raise _err("ERROR_WRONG_APPLICATION", "The activity can only be updated by the application that created it")
    layout = validate_layout(p.get("layout"))
    with portal.lock:
        act["fields"], act["layout"] = dict(fields), layout  # the layout is replaced as a whole
        act["updates"] += 1
    return {"activity": {"id": act["id"]}}


@method("crm.activity.configurable.get", "crm")
def configurable_get(ctx: Ctx, p):
    try:
        act = ctx.portal.activities.get(int(p.get("id")))
    except (TypeError, ValueError):
        act = None
    if act is None:
        raise _err("NOT_FOUND", "Not found.")
    return {"activity": {"id": act["id"], "ownerTypeId": act["ownerTypeId"], "ownerId": act["ownerId"],
                         "fields": act["fields"], "layout": act["layout"]}}


@method("crm.timeline.logmessage.add", "crm")
def logmessage_add(ctx: Ctx, p):
    portal = ctx.portal
    f = p.get("fields")
    if not isinstance(f, dict) or any(f.get(k) in (None, "") for k in
                                      ("entityTypeId", "entityId", "title", "text", "iconCode")):
        raise _err("100", "Required fields are not provided")
    try:
        etid, eid = int(f["entityTypeId"]), int(f["entityId"])
    except (TypeError, ValueError):
        raise _err("100", "Required fields are not provided") from None
    if not supported_type(etid) or portal.crm.get(etid, eid) is None:
        raise _err("OWNER_NOT_FOUND", "The CRM object with the specified entityTypeId and entityId does not exist")
    if f["iconCode"] not in ICONS:
        raise _err("0", f"Unknown icon code `{f['iconCode']}`")
    with portal.lock:
        portal._logmessage_seq += 1
        msg = {"id": portal._logmessage_seq, "created": iso(time.time()), "authorId": int(ctx.user["ID"]),
               "title": str(f["title"]), "text": str(f["text"]), "iconCode": f["iconCode"],
               "entityTypeId": etid, "entityId": eid}
        portal.log_messages.append(msg)
    return {"logMessage": {k: v for k, v in msg.items() if k not in ("entityTypeId", "entityId")}}
