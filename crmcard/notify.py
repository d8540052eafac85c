"""The words of b24sign's notifications (``im.notify.system.add``) and the admins' connection notices.

Outcome notifications go out inside the card's batch (sync.py); a connection notice is sent once per
account and kind of break until the account works again (``PortalNotice``).
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import IntegrityError, transaction

from b24app.rest import B24Client, B24Error

from .models import PortalNotice

log = logging.getLogger("b24sign.crmcard")

OUTCOMES = {
    "en": {"completed": "was signed", "declined": "was declined", "expired": "expired", "error": "could not be signed"},
    "ru": {"completed": "подписан", "declined": "отклонён", "expired": "истёк срок подписания",
           "error": "не удалось подписать"},
}
OPEN = {"en": "Open the E-signatures tab", "ru": "Открыть вкладку «Электронные подписи»"}


def item_path(etid: int, eid: int) -> str:
    if etid == 2:
        return f"/crm/deal/details/{eid}/"
    if etid == 1:
        return f"/crm/lead/details/{eid}/"
    return f"/crm/type/{etid}/details/{eid}/"


def outcome_message(req, lang: str) -> str:
    words = OUTCOMES.get(lang, OUTCOMES["en"])
    what = words.get(req.status, req.status)
    link = f"https://{req.portal.domain}{item_path(req.entity_type_id, req.entity_id)}"
    reason = f" ({req.error[:200]})" if req.error and req.status in ("declined", "error") else ""
    # The title and reason come from the CRM and the provider: no BB-code of theirs in our message.
    title, reason = _plain(req.title), _plain(reason)
    return f"b24sign: «{title}» {what}{reason}. [URL={link}]{OPEN.get(lang, OPEN['en'])}[/URL]"


def _plain(text: str) -> str:
    return str(text).replace("[", "(").replace("]", ")")


def notify_admins(portal, key: str, message: str) -> bool:
    """Tell the portal's admins (the installing admin, whose token we hold) once per ``key``."""
    try:
        with transaction.atomic():
            PortalNotice.objects.create(portal=portal, key=key[:120])
    except IntegrityError:
        return False  # already told: a retry or a repeated 401 never notifies twice
    user_id = portal.token_user_id
    if not user_id:
        return False
    link = f"{settings.APP_BASE_URL}/app/"
    try:
        B24Client(portal).call("im.notify.system.add", {
            "USER_ID": user_id, "MESSAGE": f"b24sign: {message} [URL={link}]Settings[/URL]", "TAG": f"b24sign|{key}"})
    except B24Error as exc:
        log.warning("portal %s: admin notice %s not sent: %s", portal.member_id[:8], key, exc)
        PortalNotice.objects.filter(portal=portal, key=key[:120]).delete()  # try again next time
        return False
    return True


def connection_recovered(portal, key_prefix: str) -> None:
    PortalNotice.objects.filter(portal=portal, key__startswith=key_prefix).delete()
