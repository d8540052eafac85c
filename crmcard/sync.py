"""Bring one request's CRM card up to date: timeline card, signer log messages, status fields, the
automation trigger and the responsible user's notification — in one ``batch`` request.

What to send is the difference between the request as it is now and what ``CardState`` says was last
pushed, computed under a per-request lock.  So however many webhooks a change produces, and however
often a task is retried, each change goes out once: a second run finds nothing to send.
The terminal change waits for ``request_finished`` (the signed copy is then on the timeline and the
"Signed document" link exists), so the outcome costs one batch too.
"""
from __future__ import annotations

import contextlib
import logging

from django.utils import timezone

from b24app import coordination
from b24app.rest import B24Client, B24Error
from b24app.rest.coalesce import batch_each
from bizproc_ext.coalesce import alongside
from signing import states
from signing.models import SignatureRequest
from signing.registry import all_providers
from signing.services import signed_file_key, signed_file_link

from . import fields as uf
from .layout import card_fields, card_layout
from .models import CardSetup, CardState
from .notify import outcome_message

log = logging.getLogger("b24sign.crmcard")

TRIGGERS = {states.COMPLETED: "b24sign_signed", states.DECLINED: "b24sign_declined",
            states.EXPIRED: "b24sign_expired", states.ERROR: "b24sign_failed"}
SIGNER_EVENTS = {"signed", "declined"}
# What a sync records on CardState (``due``/``synced`` are counted by conditional UPDATEs of their own).
PUSHED = ["activity_id", "card_updates", "pushed_status", "pushed_signers", "pushed_views", "pushed_fields",
          "trigger_fired", "notified", "last_error", "updated_at"]
LOG_TITLES = {"en": {"viewed": "Viewed", "signed": "Signed", "declined": "Declined"},
              "ru": {"viewed": "Просмотрел", "signed": "Подписал", "declined": "Отклонил"}}


def provider_label(code: str) -> str:
    return all_providers()[code].label if code in all_providers() else code


def lang_of(portal) -> str:
    return "ru" if (portal.language or "")[:2] in ("ru", "by", "kz", "ua") else "en"


def notify_user(req) -> int | None:
    """Who hears about the outcome: the user the robot names ("Notify this user"), else the user who sent it
    from the card, else the item's responsible (None: read in the batch itself)."""
    if str(req.options.get("notify_user_id") or "").isdigit():
        return int(req.options["notify_user_id"])
    call = req.robot_calls.filter(event_token__startswith="card:").exclude(auth_user_id=None).first()
    return call.auth_user_id if call else None


def field_values(req: SignatureRequest, setup: CardSetup, lang: str) -> tuple[dict[str, str], dict[str, str]]:
    """The status fields to write, and what each one means (what ``CardState.pushed_fields`` keeps).

    They differ only for "Signed document": a fresh signed-file link is new text every second, so it is
    compared by the file it opens. Comparing the links made every later sync write the field again.
    """
    etid = req.entity_type_id
    link, key = (signed_file_link(req), signed_file_key(req)) if req.signed_file else ("", "")
    return (uf.item_fields(setup, etid, uf.values_for(req, lang, link)),
            uf.item_fields(setup, etid, uf.values_for(req, lang, key)))


def plan(req: SignatureRequest, state: CardState, setup: CardSetup) -> dict[str, tuple[str, dict]]:
    """The commands that bring the card from ``state`` to ``req`` (empty: nothing changed)."""
    lang = lang_of(req.portal)
    etid, eid = req.entity_type_id, req.entity_id
    signers = list(req.signers.all())
    now_signers = {s.email.lower(): s.display_status for s in signers}
    terminal_ready = not req.is_terminal or req.finalized_at is not None
    if not terminal_ready:
        return {}  # the outcome goes out whole once it is in the CRM (request_finished)
    calls: dict[str, tuple[str, dict]] = {}
    item_fields, marks = field_values(req, setup, lang)
    changed_fields = {k: v for k, v in item_fields.items() if state.pushed_fields.get(k) != marks[k]}
    if changed_fields:
        calls["fields"] = ("crm.item.update", {"entityTypeId": etid, "id": eid, "fields": changed_fields})
    notified_user = notify_user(req) if req.is_terminal and req.status not in state.notified else None
    needs_owner = state.activity_id is None or (
        req.is_terminal and req.status not in state.notified and notified_user is None)
    owner_ref = None
    if needs_owner:
        if "fields" not in calls:
            calls["item"] = ("crm.item.get", {"entityTypeId": etid, "id": eid})
        owner_ref = f"$result[{'fields' if 'fields' in calls else 'item'}][item][assignedById]"
    card_changed = state.pushed_status != req.status or state.pushed_signers != now_signers
    if state.activity_id is None or card_changed:
        layout = card_layout(req, signers, provider_label(req.provider), lang)
        fields = card_fields(req, None)
        if state.activity_id is None:
            fields["responsibleId"] = owner_ref
            calls["card"] = ("crm.activity.configurable.add", {"ownerTypeId": etid, "ownerId": eid, "fields": fields,
                                                               "layout": layout})
        else:
            calls["card"] = ("crm.activity.configurable.update", {"id": state.activity_id, "fields": fields,
                                                                  "layout": layout})
    titles = LOG_TITLES.get(lang, LOG_TITLES["en"])

    def log_message(event: str, s) -> tuple[str, dict]:
        return ("crm.timeline.logmessage.add", {"fields": {
            "entityTypeId": etid, "entityId": eid, "iconCode": "info",
            "title": f"{titles[event]}: {s.name or s.email}", "text": f"{req.title} ({provider_label(req.provider)})"}})

    for i, s in enumerate(signers):
        key = s.email.lower()
        # A view is its own event (once per signer, kept in pushed_views): it is told even when the same
        # change also brings the signature, and before it.
        if s.viewed_at and key not in state.pushed_views:
            calls[f"view{i}"] = log_message("viewed", s)
        if s.status in SIGNER_EVENTS and state.pushed_signers.get(key) != s.status:
            calls[f"log{i}"] = log_message(s.status, s)
    if req.is_terminal:
        code = TRIGGERS.get(req.status)
        if code and not state.trigger_fired and setup.triggers.get(code) == "registered":
            calls["trigger"] = ("crm.automation.trigger.execute",
                                {"CODE": code, "OWNER_TYPE_ID": etid, "OWNER_ID": eid})
        if req.status in TRIGGERS and req.status not in state.notified:
            user = notified_user or owner_ref
            calls["notify"] = ("im.notify.system.add", {
                "USER_ID": user, "MESSAGE": outcome_message(req, lang),
                # Bitrix24 keeps one notification per TAG: even a resend after a lost answer shows once.
                "TAG": f"b24sign|{req.public_id}|{req.status}"})
    return calls


def sync_request(request_id: int) -> int:
    """Push what changed; returns the number of REST requests spent (0 or 1)."""
    outcome = sync_requests([request_id])[request_id]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def sync_requests(request_ids: list[int]) -> dict[int, int | BaseException]:
    """Push what changed for each request, their batches sent together (b24app.rest.coalesce.batch_each): a
    portal's cards changing together share requests, with each other and with the answers and proofs of the
    portal's calls running in this process (``bizproc_ext.coalesce.alongside``: one participant, from this
    thread).  Each card is still its own job: its errors, its diff and its CardState are its own.  Per
    request: the REST requests its batch rode in (0: nothing to send), or what stopped it (a LockTimeout, a
    B24Error of its request): it stays due."""
    outcomes: dict[int, int | BaseException] = {}
    with contextlib.ExitStack() as locks:
        todo = []
        for request_id in sorted(set(request_ids)):  # locks taken in one order: two syncs never deadlock
            try:
                locks.enter_context(coordination.lock(f"crmcard:{request_id}", ttl=120, wait=60))
                todo.append(_planned(request_id))
            except Exception as exc:  # noqa: BLE001  (one card's trouble never stops the portal's others)
                if not isinstance(exc, (coordination.LockTimeout, B24Error)):
                    log.exception("request %s: CRM card not planned", request_id)
                outcomes[request_id] = exc
        todo = [t for t in todo if t is not None and t[3]]
        by_portal: dict[int, list] = {}
        for item in todo:
            by_portal.setdefault(item[0].portal_id, []).append(item)
        for items in by_portal.values():
            portal = items[0][0].portal
            with alongside(portal):  # the cards ride in the next request of the portal's running calls
                results = batch_each(B24Client(portal), [calls for *_, calls in items])
            for (req, state, setup, calls), result in zip(items, results):
                if isinstance(result, BaseException):
                    outcomes[req.pk] = result
                    continue
                try:
                    _apply(req, state, setup, calls, result)
                    outcomes[req.pk] = result.requests
                except Exception as exc:  # noqa: BLE001  (its neighbours' results are still recorded)
                    log.exception("request %s: CRM card result not recorded", req.pk)
                    outcomes[req.pk] = exc
    return {rid: outcomes.get(rid, 0) for rid in request_ids}


def ride(request_id: int, co):
    """Put the card's commands in ``co``'s next request without waiting for it (``Coalescer.ride``: the request
    that answers the call whose send announced the change).  Returns ``(due, land)``: the changes counted when
    it was planned, and what waits for that request, records the result (with ``synced`` when it went out)
    and releases the card's lock (the outcome, as :func:`sync_requests` gives it per request).  None: it
    cannot ride now (its lock is held by a sync that is running: never waited for, the answer goes first; or
    the request has no card)."""
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(coordination.lock(f"crmcard:{request_id}", ttl=120, wait=0))
    except coordination.LockTimeout:
        return None
    with stack:
        planned = _planned(request_id, co.client.portal)
        if planned is None:
            return None
        held = stack.pop_all()  # the lock stays taken until the card has landed
    req, state, setup, calls = planned
    if not calls:
        held.close()
        return state.due, lambda: 0
    [job] = co.ride([calls])

    def land() -> int | BaseException:
        with held:
            [result] = co.collect([job])
            if isinstance(result, BaseException):
                return result
            try:
                _apply(req, state, setup, calls, result, synced=state.due)  # its changes counted synced too
            except Exception as exc:  # noqa: BLE001  (it stays due: the portal's sync takes it)
                log.exception("request %s: CRM card result not recorded", req.pk)
                return exc
            return result.requests

    return state.due, land


def _planned(request_id: int, portal=None):
    """(request, state, setup, calls) under the request's lock; None when it has no card.  ``portal``: the
    request's portal as the caller has it (a riding card: the answering call's), not loaded again."""
    # The card's state comes in the same query; plan() and _apply() both go through the signers: one query.
    if portal is None:
        req = SignatureRequest.objects.select_related("portal", "card").prefetch_related("signers") \
            .filter(pk=request_id).first()
    else:
        req = SignatureRequest.objects.select_related("card").prefetch_related("signers") \
            .filter(pk=request_id, portal_id=portal.pk).first()
        if req is not None:
            req.portal = portal
    if req is None or not req.entity_type_id or not req.entity_id or not req.portal.is_installed:
        return None
    try:
        state = req.card
    except CardState.DoesNotExist:  # a change announced before CardState rows existed
        state, _ = CardState.objects.get_or_create(request=req)
    setup = CardSetup.for_portal(req.portal)
    return req, state, setup, plan(req, state, setup)


def _apply(req, state: CardState, setup: CardSetup, calls: dict, result, synced: int | None = None) -> None:
    """Record what went out; ``synced``: the changes this sync covered, counted in the same UPDATE (under the
    card's lock, so no other sync writes it meanwhile; ``due`` is never written here)."""
    errors = []
    if "card" in calls:
        if "card" in result.errors:
            errors.append(f"card: {result.errors['card'].get('error_description') or result.errors['card']}")
        else:
            if state.activity_id is None:
                added = (result.results.get("card") or {}).get("activity") or {}
                state.activity_id = int(added.get("id") or 0) or None
            state.card_updates += 1
            state.pushed_status = req.status
    signers, views = dict(state.pushed_signers), list(state.pushed_views)
    card_failed = "card" in calls and "card" in result.errors
    for i, s in enumerate(req.signers.all()):
        key = f"log{i}"
        if key in result.errors:
            errors.append(f"{key}: {result.errors[key].get('error_description')}")
        elif not card_failed:  # shown on the card, and its log message (if any) went out
            signers[s.email.lower()] = s.display_status
        if f"view{i}" in result.errors:
            errors.append(f"view{i}: {result.errors[f'view{i}'].get('error_description')}")
        elif f"view{i}" in calls and s.email.lower() not in views:
            views.append(s.email.lower())
    state.pushed_signers, state.pushed_views = signers, views
    if "fields" in calls:
        if "fields" in result.errors:
            errors.append(f"fields: {result.errors['fields'].get('error_description')}")
        else:
            item = (result.results.get("fields") or {}).get("item") or {}
            sent = calls["fields"][1]["fields"]
            missing = [k for k in sent if k not in item]
            marks = field_values(req, setup, lang_of(req.portal))[1]
            state.pushed_fields = {**state.pushed_fields, **{k: marks[k] for k in sent if k in item}}
            if missing:
                uf.mark_missing(req.portal, req.entity_type_id, missing)
                _recreate_later(req.portal.pk, req.entity_type_id)
    if "trigger" in calls:
        if "trigger" in result.errors:
            errors.append(f"trigger: {result.errors['trigger'].get('error_description')}")
        else:
            state.trigger_fired = calls["trigger"][1]["CODE"]
    if "notify" in calls:
        if "notify" in result.errors:
            errors.append(f"notify: {result.errors['notify'].get('error_description')}")
        else:
            state.notified = [*state.notified, req.status]
    state.last_error = "; ".join(str(e) for e in errors)[:2000]
    state.updated_at = timezone.now()
    if synced is not None and synced > state.synced:
        state.synced = synced
        state.save(update_fields=[*PUSHED, "synced"])
    else:
        state.save(update_fields=PUSHED)  # never due: a change counted meanwhile stays counted
    if errors:
        log.warning("request %s: CRM card partly updated: %s", req.pk, state.last_error)
        req.log("crm_card", f"CRM card: {state.last_error}", source="worker")


def _recreate_later(portal_id: int, etid: int) -> None:
    from .tasks import recreate_fields  # noqa: PLC0415  (tasks import this module)

    recreate_fields.delay(portal_id, etid)

