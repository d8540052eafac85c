"""Bitrix24 document ids -> CRM entities (spec §3.2: the numeric id is after the last underscore)."""
from __future__ import annotations

ENTITY_TYPES = {"LEAD": 1, "DEAL": 2, "CONTACT": 3, "COMPANY": 4, "QUOTE": 7, "SMART_INVOICE": 31}
TIMELINE_TYPES = {1: "lead", 2: "deal", 3: "contact", 4: "company", 7: "quote", 31: "smart_invoice"}


def crm_entity(document_id) -> tuple[int, int] | None:
    """``["crm", "CCrmDocumentDeal", "DEAL_42"]`` -> ``(2, 42)``; ``DYNAMIC_177_5`` -> ``(177, 5)``."""
    if not document_id or len(document_id) < 3 or document_id[0] != "crm":
        return None
    raw = str(document_id[2])
    prefix, _, number = raw.rpartition("_")
    if not number.isdigit() or not prefix:
        return None
    if prefix.startswith("DYNAMIC_"):
        type_id = prefix.split("_", 1)[1]
        return (int(type_id), int(number)) if type_id.isdigit() else None
    type_id = ENTITY_TYPES.get(prefix)
    return (type_id, int(number)) if type_id else None


def timeline_entity_type(entity_type_id: int) -> str:
    """ENTITY_TYPE for crm.timeline.comment.add (smart processes: ``dynamic_<id>``)."""
    return TIMELINE_TYPES.get(entity_type_id) or f"dynamic_{entity_type_id}"
