"""What happens to a signature request, independent of the provider behind it.

Callers (the automation pipeline, the pages, ``manage.py providers``) create and send requests through
here; webhooks, the poller and the KEDO events move them on through :func:`apply_snapshot`;
:func:`finalize` brings the outcome back into the CRM (signed PDF on the timeline) and announces
``request_finished``, on which the automation layer answers every workflow that waits for it.
"""
from __future__ import annotations

import base64
import logging
from datetime import timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.core import signing as django_signing
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from b24app import coordination
from b24app.crm import timeline_entity_type
from b24app.rest import B24Client, B24Error

from . import signals, states
from .base import DocumentFile, ProviderError, SendSpec, SignedFiles, Signer, StatusSnapshot
from .models import PortalSettings, ProviderAccount, SignatureRequest, SignerRow
from .registry import all_providers

log = logging.getLogger("b24sign.signing")

LINK_MAX_AGE = 30 * 24 * 3600
# Webhooks first; the first poll comes soon enough that a lost callback is noticed within minutes, then
# the interval doubles (3, 6, 12 … minutes, up to 6 h).
POLL_FIRST = timedelta(minutes=3)
POLL_MAX = timedelta(hours=6)


# --- accounts ---------------------------------------------------------------------------------------
def pick_account(portal, provider: str | None) -> ProviderAccount:
    accounts = ProviderAccount.objects.filter(portal=portal, enabled=True)
    if provider and provider != "default":
        account = accounts.filter(provider=provider).first()
        if account is None:
            label = all_providers().get(provider).label if provider in all_providers() else provider
            raise ProviderError(f"{label} is not connected in b24sign's settings", permanent=True, code="input")
        return account
    account = accounts.filter(is_default=True).first() or (accounts.first() if accounts.count() == 1 else None)
    if account is None:
        raise ProviderError("no default e-signature provider is set in b24sign's settings", permanent=True,
                            code="input")
    return account


def connect_account(portal, provider: str, credentials: dict, *, make_default: bool | None = None,
                    label: str = "") -> tuple[ProviderAccount, str]:
    """Connect (or reconnect) a provider for a portal; used by the settings page and ``manage.py providers``.

    The provider checks/exchanges the credentials first: nothing is stored if it refuses (ProviderError).
    ``make_default``: True makes it the only default; None makes it default when the portal has none.
    Returns the account and a warning when callbacks could not be subscribed (polling still works).
    """
    account = ProviderAccount.objects.filter(portal=portal, provider=provider).first() or \
        ProviderAccount(portal=portal, provider=provider)
    stored = account.provider_impl().connect(credentials)
    with transaction.atomic():
        others = ProviderAccount.objects.filter(portal=portal, enabled=True, is_default=True).exclude(provider=provider)
        account.credentials = stored
        account.enabled = True
        account.label = label or account.label
        account.is_default = bool(make_default) or account.is_default or (make_default is None and not others.exists())
        account.last_test_at, account.last_test_ok, account.last_test_message = timezone.now(), True, "Connected."
        account.callbacks_lost_at = None  # on_connected below subscribes everything afresh
        account.save()
        if make_default:
            others.update(is_default=False)
    signals.account_connected.send(sender=ProviderAccount, account=account)
    try:
        account.provider_impl().on_connected(account.webhook_url())
    except (ProviderError, B24Error) as exc:
        log.warning("portal %s: %s callbacks not subscribed: %s", portal.member_id[:8], provider, exc)
        signals.account_broken.send(sender=ProviderAccount, account=account, reason="callbacks", message=str(exc))
        return account, f"callbacks could not be set up ({exc}); b24sign polls instead"
    return account, ""


def check_callbacks(account: ProviderAccount) -> str:
    """Compare the account's webhook subscriptions at the provider with ours; subscribe again to what is missing.

    A loss is written down (``callbacks_lost_at``) before the restore is tried and cleared only once it is
    announced, so each loss reaches the admins once: a check that crashes in between announces it next time,
    and one that runs again finds nothing missing.  An outage (transient ProviderError) raises, announcing
    nothing.  Events never subscribed (added to the app since the account connected) are subscribed quietly.
    Returns what it found: "ok", "restored", "failed", "added" or "unsupported".
    """
    impl, url = account.provider_impl(), account.webhook_url()
    with coordination.lock(f"callbacks-check:{account.pk}", ttl=120, wait=0):
        gap = impl.callback_gap(url)
        ProviderAccount.objects.filter(pk=account.pk).update(callbacks_checked_at=timezone.now())
        if gap is None:
            return "unsupported"
        if not gap.lost and not account.callbacks_lost_at:
            if gap.new:
                impl.restore_callbacks(url, gap.new)
                return "added"
            return "ok"
        if not account.callbacks_lost_at:
            account.callbacks_lost_at = timezone.now()
            ProviderAccount.objects.filter(pk=account.pk, callbacks_lost_at__isnull=True).update(
                callbacks_lost_at=account.callbacks_lost_at)
        missing = [*gap.lost, *gap.new]
        try:
            if missing:
                impl.restore_callbacks(url, missing)
        except ProviderError as exc:
            if not exc.permanent:
                raise
            log.warning("portal %s: %s webhook subscriptions %s lost and not restored: %s",
                        account.portal.member_id[:8], account.provider, gap.lost, exc)
            _announce_loss(account, gap.lost, restored=False, message=str(exc))
            return "failed"
        _announce_loss(account, gap.lost, restored=True)
        ProviderAccount.objects.filter(pk=account.pk).update(callbacks_lost_at=None)
        account.callbacks_lost_at = None
        return "restored"


def _announce_loss(account: ProviderAccount, events: list[str], *, restored: bool, message: str = "") -> None:
    signals.callbacks_lost.send(sender=ProviderAccount, account=account, lost_at=account.callbacks_lost_at,
                                restored=restored, events=events, message=message)


def report_provider_error(account: ProviderAccount, exc) -> None:
    """An authentication failure at the provider (refresh refused, 401 after a refresh) is a broken connection."""
    if isinstance(exc, ProviderError) and exc.code == "auth":
        signals.account_broken.send(sender=ProviderAccount, account=account, reason="auth", message=str(exc))


# --- sending ----------------------------------------------------------------------------------------
def create_request(portal, account: ProviderAccount, *, title: str, signers: list[Signer],
                   entity: tuple[int, int] | None, options: dict) -> SignatureRequest:
    with transaction.atomic(savepoint=False):  # (inside the robot call's transaction: no savepoint of its own)
        req = SignatureRequest.objects.create(
            portal=portal, account=account, provider=account.provider, title=title[:255], options=options,
            entity_type_id=entity[0] if entity else None, entity_id=entity[1] if entity else None)
        SignerRow.objects.bulk_create([
            SignerRow(request=req, email=s.email, name=s.name[:200], phone=s.phone, role=s.role, order=s.order,
                      user_id=s.user_id) for s in signers])
        req.log("created", f"created with {len(signers)} signer(s) via {account.provider}", source="robot")
    return req


def send_request(req: SignatureRequest, document: DocumentFile | None, spec: SendSpec) -> None:
    """Send once.  Re-entrant: a retry after a crash resumes from the provider's saved checkpoints."""
    if req.send_phase == "sent":
        return
    provider = req.account.provider_impl()

    def checkpoint(state: dict) -> None:
        merged = {**req.provider_state, **state}
        if merged == req.provider_state:  # nothing new (a send that checkpointed everything itself)
            return
        SignatureRequest.objects.filter(pk=req.pk).update(provider_state=merged, updated_at=timezone.now())
        req.provider_state = merged

    spec.resume = dict(req.provider_state)
    spec.checkpoint = checkpoint
    spec.callback_url = req.account.webhook_url()
    provider.validate(spec)
    SignatureRequest.objects.filter(pk=req.pk).update(  # no document: the provider builds it from a template
        send_phase="sending", document_name=(document.name if document else req.title)[:255],
        document_size=document.size if document else 0)
    result = provider.send(spec)
    with transaction.atomic():
        checkpoint({"send": result.raw} if result.raw else {})
        SignatureRequest.objects.filter(pk=req.pk).update(
            external_id=result.external_id, send_phase="sent",
            next_poll_at=timezone.now() + POLL_FIRST)
        req.external_id, req.send_phase = result.external_id, "sent"
        _update_signers(req, result.signers)
        req.move_to(states.SENT, message=f"sent via {req.account.provider}", source="worker")
        signals.request_sent.send(sender=SignatureRequest, request=req)


def _update_signers(req: SignatureRequest, signer_states) -> None:
    rows = {row.email.lower(): row for row in req.signers.all()}
    moved = False
    for st in signer_states or []:
        row = rows.get((st.email or "").lower())
        if row is None:
            continue
        moved = _note_view(req, row, st.viewed_at) or moved
        changed = []
        if st.external_id and st.external_id != row.external_id:
            row.external_id = st.external_id
            changed.append("external_id")
        if st.status and st.status != row.status and row.status in ("pending", "sent"):
            row.status = st.status
            changed.append("status")
            if st.status == "signed":
                row.signed_at = timezone.now()
                changed.append("signed_at")
        if changed:
            row.save(update_fields=changed)
            moved = moved or "status" in changed
    if moved:
        signals.signers_changed.send(sender=SignatureRequest, request=req)


def _note_view(req: SignatureRequest, row: SignerRow, viewed_at: str) -> bool:
    """The first view of a signer still to sign, recorded once: a conditional UPDATE, so a webhook retry, a
    poll or a concurrent worker reading the same view finds it taken.  A view learned after the signature
    is no news (signing implies it), so it is not recorded."""
    if not viewed_at or row.viewed_at or row.status != "pending":
        return False
    when = parse_datetime(viewed_at) or timezone.now()
    if timezone.is_naive(when):
        when = timezone.make_aware(when, dt_timezone.utc)
    if not SignerRow.objects.filter(pk=row.pk, viewed_at__isnull=True, status="pending").update(viewed_at=when):
        return False
    row.viewed_at = when
    req.log("viewed", f"{row.email} opened the document", source="provider", dedupe_key=f"viewed:{row.email.lower()}")
    return True


def replace_signer(req: SignatureRequest, old_email: str, new_email: str, *, source: str = "admin") -> None:
    """Hand a signer's place to someone else at the provider, and follow it in our rows: status reads and the
    timeline comment name the person who actually signs."""
    req.account.provider_impl().replace_signer(req, old_email, new_email)
    req.signers.filter(email__iexact=old_email).update(email=new_email, name="", external_id="", status="pending",
                                                       viewed_at=None)
    req.log("signer_replaced", f"{old_email} replaced by {new_email}", source=source)


# --- moving on ---------------------------------------------------------------------------------------
def apply_snapshot(req: SignatureRequest, snap: StatusSnapshot, source: str) -> bool:
    """Bring our request in line with the provider's view.  Returns True if the status moved.

    One transaction: the signers' states and the status move are one change for whoever reacts after
    commit (the CRM card sends one update for both)."""
    with transaction.atomic():
        return _apply_snapshot(req, snap, source)


def _apply_snapshot(req: SignatureRequest, snap: StatusSnapshot, source: str) -> bool:
    _update_signers(req, snap.signers)
    moved = False
    target = snap.status
    if target == states.COMPLETED and req.status == states.SENT:
        req.move_to(states.PARTIALLY_SIGNED, source=source)  # keeps the history readable
    if target == states.COMPLETED:  # completion implies every signer signed, whatever the payload listed
        req.signers.filter(status="pending", role__in=["signer", "approver", "assignee", "reviewer"]).update(
            status="signed", signed_at=timezone.now())
    if target and target != req.status:
        moved = req.move_to(target, message=snap.reason, source=source, payload=_small(snap.raw),
                            error=snap.reason if target in (states.DECLINED, states.ERROR) else "")
    if req.is_terminal:
        finalize_soon(req)
    return moved


def remind_request(req: SignatureRequest, source: str, actor: str = "") -> None:
    if req.is_terminal:
        raise ProviderError(f"the request is already {req.status}; nobody to remind", permanent=True, code="input")
    req.account.provider_impl().remind(req)
    req.log("remind", f"signers reminded{' by ' + actor if actor else ''}", source=source)


def cancel_request(req: SignatureRequest, reason: str, source: str) -> bool:
    """Cancel at the provider first, then in the state machine; a waiting workflow hears about it.
    False when the request had already ended."""
    if req.is_terminal:
        return False
    req.account.provider_impl().cancel(req, reason)
    if req.move_to(states.CANCELLED, message=reason, source=source):
        req.signers.filter(status="pending").update(status="cancelled")
    finalize_soon(req)
    return True


def issue_signing_links(req: SignatureRequest, source: str) -> dict[str, dict]:
    """Fresh signing links for everyone still to sign (``delivery="link"``), kept encrypted on the request.
    The history says who got one and until when, never the link itself."""
    links = req.account.provider_impl().signing_links(req)
    stored = {link.email.lower(): {"url": link.url, "expires_at": link.expires_at} for link in links}
    SignatureRequest.objects.filter(pk=req.pk).update(signing_links=stored, updated_at=timezone.now())
    req.signing_links = stored
    req.log("links", f"signing links issued for {', '.join(stored) or 'nobody (all signed)'}", source=source,
            payload={"expires_at": {e: v["expires_at"] for e, v in stored.items()}})
    return stored


def links_text(stored: dict) -> str:
    """The robot's ``signing_links`` value: one ``email: link`` per line."""
    return "\n".join(f"{email}: {v['url']}" for email, v in (stored or {}).items())


def finalize_soon(req: SignatureRequest) -> None:
    """Ask for :func:`finalize` after commit (``signing.receivers`` queues the task)."""
    signals.request_ended.send(sender=SignatureRequest, request=req)


def _small(raw) -> dict:
    return raw if isinstance(raw, dict) and len(str(raw)) < 20000 else {}


def schedule_next_poll(req: SignatureRequest) -> None:
    delay = min(POLL_MAX, POLL_FIRST * (2 ** min(req.poll_count, 7)))
    SignatureRequest.objects.filter(pk=req.pk).update(poll_count=req.poll_count + 1,
                                                      next_poll_at=timezone.now() + delay)


def check_signed_files(files: SignedFiles) -> None:
    """A provider's (or a callback's) files before they are kept or reach the CRM: a PDF, and not huge."""
    limit = settings.SIGNED_FILE_MAX_BYTES
    if files.pdf and (len(files.pdf) > limit or b"%PDF-" not in files.pdf[:1024]):
        raise ProviderError("the signed copy is not a PDF of an acceptable size", permanent=True, code="file")
    if files.audit and len(files.audit) > limit:
        raise ProviderError("the audit trail is too large", permanent=True, code="file")
    if files.audit and files.audit_name.lower().endswith(".pdf") and b"%PDF-" not in files.audit[:1024]:
        raise ProviderError("the audit trail is not a PDF", permanent=True, code="file")


def store_signed_files(req: SignatureRequest, files: SignedFiles) -> None:
    check_signed_files(files)
    if not req.signed_file and files.pdf:
        req.signed_file.save(f"{req.public_id}.pdf", ContentFile(files.pdf), save=False)
    if not req.audit_file and files.audit:
        req.audit_file.save(f"{req.public_id}-audit{_ext(files.audit_name)}", ContentFile(files.audit), save=False)
    req.save(update_fields=["signed_file", "audit_file", "updated_at"])


def _ext(name: str) -> str:
    return "." + name.rsplit(".", 1)[1] if "." in name else ".pdf"


# --- the outcome back into Bitrix24 -------------------------------------------------------------------
def finalize(req: SignatureRequest) -> None:
    """Terminal request: attach the signed copy (once), then answer every workflow waiting for it."""
    with coordination.lock(f"finalize:{req.pk}", ttl=300, wait=60):
        req.refresh_from_db()
        if req.status == states.COMPLETED and not req.signed_attached_at:
            _attach_signed_copy(req)
        if not req.finalized_at:
            SignatureRequest.objects.filter(pk=req.pk).update(finalized_at=timezone.now())
    announce_finished(req)


def _attach_signed_copy(req: SignatureRequest) -> None:
    if not req.signed_file:
        files = req.account.provider_impl().signed_document(req)
        store_signed_files(req, files)
    if not PortalSettings.for_portal(req.portal).attach_signed_copy:  # the admin chose to keep it out of CRM
        req.log("attached", "signed copy kept in b24sign only (settings: do not attach)", source="worker")
        SignatureRequest.objects.filter(pk=req.pk).update(signed_attached_at=timezone.now())
        return
    files = [[_display_name(req, "signed.pdf"), _b64(req.signed_file)]]
    if req.audit_file:
        files.append([_display_name(req, "audit trail" + _ext(req.audit_file.name)), _b64(req.audit_file)])
    if req.entity_type_id and req.entity_id:
        signers = ", ".join(f"{s.name} <{s.email}>" if s.name else s.email
                            for s in req.signers.filter(role__in=["signer", "assignee"]))
        provider = all_providers()[req.provider].label if req.provider in all_providers() else req.provider
        comment = f"Signed via {provider} by {signers}." if signers else "Signed document."
        comment_id = B24Client(req.portal).call("crm.timeline.comment.add", {"fields": {
            "ENTITY_ID": req.entity_id, "ENTITY_TYPE": timeline_entity_type(req.entity_type_id),
            "COMMENT": f"{req.title}: {comment}", "FILES": files}})
        SignatureRequest.objects.filter(pk=req.pk).update(timeline_comment_id=str(comment_id or "")[:32])
    SignatureRequest.objects.filter(pk=req.pk).update(signed_attached_at=timezone.now())
    req.log("attached", "signed copy attached to the CRM timeline", source="worker")


def _display_name(req: SignatureRequest, suffix: str) -> str:
    base = (req.document_name or req.title or "document").rsplit(".", 1)[0]
    return f"{base} - {suffix}"


def _b64(field) -> str:
    field.open("rb")
    try:
        return base64.b64encode(field.read()).decode()
    finally:
        field.close()


def give_up_finalizing(req: SignatureRequest, reason: str) -> None:
    """The signed copy cannot be fetched or attached: say so, stop trying, and still answer whoever waits."""
    req.log("error", f"could not attach the signed copy: {reason}", source="worker")
    SignatureRequest.objects.filter(pk=req.pk, finalized_at__isnull=True).update(finalized_at=timezone.now())
    announce_finished(req)


def announce_finished(req: SignatureRequest) -> None:
    signals.request_finished.send(sender=SignatureRequest, request=req)


def result_values(req: SignatureRequest) -> dict:
    return {"request_id": str(req.public_id), "status": req.status, "signers_status": signer_summary(req),
            "signed_file_url": signed_file_link(req) if req.signed_file else "",
            "error": req.error if req.status in (states.ERROR, states.DECLINED) else ""}


def signer_summary(req: SignatureRequest) -> str:
    return "; ".join(f"{s.email}: {s.status}" for s in req.signers.all())


def _signed_file_payload(req: SignatureRequest) -> dict:
    # "i" ties the link to this installation: after an uninstall (and a later reinstall) it is dead.
    return {"r": str(req.public_id), "i": int(req.portal.installed_at.timestamp())}


def signed_file_link(req: SignatureRequest) -> str:
    token = django_signing.dumps(_signed_file_payload(req), salt="b24sign.signed-file")
    return f"{settings.APP_BASE_URL}/signing/files/{token}/"


def signed_file_key(req: SignatureRequest) -> str:
    """What a signed-file link opens, the same for every link issued for it.

    Each link carries the second it was signed in (``dumps`` is timestamped, for the 30-day expiry), so two
    links for one file differ in text; whoever compares links (the CRM card's diff) compares this instead.
    """
    payload = _signed_file_payload(req)
    return f"signed-file:{payload['r']}@{payload['i']}"


def load_signed_file_token(token: str) -> tuple[str, int | None]:
    """(request public id, installation stamp) of a signed-file link, or BadSignature."""
    data = django_signing.loads(token, salt="b24sign.signed-file", max_age=LINK_MAX_AGE)
    return data["r"], data.get("i")
