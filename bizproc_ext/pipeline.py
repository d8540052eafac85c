"""The worker side of a robot call: claim it, do what the robot is for, answer the workflow once.

Every path ends in exactly one answer: success values, or ``status=error`` with a readable message
(input errors at once, transient failures after their retries run out), so no workflow waits forever.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, prefetch_related_objects
from django.utils import timezone

from b24app import logcontext
from b24app.rest import B24Client, B24Error
from b24app.rest.oauth import request_refresh
from signing import services, states
from signing.base import ProviderError, SendSpec, Signer
from signing.models import PortalSettings, SignatureRequest
from signing.registry import all_providers

from . import duplicates, lease, proof, riders, roles, signer_fields, sources
from .answers import AnswerPending, answer, answer_waiting_calls, error_values, log_line
from .inputs import InputError, Resolver
from .models import RobotCall
from .robots import catalogue
from .secrets import erase, unseal

log = logging.getLogger("b24sign.pipeline")

MAX_ATTEMPTS = 8


class StillSending(Exception):
    """The open request this call would return is still being sent by another call: answer once it is out."""
    retry_after = 5.0


@dataclass
class Outcome:
    retry_in: float | None = None  # seconds; None when the call is finished (or waiting for signers)


def claim(call_id: int) -> RobotCall | None:
    """Take a queued call (conditional UPDATE: a count of 0 means another worker has it, or it is done)."""
    won = RobotCall.objects.filter(pk=call_id, state=RobotCall.QUEUED).update(
        state=RobotCall.RUNNING, claimed_at=timezone.now(), lease_until=lease.expiry(), retry_at=None,
        attempts=F("attempts") + 1)
    if not won:
        return None
    return RobotCall.objects.select_related("portal", "signature_request").get(pk=call_id)


def run(call_id: int) -> Outcome:
    with logcontext.bound(call=call_id):
        call = claim(call_id)
        if call is None:
            return Outcome()
        req = call.signature_request
        logcontext.bind(portal=call.portal.member_id, request=str(req.public_id)[:8] if req else "")
        # renewed while we work, downloads and uploads included; the CRM card's change rides in the answer
        with lease.heartbeat(call), riders.collecting():
            return _run(call)


def _run(call: RobotCall) -> Outcome:
    if not call.portal.is_installed:
        RobotCall.objects.filter(pk=call.pk).update(state=RobotCall.DONE, last_error="portal uninstalled")
        return Outcome()
    try:
        if call.answer_state == "sending":
            # The previous run died inside bizproc.event.send: we cannot know whether Bitrix24 got it.
            # Send again; Bitrix24 refuses a second send on a closed activity (recorded as "failed").
            RobotCall.objects.filter(pk=call.pk, answer_state="sending").update(answer_state="pending")
            call.answer_state = "pending"
        if call.answer_state != "pending":  # answered before a crash: nothing left to do
            _release(call, RobotCall.DONE)
            return Outcome()
        if call.answer_attempts and call.answer:  # the work was done; only its answer is still owed
            answer(call, call.answer, call.answer_log)
            return Outcome()
        if call.input_errors or call.code not in READS_FIRST:
            proof.prove(call, reader(call))  # nothing to read first: the proof goes alone
        if call.input_errors:
            raise InputError("; ".join(call.input_errors))
        ACTIONS[call.code](call)
        forget_user_token(call)
        return Outcome()
    except proof.ForgedCall as exc:
        proof.refuse(call, str(exc))
        forget_user_token(call)
        return Outcome()
    except (AnswerPending, StillSending) as exc:  # only the answer waits (answers.py caps its tries)
        return _retry_later(call, exc)
    except (InputError, ProviderError, B24Error) as exc:
        if call.signature_request is not None:
            services.report_provider_error(call.signature_request.account, exc)
        permanent = getattr(exc, "permanent", False)
        if permanent or call.attempts >= MAX_ATTEMPTS:
            return _fail(call, _message(exc))
        return _retry_later(call, exc)
    except Exception as exc:  # a bug: retry a little, then tell the workflow rather than leave it waiting
        log.exception("robot call %s failed", call.pk)
        if call.attempts >= 3:
            return _fail(call, "internal error in b24sign; support has the details")
        return _retry_later(call, exc)


def reader(call: RobotCall) -> B24Client:
    """The client that reads the CRM and downloads for this call: with the rights of the user the robot
    runs as (the call's own token), the portal's stored token only for calls that came without one.
    The user's token is never swapped for the admin's: expired, it is renewed with the call's own
    refresh token, or the call fails with a clear message."""
    if not call.auth_access_token:
        return B24Client(call.portal)
    client = B24Client(call.portal, user_token=call.auth_access_token, user_refresh=lambda: _renew(call))
    if call.auth_expires_at and call.auth_expires_at <= timezone.now():
        client.user_token = _renew(call)
    return client


def _renew(call: RobotCall) -> str:
    if not call.auth_refresh_token:
        raise InputError("the run-as user's authorization expired before the call could run; "
                         "start the automation rule again")
    try:
        data = request_refresh(call.auth_refresh_token, call.portal.server_endpoint)
    except B24Error as exc:
        raise InputError(f"the run-as user's authorization could not be renewed ({exc.error}); "
                         "start the automation rule again") from exc
    if str(data.get("member_id") or call.portal.member_id) != call.portal.member_id or not data.get("access_token"):
        raise InputError("the run-as user's authorization could not be renewed; start the automation rule again")
    call.auth_access_token = str(data["access_token"])
    call.auth_refresh_token = str(data.get("refresh_token") or "")
    call.auth_expires_at = timezone.now() + timedelta(seconds=int(data.get("expires_in") or 3600))
    call.save(update_fields=["auth_access_token", "auth_refresh_token", "auth_expires_at"])
    return call.auth_access_token


def forget_user_token(call: RobotCall) -> None:
    """The run-as user's token is needed only until the document is read: never kept longer."""
    if call.auth_access_token or call.auth_refresh_token:
        RobotCall.objects.filter(pk=call.pk).update(auth_access_token="", auth_refresh_token="", auth_expires_at=None)
        call.auth_access_token, call.auth_refresh_token, call.auth_expires_at = "", "", None


def _message(exc) -> str:
    if isinstance(exc, B24Error):
        return f"Bitrix24: {exc.description or exc.error}"
    return str(exc)


def _retry_later(call: RobotCall, exc) -> Outcome:
    delay = getattr(exc, "retry_after", None) or min(600.0, 5.0 * 2 ** (call.attempts - 1))
    now = timezone.now()
    RobotCall.objects.filter(pk=call.pk, state=RobotCall.RUNNING).update(
        state=RobotCall.QUEUED, last_error=_message(exc)[:2000], updated_at=now, lease_until=None,
        retry_at=now + timedelta(seconds=delay))
    log.info("robot call %s: retry in %.0fs (%s)", call.pk, delay, _message(exc))
    return Outcome(retry_in=delay)


def _fail(call: RobotCall, message: str) -> Outcome:
    req = call.signature_request
    if req is not None and not req.is_terminal and req.send_phase != "sent":
        req.move_to(states.ERROR, message=message, source="worker", error=message)
    RobotCall.objects.filter(pk=call.pk).update(last_error=message[:2000])
    try:
        answer(call, error_values(call.code, message, str(req.public_id) if req else ""), f"b24sign: {message}")
    except AnswerPending as exc:  # Bitrix24 refused for now: answered later (answers.py caps the tries)
        RobotCall.objects.filter(pk=call.pk).update(state=RobotCall.QUEUED, last_error=message[:2000], lease_until=None,
                                                   retry_at=timezone.now() + timedelta(seconds=exc.retry_after))
        return Outcome(retry_in=exc.retry_after)
    _release(call, RobotCall.DONE)
    forget_user_token(call)
    return Outcome()


def _release(call: RobotCall, state: str) -> None:
    RobotCall.objects.filter(pk=call.pk).update(state=state)
    call.state = state


# --- the robots -----------------------------------------------------------------------------------------
def send_for_signature(call: RobotCall, *, kedo: bool = False) -> None:
    props = call.properties
    client = B24Client(call.portal)  # answers and workflow log lines
    req = call.signature_request
    resolver = Resolver(call, reader(call))  # CRM reads and the download: as the run-as user
    if req is None or req.send_phase != "sent":
        resolver.read_crm()  # the call's first request carries its proof (proof.first_request)
    proof.prove(call, resolver.client)  # a no-op once proven; nothing below happens for a forged call
    if req is None:
        key = duplicates.source_key(props)
        with duplicates.guarded(call, key):
            if not kedo and _settled_by_open_request(call, key, client):
                erase(call, catalogue()[call.code])  # nothing sent: the signer's password is not needed
                return
            req = _create_request(call, resolver, kedo, key)
        logcontext.bind(request=str(req.public_id)[:8])
    if req.send_phase != "sent":
        defaults = PortalSettings.for_portal(call.portal)
        prefetch_related_objects([req], "signers")  # the spec and the provider's signer states: one query
        template_id = req.options.get("provider_template_id") or ""
        if props.get("document_source") == "template" and not template_id:
            resolver.reads["docgen"] = {"document": sources.generated_document(call, req, client)}
        document = None if template_id else resolver.download()  # a provider template is the document
        extra = []
        try:
            extra = sources.extra_documents(resolver, client)
            spec = SendSpec(
                request_id=str(req.public_id), title=req.title, document=document,
                signers=[_signer(s, req.options.get("template_roles")) for s in req.signers.all()],
                cc=list(props.get("cc_emails") or []),
                subject=props.get("subject") or _default_subject(defaults, req.title),
                message=props.get("message") or "",
                expiry_days=props.get("expiry_days") or defaults.expiry_days or None,
                reminder_days=_reminder_days(props.get("reminder_days"), defaults.reminder_days),
                auth=props.get("signer_auth") or "none", auth_secret=unseal(props.get("signer_auth_secret")),
                options=req.options, template_id=template_id, prefill=req.options.get("prefill") or {},
                delivery=req.options.get("delivery") or "email", extra_documents=extra)
            services.send_request(req, document, spec)
        finally:
            for file in [document, *extra]:
                if file is not None:
                    Path(file.path).unlink(missing_ok=True)
    erase(call, catalogue()[call.code])  # sent: the provider has the signer's password, we forget it
    req.refresh_from_db()
    prefetch_related_objects([req], "signers")  # the log line and the answer both list them: one query
    provider = all_providers()[req.provider].label if req.provider in all_providers() else req.provider
    sent_line = f"b24sign: sent \"{req.title}\" via {provider} to {services.signer_summary(req)}"
    sent_line += OPEN_REQUEST_NOTES.get(call.open_request, "")
    if props.get("wait") and not req.is_terminal:
        RobotCall.objects.filter(pk=call.pk).update(state=RobotCall.WAITING)
        log_line(call, sent_line + "; waiting for the signers", client)
        req.refresh_from_db()
        if req.is_terminal:  # it finished while we were logging: make sure somebody answers
            answer_waiting_calls(req)
        return
    answer(call, {**services.result_values(req), **_links(req)}, sent_line, client=client)


def _links(req: SignatureRequest) -> dict:
    """``signing_links`` for a request sent with "I send the link myself" (issued once, then kept)."""
    if req.options.get("delivery") != "link" or req.is_terminal:
        return {}
    stored = req.signing_links or services.issue_signing_links(req, source="robot")
    return {"signing_links": services.links_text(stored)}


def _template_setup(account, resolver: Resolver) -> tuple[list, dict]:
    """Role-mapped signers and the prefill values, checked against what the provider can do."""
    props, provider = resolver.props, account.provider_impl()
    template_id = str(props.get("provider_template_id") or "").strip()
    provider.require("templates" if template_id else "text_tags")
    if props.get("prefill_fields") and not template_id:
        raise InputError("prefilled fields need a provider template")
    signers = roles.template_signers(resolver)
    extra = {"template_roles": {s.email.lower(): s.template_role for s in signers}}
    if template_id:
        extra.update(provider_template_id=template_id, prefill=roles.prefill_values(resolver))
    return signers, extra


def _create_request(call: RobotCall, resolver: Resolver, kedo: bool, key: str) -> SignatureRequest:
    props = call.properties
    account = services.pick_account(call.portal, "b24kedo" if kedo else props.get("provider"))
    if not kedo and all_providers().get(account.provider) and all_providers()[account.provider].via_robot != "send":
        raise InputError(f"{account.provider} documents are sent with the HR document robot")
    options = {**request_options(props, kedo), "source_key": key}
    if not kedo and props.get("extra_documents"):
        account.provider_impl().require("document_group")
    if not kedo and props.get("delivery") == "link":
        account.provider_impl().require("signing_links")
        options["delivery"] = "link"
    if kedo:
        signers = resolver.kedo_members()
    elif props.get("provider_template_id") or (props.get("text_tags") and props.get("template_roles")):
        signers, extra = _template_setup(account, resolver)
        options.update(extra)
    else:
        if props.get("text_tags"):
            account.provider_impl().require("text_tags")
        signers = resolver.signers(signer_fields.signers(resolver))
    resolver.check_notify_user()
    title = props.get("title") or resolver.title()
    with transaction.atomic():
        req = services.create_request(call.portal, account, title=title, signers=signers,
                                      entity=call.entity, options=options)
        # (with what _settled_by_open_request found, when it had nothing to write at once)
        RobotCall.objects.filter(pk=call.pk).update(signature_request=req, open_request=call.open_request)
        call.signature_request = req
    return req


OPEN_REQUEST_NOTES = {
    duplicates.REPLACED: "; the open request for the same document was cancelled first",
    duplicates.SENT_ANOTHER: "; an open request for the same document exists and was kept",
}


def _note_open_request(call: RobotCall, what: str, later: bool = False) -> None:
    # A retry after "replaced" finds no open request any more: it stays "replaced".
    if call.open_request == duplicates.REPLACED and what == duplicates.NONE:
        return
    if not later:
        RobotCall.objects.filter(pk=call.pk).update(open_request=what)
    call.open_request = what


def _settled_by_open_request(call: RobotCall, key: str, client: B24Client) -> bool:
    """The robot fired again for an item whose document is already out: True when answered (nothing sent)."""
    mode = call.properties.get("if_open_exists") or duplicates.RETURN
    existing = duplicates.open_request(call, key)
    if existing is None or mode == duplicates.ANOTHER:
        # Written with the request this call creates next (_create_request): one UPDATE, not two.
        _note_open_request(call, duplicates.NONE if existing is None else duplicates.SENT_ANOTHER, later=True)
        return False
    if mode == duplicates.REPLACE:
        reason = "Replaced: the automation rule sent the same document again"
        if existing.send_phase == "sent":
            services.cancel_request(existing, reason, source="robot")
        else:  # never reached the provider: nothing to cancel there
            existing.move_to(states.CANCELLED, message=reason, source="robot")
        existing.log("replaced", f"replaced by robot call {call.pk}", source="robot")
        _note_open_request(call, duplicates.REPLACED)
        return False
    if existing.send_phase != "sent" and not call.properties.get("wait") and call.attempts < MAX_ATTEMPTS:
        # Answering now would tell the workflow "draft" while the other call is a moment from "sent" (a
        # burst that fires twice for a deal); the workflow's next rule expects the request as it goes out.
        raise StillSending("the open request for the same document is still being sent")
    _note_open_request(call, duplicates.RETURNED)
    RobotCall.objects.filter(pk=call.pk).update(signature_request=existing)
    call.signature_request = existing
    existing.log("returned", f"robot fired again (call {call.pk}): this open request was returned", source="robot")
    line = f"b24sign: \"{existing.title}\" is already out for signature ({existing.status}); nothing sent again"
    if call.properties.get("wait"):
        RobotCall.objects.filter(pk=call.pk).update(state=RobotCall.WAITING)
        log_line(call, line + "; waiting for the signers", client)
        existing.refresh_from_db()
        if existing.is_terminal:
            answer_waiting_calls(existing)
        return True
    answer(call, {**services.result_values(existing), **_links(existing)}, line, client=client)
    return True


def _default_subject(defaults, title: str) -> str:
    return f"{defaults.sender_name}: please sign {title}" if defaults.sender_name else ""


def _reminder_days(robot_value, portal_default) -> int | None:
    """The robot's value, else the portal's default; 0 means no automatic reminders."""
    value = robot_value if robot_value is not None else portal_default
    return value or None


def request_options(props: dict, kedo: bool) -> dict:
    """What the provider needs beyond the signers, kept on the request (never secrets): the robot's
    ``signer_auth`` is kept as such, so a later replace-signer knows how the signers were protected."""
    if kedo:
        names = {"company_id": "company_id", "provider_uid": "provider_uid",
                 "region_document_type": "region_document_type", "responsible": "responsible_user_id"}
    else:
        names = {k: k for k in ("signing_order", "expiry_days", "reminder_days", "signer_auth", "subject",
                                 "text_tags")}
    names["notify_user"] = "notify_user_id"  # crmcard tells this user the outcome instead of the responsible
    return {ours: props.get(key) for key, ours in names.items() if props.get(key) not in (None, "")}


KEDO_ROLES = ("signer", "assignee", "reviewer", "editor")


def _signer(row, template_roles: dict | None = None):
    return Signer(email=row.email, name=row.name, order=row.order, role=row.role, phone=row.phone,
                  user_id=row.user_id, kedo_role=row.role if row.role in KEDO_ROLES else "",
                  template_role=(template_roles or {}).get(row.email.lower(), ""))


def _request_for(call: RobotCall) -> SignatureRequest:
    raw = str(call.properties.get("request_id") or "").strip()
    try:
        public_id = uuid.UUID(raw)
    except ValueError:
        public_id = None
    req = public_id and SignatureRequest.objects.filter(portal=call.portal, public_id=public_id) \
        .select_related("account").first()
    if req is None:
        raise InputError(f"no signature request {raw!r} in this portal")
    return req


def get_status(call: RobotCall) -> None:
    req = _request_for(call)
    if not req.is_terminal and req.send_phase == "sent":
        try:
            services.apply_snapshot(req, req.account.provider_impl().status(req), "robot")
        except ProviderError as exc:
            if exc.code not in ("no_status", "unsupported"):  # callback-only providers: answer what we know
                raise
        req.refresh_from_db()
    answer(call, services.result_values(req), f"b24sign: request is {req.status}")


def remind(call: RobotCall) -> None:
    req = _request_for(call)
    services.remind_request(req, source="robot")
    answer(call, {"status": req.status, "error": ""}, "b24sign: signers reminded")


def cancel(call: RobotCall) -> None:
    req = _request_for(call)
    reason = call.properties.get("reason") or "Cancelled by an automation rule"
    if not services.cancel_request(req, reason, source="robot"):
        answer(call, {"status": req.status, "error": ""}, f"b24sign: request was already {req.status}")
        return
    answer(call, {"status": states.CANCELLED, "error": ""}, f"b24sign: request cancelled ({reason})")


# Robots whose first request reads the CRM: their proof rides in that batch (Resolver.read_crm).
READS_FIRST = {"b24sign_send", "b24sign_kedo_send"}

ACTIONS = {
    "b24sign_send": send_for_signature,
    "b24sign_kedo_send": lambda call: send_for_signature(call, kedo=True),
    "b24sign_status": get_status,
    "b24sign_remind": remind,
    "b24sign_cancel": cancel,
}


# --- recovery ------------------------------------------------------------------------------------------
def sweep() -> list[int]:
    """Calls whose task was lost (worker killed, broker restarted, publish failed) go back to the queue.

    A running call whose lease ran out (its worker stopped renewing it: killed) is reset to queued; a
    queued call nobody took for ``ROBOT_CALL_REPUBLISH_AFTER`` seconds, and not waiting out a backoff,
    is re-published.  The conditional UPDATE in claim() keeps a call from running twice; the request's
    checkpoints keep it from sending twice.
    """
    now = timezone.now()
    republish_after = timedelta(seconds=settings.ROBOT_CALL_REPUBLISH_AFTER)
    # An answer whose sender died mid-send goes back to pending first (the bump below would hide it);
    # no live send takes longer than twice the HTTP timeout.
    sending_cutoff = now - max(republish_after, timedelta(seconds=2 * settings.B24_HTTP_TIMEOUT + 10))
    RobotCall.objects.filter(answer_state="sending", updated_at__lt=sending_cutoff).update(answer_state="pending")
    expired = Q(lease_until__lt=now) | Q(lease_until__isnull=True, claimed_at__lt=now - lease.lease_length())
    lost = list(RobotCall.objects.filter(expired, state=RobotCall.RUNNING).values_list("pk", flat=True)[:500])
    lost = [pk for pk in lost if RobotCall.objects.filter(expired, pk=pk, state=RobotCall.RUNNING)
            .update(state=RobotCall.QUEUED, lease_until=None)]  # each one conditional: a renewal wins
    stuck = lost + list(RobotCall.objects.filter(state=RobotCall.QUEUED, updated_at__lt=now - republish_after)
                        .filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now))
                        .exclude(pk__in=lost).values_list("pk", flat=True)[:500])
    RobotCall.objects.filter(pk__in=stuck).update(updated_at=now)  # not again before the next period
    return stuck
