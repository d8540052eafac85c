"""The CRM-card placements b24sign binds: the "E-signatures" tab, "Send for e-signature" in the timeline
menu, "Sign this document" in the document generator's menu — for deals, leads, smart invoices and every
smart process the portal has (CRM_DYNAMIC_<entityTypeId>_…).

Bitrix24 drops an application's placements when it is updated or uninstalled, so they are bound on
install and on ``ONAPPUPDATE`` (and from Settings, "bind again"); ``placement.get`` says what is there.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from b24app.rest import B24Client, B24Error

from .models import CardSetup

log = logging.getLogger("b24sign.crmcard")

FIXED_ENTITIES = {"DEAL": 2, "LEAD": 1, "SMART_INVOICE": 31}


@dataclass(frozen=True)
class Kind:
    suffix: str     # DETAIL_TAB | ACTIVITY_TIMELINE_MENU | DOCUMENTGENERATOR_BUTTON
    path: str       # our handler, under APP_BASE_URL
    title: dict     # LANG_ALL titles


KINDS = (
    Kind("DETAIL_TAB", "/card/tab/", {"en": "E-signatures", "ru": "Электронные подписи", "de": "E-Signaturen"}),
    Kind("ACTIVITY_TIMELINE_MENU", "/card/send/",
         {"en": "Send for e-signature", "ru": "Отправить на подпись", "de": "Zur E-Signatur senden"}),
    Kind("DOCUMENTGENERATOR_BUTTON", "/card/send/?document=generated",
         {"en": "Sign this document", "ru": "Подписать этот документ", "de": "Dieses Dokument signieren"}),
)


def entity_codes(smart_types: list[dict]) -> dict[str, int]:
    """Placement entity code -> entityTypeId."""
    codes = dict(FIXED_ENTITIES)
    for t in smart_types:
        codes[f"DYNAMIC_{int(t['entityTypeId'])}"] = int(t["entityTypeId"])
    return codes


def wanted(smart_types: list[dict]) -> dict[str, tuple[str, dict]]:
    """Every placement we want: code -> (handler URL, LANG_ALL)."""
    out = {}
    for entity in entity_codes(smart_types):
        for kind in KINDS:
            out[f"CRM_{entity}_{kind.suffix}"] = (f"{settings.APP_BASE_URL}{kind.path}", kind.title)
    return out


def smart_types(client: B24Client) -> list[dict]:
    """The portal's smart processes (crm.type.list; one page of 50 is plenty for placements)."""
    result = client.call("crm.type.list", {"select": ["id", "entityTypeId", "title"]}) or {}
    types = result.get("types") if isinstance(result, dict) else []
    return [{"id": int(t["id"]), "entityTypeId": int(t["entityTypeId"]), "title": str(t.get("title") or "")}
            for t in types or [] if str(t.get("entityTypeId", "")).isdigit()]


def bind_all(portal, client: B24Client | None = None) -> dict[str, dict]:
    """Bind what is missing (``placement.get`` first, so "bind again" never duplicates); one batch."""
    client = client or B24Client(portal)
    setup = CardSetup.for_portal(portal)
    types = smart_types(client)
    existing = {(b.get("placement"), b.get("handler")) for b in (client.call("placement.get") or [])}
    want = wanted(types)
    calls = {}
    for code, (handler, titles) in want.items():
        if (code, handler) in existing:
            continue
        calls[code] = ("placement.bind", {"PLACEMENT": code, "HANDLER": handler, "TITLE": titles["en"],
                                          "LANG_ALL": {lang: {"TITLE": title} for lang, title in titles.items()}})
    result = client.batch(calls) if calls else None
    now = timezone.now().isoformat()
    state = {}
    for code in want:
        err = result.errors.get(code) if result else None
        if err and err.get("error") != "ERROR_PLACEMENT_HANDLER_ALREADY_BINDED":
            state[code] = {"state": "failed", "message": f"{err.get('error')}: {err.get('error_description', '')}",
                           "at": now}
            log.warning("portal %s: placement %s not bound: %s", portal.member_id[:8], code, err)
        else:
            state[code] = {"state": "bound", "message": "", "at": now}
    setup.placements, setup.smart_types, setup.synced_at = state, types, timezone.now()
    setup.save(update_fields=["placements", "smart_types", "synced_at"])
    return state


def unbind_all(portal, client: B24Client | None = None) -> int:
    """Remove every placement we bound (the admin's "remove from the CRM card"); returns how many went."""
    client = client or B24Client(portal)
    setup = CardSetup.for_portal(portal)
    ours = sorted({(b["placement"], b["handler"]) for b in (client.call("placement.get") or [])
                   if str(b.get("handler", "")).startswith(settings.APP_BASE_URL + "/card/")})
    if ours:
        result = client.batch({f"u{i}": ("placement.unbind", {"PLACEMENT": code, "HANDLER": handler})
                               for i, (code, handler) in enumerate(ours)})
        result.raise_first()
    setup.placements = {}
    setup.save(update_fields=["placements"])
    return len(ours)


def current_state(portal, client: B24Client | None = None) -> list[dict]:
    """For Settings: each wanted placement with what Bitrix24 says now (``placement.get``)."""
    setup = CardSetup.for_portal(portal)
    try:
        bound = {(b.get("placement"), b.get("handler")) for b in ((client or B24Client(portal)).call("placement.get")
                                                                 or [])}
        live = True
    except B24Error as exc:
        log.info("portal %s: placement.get failed: %s", portal.member_id[:8], exc)
        bound, live = set(), False
    rows = []
    for code, (handler, _titles) in wanted(setup.smart_types).items():
        recorded = setup.placements.get(code, {})
        state = ("bound" if (code, handler) in bound else "missing") if live else recorded.get("state", "unknown")
        rows.append({"code": code, "state": state, "message": recorded.get("message", "")})
    return rows
