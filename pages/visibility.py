"""Who sees which signature request.

Administrators see every request of their portal.  Everybody else sees the requests of the CRM items
their own Bitrix24 rights let them read (``crm.item.get`` with *their* token, remembered for
``READ_TTL`` seconds), and of HR (KEDO) documents only their own: those they sign or started.  The
signed PDF downloads for administrators, the CRM item's responsible user and the request's creator
(the user the robot that created it ran for).
"""
from __future__ import annotations

import logging

from django.http import Http404

from b24app import coordination
from b24app.rest import B24Error
from b24app.rest.encoding import php_query
from bizproc_ext.models import RobotCall

log = logging.getLogger("b24sign.ui")

READ_TTL = 120
KEDO = "b24kedo"
CREATING_ROBOTS = ("b24sign_send", "b24sign_kedo_send")


def _key(ui, entity) -> str:
    return f"crm-read:{ui.portal.pk}:{ui.user_id}:{entity[0]}:{entity[1]}"


def crm_access(ui, entities) -> dict[tuple[int, int], dict | None]:
    """``{(entityTypeId, id): {"assigned": user id} or None}``: None when the user cannot read the item."""
    out: dict = {}
    missing = []
    for entity in {e for e in entities if e and e[0] and e[1]}:
        known = coordination.recall(_key(ui, entity))
        if known is None:
            missing.append(entity)
        else:
            out[entity] = known if known.get("r") else None
    for start in range(0, len(missing), 50):
        chunk = missing[start:start + 50]
        cmd = {f"e{t}_{i}": f"crm.item.get?{php_query({'entityTypeId': t, 'id': i})}" for t, i in chunk}
        try:
            body = ui.call_as_user("batch", {"halt": 0, "cmd": cmd}) or {}
        except B24Error as exc:  # not remembered: the next page asks again
            log.info("portal %s: CRM read check failed (%s)", ui.portal.member_id[:8], exc.error)
            out.update({e: None for e in chunk})
            continue
        results = body.get("result") if isinstance(body.get("result"), dict) else {}
        for t, i in chunk:
            item = (results.get(f"e{t}_{i}") or {}).get("item") if isinstance(results.get(f"e{t}_{i}"), dict) else None
            value = {"r": 1, "assigned": _int(item.get("assignedById"))} if isinstance(item, dict) else {"r": 0}
            coordination.remember(_key(ui, (t, i)), value, READ_TTL)
            out[(t, i)] = value if value["r"] else None
    return out


def creators(requests) -> dict[int, int | None]:
    """request pk -> the user the creating robot ran for."""
    out: dict[int, int | None] = {}
    rows = RobotCall.objects.filter(signature_request__in=[r.pk for r in requests], code__in=CREATING_ROBOTS) \
        .order_by("created_at", "id").values_list("signature_request_id", "auth_user_id")
    for pk, user_id in rows:
        out.setdefault(pk, user_id)
    return out


def _entity(req):
    return (req.entity_type_id, req.entity_id) if req.entity_type_id and req.entity_id else None


def _members(req) -> set[int]:
    signers = getattr(req, "signer_list", None)
    if signers is None:
        signers = list(req.signers.all())
    return {s.user_id for s in signers if s.user_id}


class Visibility:
    """One page's answers (one batch of CRM checks for all its rows)."""

    def __init__(self, ui, requests, known: dict | None = None):
        """``known``: CRM access already proven with the user's token (the CRM card's own item)."""
        self.ui = ui
        self.admin = ui.is_admin
        requests = list(requests)
        self.creator = {} if self.admin else creators(requests)
        wanted = [] if self.admin or known is not None else [_entity(r) for r in requests if r.provider != KEDO]
        self.access = dict(known or {})
        if wanted:
            self.access.update(crm_access(ui, wanted))

    def can_see(self, req) -> bool:
        if self.admin:
            return True
        me = self.ui.user_id
        if self.creator.get(req.pk) == me:
            return True
        if req.provider == KEDO:
            return me in _members(req)  # never other people's HR documents
        entity = _entity(req)
        return bool(entity and self.access.get(entity))

    def can_download(self, req) -> bool:
        if self.admin or self.creator.get(req.pk) == self.ui.user_id:
            return True
        entity = _entity(req)
        if req.provider == KEDO or not entity:
            return False
        access = self.access.get(entity)
        return bool(access and access.get("assigned") == self.ui.user_id)


def for_card(ui, scope, requests) -> Visibility:
    """The CRM card's tab: its item was read with the user's own token; ``may_manage`` = admin or responsible."""
    entity = (scope.entity_type_id, scope.entity_id)
    return Visibility(ui, requests, known={entity: {"r": 1, "assigned": ui.user_id if scope.may_manage else None}})


def visible(ui, rows) -> list:
    seen = Visibility(ui, rows)
    return [r for r in rows if seen.can_see(r)]


def require_visible(ui, req, download: bool = False) -> Visibility:
    seen = Visibility(ui, [req])
    if not seen.can_see(req) or (download and not seen.can_download(req)):
        raise Http404("no such request")  # the same answer as another portal's id
    return seen


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
