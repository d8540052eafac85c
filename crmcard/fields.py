"""The three status fields on CRM items: "E-signature status", "Signed on", "Signed document".

Deals and leads use their own user-field methods (``crm.deal.userfield.*`` / ``crm.lead.userfield.*``);
smart invoices and smart processes use ``userfieldconfig.*`` (entityId ``CRM_SMART_INVOICE`` /
``CRM_<type id>``).  Values go out with ``crm.item.update`` under the item API's camel-case names.
An admin may map the three roles to existing fields instead (Settings); a field deleted in Bitrix24
shows as missing in the ``crm.item.update`` answer and is then recreated once (or reported), never retried
in a loop.
"""
from __future__ import annotations

import logging
import re

from b24app.rest import B24Client, B24Error

from .models import CardSetup

log = logging.getLogger("b24sign.crmcard")

ROLES = {
    "status": ("B24SIGN_STATE", "string", {"en": "E-signature status", "ru": "Статус электронной подписи"}),
    "date": ("B24SIGN_DATE", "datetime", {"en": "Signed on", "ru": "Дата подписания"}),
    "file": ("B24SIGN_FILE", "url", {"en": "Signed document", "ru": "Подписанный документ"}),
}
LEGACY = {2: "crm.deal", 1: "crm.lead"}
STATUS_LABELS = {
    "en": {"draft": "Draft", "sent": "Sent", "partially_signed": "Partially signed", "completed": "Signed",
           "declined": "Declined", "expired": "Expired", "cancelled": "Cancelled", "error": "Failed"},
    "ru": {"draft": "Черновик", "sent": "Отправлен", "partially_signed": "Подписан частично", "completed": "Подписан",
           "declined": "Отклонён", "expired": "Истёк срок", "cancelled": "Отменён", "error": "Ошибка"},
}


def status_label(status: str, lang: str) -> str:
    return STATUS_LABELS.get(lang if lang in STATUS_LABELS else "en", STATUS_LABELS["en"]).get(status, status)


def uf_entity(etid: int, setup: CardSetup) -> str | None:
    if etid == 31:
        return "CRM_SMART_INVOICE"
    t = next((t for t in setup.smart_types if int(t["entityTypeId"]) == etid), None)
    return f"CRM_{t['id']}" if t else None


def field_name(etid: int, role: str, setup: CardSetup) -> str | None:
    suffix = ROLES[role][0]
    if etid in LEGACY:
        return f"UF_CRM_{suffix}"
    entity = uf_entity(etid, setup)
    return f"UF_{entity}_{suffix}" if entity else None


def camel(name: str) -> str:
    """``UF_CRM_B24SIGN_STATE`` -> ``ufCrm_B24SIGN_STATE``; ``UF_CRM_5_X`` -> ``ufCrm5_X`` (the item API's names)."""
    m = re.match(r"^UF_CRM_(\d+)_(.+)$", name)
    if m:
        return f"ufCrm{m.group(1)}_{m.group(2)}"
    return "ufCrm_" + name.removeprefix("UF_CRM_")


def entity_types(setup: CardSetup) -> list[int]:
    return [2, 1, 31] + [int(t["entityTypeId"]) for t in setup.smart_types]


def config_for(setup: CardSetup, etid: int) -> dict:
    """The entity type's field config; on by default (the issue: "off by default for none")."""
    return {"enabled": True, "mapped": False, "state": "", "message": "", **(setup.fields.get(str(etid)) or {})}


def ensure_fields(portal, client: B24Client | None = None, only: list[int] | None = None) -> dict[str, dict]:
    """Create the missing fields of every enabled, unmapped entity type (list first: never a duplicate)."""
    client = client or B24Client(portal)
    setup = CardSetup.for_portal(portal)
    fields = dict(setup.fields)
    for etid in only or entity_types(setup):
        cfg = config_for(setup, etid)
        if not cfg["enabled"] or cfg["mapped"]:
            fields[str(etid)] = cfg
            continue
        names = {role: field_name(etid, role, setup) for role in ROLES}
        if None in names.values():
            fields[str(etid)] = {**cfg, "state": "failed", "message": "unknown smart process"}
            continue
        try:
            existing = _existing(client, etid, setup)
            calls = {role: _add_call(etid, role, names[role], setup) for role in ROLES if names[role] not in existing}
            result = client.batch(calls) if calls else None
            errors = {role: err for role, err in (result.errors.items() if result else [])
                      if "already exists" not in str(err.get("error_description", ""))}
        except B24Error as exc:  # reported in Settings, never raised into the install page
            errors = {"all": {"error_description": str(exc)}}
        if errors:
            message = "; ".join(f"{r}: {e.get('error_description') or e.get('error')}" for r, e in errors.items())
            fields[str(etid)] = {**cfg, **names, "state": "failed", "message": message[:500]}
            log.warning("portal %s: fields for type %s not created: %s", portal.member_id[:8], etid, message)
        else:
            fields[str(etid)] = {**cfg, **names, "state": "ok", "message": ""}
    setup.fields = fields
    setup.save(update_fields=["fields"])
    return fields


def _existing(client: B24Client, etid: int, setup: CardSetup) -> set[str]:
    if etid in LEGACY:
        rows = client.call(f"{LEGACY[etid]}.userfield.list", {"filter": {}}) or []
        return {r.get("FIELD_NAME") for r in rows}
    rows = (client.call("userfieldconfig.list", {"moduleId": "crm", "filter": {"entityId": uf_entity(etid, setup)}})
            or {}).get("fields") or []
    return {r.get("fieldName") for r in rows}


def _add_call(etid: int, role: str, name: str, setup: CardSetup) -> tuple[str, dict]:
    _suffix, type_id, labels = ROLES[role]
    if etid in LEGACY:
        return (f"{LEGACY[etid]}.userfield.add", {"fields": {
            "FIELD_NAME": name.removeprefix("UF_CRM_"), "USER_TYPE_ID": type_id, "XML_ID": name, "LABEL": labels["en"],
            "EDIT_FORM_LABEL": labels, "LIST_COLUMN_LABEL": labels, "EDIT_IN_LIST": "N"}})
    return ("userfieldconfig.add", {"moduleId": "crm", "field": {
        "entityId": uf_entity(etid, setup), "fieldName": name, "userTypeId": type_id, "xmlId": name,
        "editFormLabel": labels, "editInList": "N"}})


def values_for(req, lang: str, signed_link: str) -> dict[str, str]:
    """Role -> value for a request's current state."""
    done = req.status == "completed"
    return {"status": status_label(req.status, lang),
            "date": req.status_changed_at.isoformat() if done else "",
            "file": signed_link if done else ""}


def item_fields(setup: CardSetup, etid: int, values: dict[str, str]) -> dict[str, str]:
    """The ``crm.item.update`` fields for an item of ``etid`` (empty when off, unmapped and not created, or broken)."""
    cfg = config_for(setup, etid)
    if not cfg["enabled"] or cfg["state"] not in ("ok",):
        return {}
    return {camel(cfg[role]): values[role] for role in ROLES if cfg.get(role)}


def mark_missing(portal, etid: int, missing: list[str]) -> None:
    """A field the answer did not carry was deleted in Bitrix24: stop writing it until it is recreated."""
    setup = CardSetup.for_portal(portal)
    cfg = config_for(setup, etid)
    cfg.update(state="missing", message="deleted in Bitrix24: " + ", ".join(missing))
    setup.fields = {**setup.fields, str(etid): cfg}
    setup.save(update_fields=["fields"])
