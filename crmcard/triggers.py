"""The automation triggers b24sign registers (``crm.automation.trigger.add``), so a stage can be linked to
"Document signed" & co. even when the robot that waited for the request was stopped by a manual move.
Bitrix24 drops an application's triggers on update and uninstall; they are registered on install and update."""
from __future__ import annotations

from b24app.rest import B24Client

from .models import CardSetup

NAMES = {
    "b24sign_signed": {"en": "Document signed (b24sign)", "ru": "Документ подписан (b24sign)"},
    "b24sign_declined": {"en": "Document declined (b24sign)", "ru": "Документ отклонён (b24sign)"},
    "b24sign_expired": {"en": "Document expired (b24sign)", "ru": "Срок подписания истёк (b24sign)"},
    "b24sign_failed": {"en": "Signing failed (b24sign)", "ru": "Ошибка подписания (b24sign)"},
}


def register_all(portal, client: B24Client | None = None) -> dict[str, str]:
    client = client or B24Client(portal)
    lang = "ru" if (portal.language or "")[:2] in ("ru", "by", "kz", "ua") else "en"
    result = client.batch({code: ("crm.automation.trigger.add", {"CODE": code, "NAME": names[lang]})
                           for code, names in NAMES.items()})
    state = {code: "registered" if code not in result.errors else
             f"failed: {result.errors[code].get('error_description') or result.errors[code].get('error')}"
             for code in NAMES}
    setup = CardSetup.for_portal(portal)
    setup.triggers = state
    setup.save(update_fields=["triggers"])
    return state


def delete_all(portal, client: B24Client | None = None) -> None:
    client = client or B24Client(portal)
    existing = {t.get("CODE") for t in (client.call("crm.automation.trigger.list") or [])}
    ours = [code for code in NAMES if code in existing]
    if ours:
        client.batch({code: ("crm.automation.trigger.delete", {"CODE": code}) for code in ours}).raise_first()
    setup = CardSetup.for_portal(portal)
    setup.triggers = {}
    setup.save(update_fields=["triggers"])
