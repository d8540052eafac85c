"""The timeline card of one signature request (``crm.activity.configurable`` LayoutDto).

Title, a status badge (header tag), the provider, each signer with their state, and at most two footer
buttons (the documented limit): Open (the "E-signatures" tab in the app slider) and Remind; Cancel is a
menu item.  Buttons open our slider (``openRestApp``) where the action is confirmed and checked against
the user's own rights; nothing secret goes into ``actionParams`` (it passes through the browser).
"""
from __future__ import annotations

from .fields import status_label

BADGE = {"draft": "secondary", "sent": "primary", "partially_signed": "warning", "completed": "success",
         "declined": "failure", "expired": "failure", "cancelled": "secondary", "error": "failure"}
# Keyed by SignerRow.display_status ("viewed": still to sign, has opened the document).
SIGNER = {"en": {"pending": "waiting", "viewed": "viewed", "signed": "signed", "declined": "declined",
                 "cancelled": "cancelled"},
          "ru": {"pending": "ожидает", "viewed": "просмотрел", "signed": "подписал", "declined": "отклонил",
                 "cancelled": "отменено"}}
WORDS = {"en": {"provider": "Provider", "open": "Open", "remind": "Remind", "cancel": "Cancel request",
                "title": "E-signature"},
         "ru": {"provider": "Сервис", "open": "Открыть", "remind": "Напомнить", "cancel": "Отменить запрос",
                "title": "Электронная подпись"}}


def _w(lang: str) -> dict:
    return WORDS.get(lang, WORDS["en"])


def signer_line(signers: list, lang: str) -> str:
    names = SIGNER.get(lang, SIGNER["en"])
    return "; ".join(f"{s.name or s.email}: {names.get(s.display_status, s.display_status)}" for s in signers)


def card_layout(req, signers: list, provider_label: str, lang: str) -> dict:
    w = _w(lang)
    params = {"view": "request", "request": str(req.public_id)}
    blocks = {
        "provider": {"type": "withTitle", "properties": {"title": w["provider"], "inline": True, "block": {
            "type": "text", "properties": {"value": provider_label}}}},
    }
    for i, s in enumerate(signers[:15]):
        blocks[f"signer{i}"] = {"type": "withTitle", "properties": {
            "title": s.name or s.email, "inline": True,
            "block": {"type": "text", "properties": {
                "value": SIGNER.get(lang, SIGNER["en"]).get(s.display_status, s.display_status)}}}}
    if req.error and req.status in ("declined", "error"):
        blocks["reason"] = {"type": "text", "properties": {"value": req.error[:300]}}
    buttons = {"open": {"title": w["open"], "type": "primary",
                        "action": {"type": "openRestApp", "actionParams": params}}}
    footer = {"buttons": buttons, "menu": {"showPostponeItem": False, "items": {}}}
    if not req.is_terminal:
        buttons["remind"] = {"title": w["remind"], "type": "secondary",
                             "action": {"type": "openRestApp", "actionParams": {**params, "view": "remind"}}}
        footer["menu"]["items"]["cancel"] = {"title": w["cancel"], "action": {
            "type": "openRestApp", "actionParams": {**params, "view": "cancel"}}}
    return {
        "icon": {"code": "document"},
        "header": {"title": f"{w['title']}: {req.title}"[:250],
                   "tags": {"status": {"type": BADGE.get(req.status, "secondary"),
                                       "title": status_label(req.status, lang)}}},
        "body": {"blocks": blocks},
        "footer": footer,
    }


def card_fields(req, responsible_id: int | None) -> dict:
    fields = {"completed": "Y" if req.is_terminal else "N", "isIncomingChannel": "N",
              "originatorId": "b24sign", "originId": str(req.public_id)}
    if responsible_id:
        fields["responsibleId"] = responsible_id
    return fields
