"""CRM user fields and smart-process types (registered into methods.METHODS).

From bitrix24/b24restdocs: api-reference/crm/deals/user-defined-fields/crm-deal-userfield-{add,list,delete}.md
(and the lead pages, which are the same), api-reference/crm/universal/userfieldconfig/userfieldconfig-
{add,list,delete}.md, api-reference/crm/universal/crm-type-list.md.  Fields live on the portal in
``userfields`` (entityId -> FIELD_NAME -> field); ``crm.item.update`` ignores a ``ufCrm*`` key whose
field does not exist (methods_crm.py), as Bitrix24 does, so a deleted field shows as missing in the answer.
"""
from __future__ import annotations

import re

from .core import B24Error
from .crm import entity_id_for  # noqa: F401  (re-exported for tests)
from .methods import method, upper
from .portal import Ctx, MethodResult

TYPES = {"string", "integer", "double", "boolean", "datetime", "date", "money", "url", "address", "enumeration",
         "file", "employee", "crm_status", "iblock_section", "iblock_element", "crm"}
NAME_RE = re.compile(r"^[A-Z0-9_]+$")
LEGACY = {"crm.deal": "CRM_DEAL", "crm.lead": "CRM_LEAD"}


def _add(portal, entity: str, name: str, type_id: str, label, multiple: str, settings) -> dict:
    with portal.lock:
        fields = portal.userfields.setdefault(entity, {})
        if name in fields:
            raise B24Error("", f"Field {name} already exists", 400)
        portal._userfield_seq += 1
        field = {"ID": str(portal._userfield_seq), "ENTITY_ID": entity, "FIELD_NAME": name, "USER_TYPE_ID": type_id,
                 "MULTIPLE": "Y" if multiple in ("Y", True, "1", 1) else "N", "MANDATORY": "N",
                 "EDIT_FORM_LABEL": label, "SETTINGS": settings if isinstance(settings, dict) else {}}
        fields[name] = field
        return field


def _legacy_add(ctx: Ctx, p, entity: str):
    if not ctx.is_admin:
        raise B24Error("", "Access denied.", 400)
    f = upper(p.get("fields") if isinstance(p.get("fields"), dict) else {})
    name = str(f.get("FIELD_NAME") or "").strip()
    if not name:
        raise B24Error("", "The 'FIELD_NAME' field is not found", 400)
    full = name if name.startswith("UF_CRM_") else f"UF_CRM_{name}"
    if len(full) > 50:
        raise B24Error("", "Field name is too long (more than 50 characters).", 400)
    if not NAME_RE.match(full):
        raise B24Error("", "Field name contains invalid characters. Allowed characters are: A-Z, 0-9, and _.", 400)
    type_id = str(f.get("USER_TYPE_ID") or "")
    if not type_id:
        raise B24Error("", "The 'USER_TYPE_ID' field is not found", 400)
    if type_id not in TYPES:
        raise B24Error("", "Invalid custom type specified", 400)
    return int(_add(ctx.portal, entity, full, type_id, f.get("EDIT_FORM_LABEL") or f.get("LABEL") or "",
                    f.get("MULTIPLE"), f.get("SETTINGS"))["ID"])


def _legacy_list(ctx: Ctx, p, entity: str):
    filt = upper(p.get("filter") if isinstance(p.get("filter"), dict) else {})
    rows = list(ctx.portal.userfields.get(entity, {}).values())
    if filt.get("FIELD_NAME"):
        rows = [r for r in rows if r["FIELD_NAME"] == filt["FIELD_NAME"]]
    return [dict(r) for r in rows]


def _legacy_delete(ctx: Ctx, p, entity: str):
    if not ctx.is_admin:
        raise B24Error("", "Access denied.", 400)
    fid = str(upper(p).get("ID") or "")
    fields = ctx.portal.userfields.get(entity, {})
    name = next((n for n, f in fields.items() if f["ID"] == fid), None)
    if name is None:
        raise B24Error("ERROR_NOT_FOUND", "The entity with ID '%s' is not found." % fid, 400)
    ctx.portal.delete_userfield(entity, name)
    return True


for _prefix, _entity in LEGACY.items():
    method(f"{_prefix}.userfield.add", "crm")(lambda ctx, p, e=_entity: _legacy_add(ctx, p, e))
    method(f"{_prefix}.userfield.list", "crm")(lambda ctx, p, e=_entity: _legacy_list(ctx, p, e))
    method(f"{_prefix}.userfield.delete", "crm")(lambda ctx, p, e=_entity: _legacy_delete(ctx, p, e))


def _camel_field(field: dict) -> dict:
    return {"id": field["ID"], "entityId": field["ENTITY_ID"], "fieldName": field["FIELD_NAME"],
            "userTypeId": field["USER_TYPE_ID"], "multiple": field["MULTIPLE"], "mandatory": field["MANDATORY"],
            "settings": field["SETTINGS"], "editFormLabel": field["EDIT_FORM_LABEL"]}


@method("userfieldconfig.add", "userfieldconfig")
def userfieldconfig_add(ctx: Ctx, p):
    if str(p.get("moduleId") or "") != "crm":
        raise B24Error("", "Access denied", 400)
    if not ctx.is_admin:
        raise B24Error("", "Access denied", 400)
    f = p.get("field") if isinstance(p.get("field"), dict) else {}
    entity = str(f.get("entityId") or "")
    type_id = str(f.get("userTypeId") or "")
    name = str(f.get("fieldName") or "")
    if not type_id:
        raise B24Error("", "The 'USER_TYPE_ID' field is not found", 400)
    if not name:
        raise B24Error("", "The 'FIELD_NAME' field is not found", 400)
    known = {"CRM_SMART_INVOICE"} | {f"CRM_{t['id']}" for t in ctx.portal.smart_types}
    if entity not in known or not name.startswith(f"UF_{entity}_") or len(name) > 50 or not NAME_RE.match(name):
        raise B24Error("", "You cannot create custom fields", 400)
    if type_id not in TYPES:
        raise B24Error("", "Fail to create new user field", 400)
    field = _add(ctx.portal, entity, name, type_id, f.get("editFormLabel") or "", f.get("multiple"), f.get("settings"))
    return {"field": _camel_field(field)}


@method("userfieldconfig.list", "userfieldconfig")
def userfieldconfig_list(ctx: Ctx, p):
    filt = p.get("filter") if isinstance(p.get("filter"), dict) else {}
    rows = [f for fields in ctx.portal.userfields.values() for f in fields.values()]
    if filt.get("entityId"):
        rows = [r for r in rows if r["ENTITY_ID"] == filt["entityId"]]
    return {"fields": [_camel_field(r) for r in rows]}


@method("userfieldconfig.delete", "userfieldconfig")
def userfieldconfig_delete(ctx: Ctx, p):
    fid = str(p.get("id") or "")
    for entity, fields in ctx.portal.userfields.items():
        for name, f in fields.items():
            if f["ID"] == fid:
                ctx.portal.delete_userfield(entity, name)
                return True
    raise B24Error("", "Access denied", 400)


@method("crm.type.list", "crm")
def crm_type_list(ctx: Ctx, p):
    types = [dict(t) for t in ctx.portal.smart_types]
    return MethodResult({"types": types}, total=len(types))
