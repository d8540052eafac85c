"""Which CRM item a card page is about, and what the user may do there.

A placement POST names the item in ``PLACEMENT`` (CRM_DEAL_…, CRM_DYNAMIC_<typeId>_…) and
``PLACEMENT_OPTIONS`` (``ID`` / ``ENTITY_ID``), but those are the browser's words: the item is read with the
user's *own* ``AUTH_ID`` (``crm.item.get`` on the portal's stored endpoint) and the page carries a signed
scope (portal, user, item, may manage) next to the frame token.  A user sees only the items Bitrix24
lets them read; managing (cancel, send again) is for admins and the item's responsible user.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from django.core import signing

from b24app.lifecycle import Rejected
from b24app.rest import B24Error
from b24app.rest.client import call_with_token

SALT = "b24sign.card"
MAX_AGE = 3600
FIXED = {"DEAL": 2, "LEAD": 1, "SMART_INVOICE": 31}
DOC_IDS = {2: ("CCrmDocumentDeal", "DEAL_{id}"), 1: ("CCrmDocumentLead", "LEAD_{id}"),
           31: ("Bitrix\\Crm\\Integration\\BizProc\\Document\\SmartInvoice", "SMART_INVOICE_{id}")}


@dataclass
class CardScope:
    entity_type_id: int
    entity_id: int
    may_manage: bool
    title: str = ""

    def token(self, ui) -> str:
        return signing.dumps({"p": ui.portal.pk, "u": ui.user_id, "e": self.entity_type_id, "i": self.entity_id,
                              "m": self.may_manage, "n": self.title[:120]}, salt=SALT)

    def document_id(self) -> list[str]:
        cls, pattern = DOC_IDS.get(self.entity_type_id, ("Bitrix\\Crm\\Integration\\BizProc\\Document\\Dynamic",
                                                          f"DYNAMIC_{self.entity_type_id}_{{id}}"))
        return ["crm", cls, pattern.format(id=self.entity_id)]


def entity_type_from_placement(placement: str) -> int | None:
    m = re.match(r"^CRM_(DEAL|LEAD|SMART_INVOICE|DYNAMIC_(\d+))_[A-Z_]+$", placement or "")
    if not m:
        return None
    return int(m.group(2)) if m.group(2) else FIXED[m.group(1)]


def options(post) -> dict:
    try:
        value = json.loads(post.get("PLACEMENT_OPTIONS") or "{}")
    except ValueError:
        raise Rejected(400, "PLACEMENT_OPTIONS is not JSON") from None
    return value if isinstance(value, dict) else {}


def scope_from_frame(request) -> tuple[CardScope, dict]:
    """The item of a placement POST, proven readable by this user.  Also returns the item as the user sees it."""
    opts = options(request.POST)
    etid = entity_type_from_placement(request.POST.get("PLACEMENT", ""))
    if etid is None and str(opts.get("entityTypeId", "")).isdigit():  # openRestApp from our timeline card
        etid = int(opts["entityTypeId"])
    raw_id = opts.get("ID") or opts.get("ENTITY_ID") or opts.get("entityId")
    if etid is None or not str(raw_id or "").isdigit():
        raise Rejected(400, "this page opens from a CRM item")
    ui = request.ui
    try:
        item = (call_with_token(ui.portal.client_endpoint, request.POST.get("AUTH_ID", ""), "crm.item.get",
                                {"entityTypeId": etid, "id": int(raw_id)}) or {}).get("item") or {}
    except B24Error as exc:
        raise Rejected(403, "Bitrix24 does not let you open this CRM item") from exc
    if not item:
        raise Rejected(403, "Bitrix24 does not let you open this CRM item")
    manage = ui.is_admin or str(item.get("assignedById")) == str(ui.user_id)
    return CardScope(etid, int(raw_id), manage, str(item.get("title") or "")), item


def scope_from_token(request) -> CardScope:
    raw = request.POST.get("c") or request.GET.get("c") or ""
    try:
        data = signing.loads(raw, salt=SALT, max_age=MAX_AGE)
    except signing.BadSignature:
        raise Rejected(403, "invalid page token") from None
    ui = request.ui
    if data.get("p") != ui.portal.pk or data.get("u") != ui.user_id:
        raise Rejected(403, "invalid page token")
    return CardScope(int(data["e"]), int(data["i"]), bool(data["m"]), data.get("n", ""))
