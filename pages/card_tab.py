"""The "E-signatures" tab in the CRM card (CRM_DEAL_DETAIL_TAB, CRM_LEAD_…, CRM_SMART_INVOICE_…,
CRM_DYNAMIC_<typeId>_DETAIL_TAB): the item's requests, newest first, with their signers, provider and
history, and the actions remind, cancel, send again, download the signed PDF and the audit trail.

Bitrix24 POSTs the tab (``card_tab``); the page then lives on the frame token plus the card scope
(card_scope.py).  Every request is looked up within the verified portal *and* the scoped item.
"""
from __future__ import annotations

import uuid
from functools import wraps
from urllib.parse import urlencode

from django.db import transaction
from django.http import FileResponse, Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from b24app.frames import frame_entry, refused, ui_view
from b24app.lifecycle import Rejected
from b24app.rest import B24Error
from bizproc_ext.models import RobotCall
from bizproc_ext.tasks import process_robot_call
from signing import services
from signing.base import ProviderError
from signing.models import SignatureRequest
from signing.registry import all_providers, provider_class

from . import visibility
from .card_scope import CardScope, options, scope_from_frame, scope_from_token
from .forms import status_choices
from .views import SIGNER_LABELS, base_context


def card_view(view):
    """Rejected inside a card view becomes the same refusal page as the frame's own checks."""
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except Rejected as exc:
            return refused(request, exc, request.ui.lang)
    return wrapped


def card_url(request, scope: CardScope, name: str, *args, **params) -> str:
    query = urlencode({"t": request.ui.token, "c": scope.token(request.ui),
                       **{k: v for k, v in params.items() if v not in (None, "")}})
    return f"{reverse(name, args=args)}?{query}"


@require_POST
@frame_entry
@card_view
def card_tab(request):
    scope, _item = scope_from_frame(request)
    return HttpResponseRedirect(card_url(request, scope, "card-item"), status=303)


def opened_from_timeline(request) -> bool:
    try:
        opts = options(request.POST)
    except Rejected:
        return False
    return bool(opts.get("request") and opts.get("entityTypeId") and opts.get("entityId"))


@card_view
def card_from_timeline(request):
    """The timeline card's buttons open the app with the item in the context: show that item's tab at the request."""
    scope, _item = scope_from_frame(request)
    opts = options(request.POST)
    url = card_url(request, scope, "card-item", focus=str(opts.get("request"))[:40], ask=str(opts.get("view"))[:10])
    return HttpResponseRedirect(url, status=303)


def _requests(request, scope: CardScope):
    return SignatureRequest.objects.filter(portal=request.ui.portal, entity_type_id=scope.entity_type_id,
                                           entity_id=scope.entity_id)


def _one(request, scope: CardScope, public_id, download: bool = False) -> SignatureRequest:
    req = get_object_or_404(_requests(request, scope).select_related("account"), public_id=public_id)
    seen = visibility.for_card(request.ui, scope, [req])  # never another person's HR document
    if not seen.can_see(req) or (download and not seen.can_download(req)):
        raise Http404("no such request")
    return req


def _caps(req) -> frozenset:
    try:
        return provider_class(req.provider).capabilities
    except KeyError:
        return frozenset()


def render_tab(request, scope: CardScope, message: str = "", error: str = "", status: int = 200):
    labels = dict(status_choices())
    providers = {code: p.label for code, p in all_providers().items()}
    rows = list(_requests(request, scope).order_by("-created_at", "-id").prefetch_related("signers", "events")[:50])
    for req in rows:
        req.signer_list = list(req.signers.all())
    seen = visibility.for_card(request.ui, scope, rows)
    rows = [r for r in rows if seen.can_see(r)]  # never another person's HR document
    for req in rows:
        caps = _caps(req)
        req.status_label = labels.get(req.status, req.status)
        req.provider_label = providers.get(req.provider, req.provider)
        for s in req.signer_list:
            s.status_label = SIGNER_LABELS.get(s.display_status, s.display_status)
        req.history = list(req.events.all())
        req.can_remind = "remind" in caps and not req.is_terminal
        req.can_cancel = scope.may_manage and "cancel" in caps and not req.is_terminal
        req.can_replace = scope.may_manage and "replace_signer" in caps and not req.is_terminal
        req.can_resend = scope.may_manage and req.is_terminal and req.robot_calls.exists()
        for action in ("remind", "cancel", "resend", "replace"):
            setattr(req, f"{action}_url", reverse(f"card-{action}", args=[req.public_id]))
        req.focus = str(req.public_id) == request.GET.get("focus")
        files = seen.can_download(req)  # admins, the item's responsible user, the request's creator
        req.signed_url = card_url(request, scope, "card-signed", req.public_id) if req.signed_file and files else ""
        req.audit_url = card_url(request, scope, "card-audit", req.public_id) if req.audit_file and files else ""
    context = {**base_context(request, "card"), "scope": scope, "c": scope.token(request.ui), "rows": rows,
               "message": message, "error": error, "new_url": card_url(request, scope, "card-send-form")}
    return render(request, "pages/card_tab.html", context, status=status)


@require_GET
@ui_view
@card_view
def card_item(request):
    return render_tab(request, scope_from_token(request), message=request.GET.get("sent") and
                      _("Sent for signature. The request appears here in a moment."))


@require_POST
@ui_view
@card_view
def card_remind(request, public_id):
    scope = scope_from_token(request)
    req = _one(request, scope, public_id)
    try:
        services.remind_request(req, source="crm card", actor=f"user {request.ui.user_id}")
    except (ProviderError, B24Error) as exc:
        return render_tab(request, scope, error=_("The provider refused the reminder: %(e)s") % {"e": exc}, status=502)
    return render_tab(request, scope, message=_("The signers were reminded."))


@require_POST
@ui_view
@card_view
def card_cancel(request, public_id):
    scope = scope_from_token(request)
    if not scope.may_manage:
        raise Rejected(403, "only an administrator or the item's responsible person can cancel")
    req = _one(request, scope, public_id)
    reason = (request.POST.get("reason") or "").strip()[:500] or f"Cancelled from the CRM card by user " \
                                                                 f"{request.ui.user_id}"
    try:
        if not services.cancel_request(req, reason, source="crm card"):
            return render_tab(request, scope, error=_("The request is already finished."), status=409)
    except (ProviderError, B24Error) as exc:
        return render_tab(request, scope, error=_("The provider could not cancel the request: %(e)s") % {"e": exc},
                          status=502)
    return render_tab(request, scope, message=_("The request was cancelled."))


@require_POST
@ui_view
@card_view
def card_replace(request, public_id):
    """Hand a pending signer's place to someone else, where the provider can (signNow)."""
    scope = scope_from_token(request)
    if not scope.may_manage:
        raise Rejected(403, "only an administrator or the item's responsible person can replace a signer")
    req = _one(request, scope, public_id)
    old, new = (request.POST.get("old_email") or "").strip(), (request.POST.get("new_email") or "").strip()
    if req.is_terminal or "replace_signer" not in _caps(req) or \
            not req.signers.filter(email__iexact=old, status="pending").exists() or "@" not in new:
        return render_tab(request, scope, error=_("Choose a signer who has not signed yet and a new email."),
                          status=400)
    try:
        services.replace_signer(req, old, new, source="crm card")
    except (ProviderError, B24Error) as exc:
        return render_tab(request, scope, error=_("The provider refused: %(e)s") % {"e": exc}, status=502)
    return render_tab(request, scope, message=_("%(old)s was replaced by %(new)s.") % {"old": old, "new": new})


@require_POST
@ui_view
@card_view
def card_resend(request, public_id):
    """Send again: a new call of the same robot with the same settings, through the same pipeline."""
    scope = scope_from_token(request)
    if not scope.may_manage:
        raise Rejected(403, "only an administrator or the item's responsible person can send again")
    req = _one(request, scope, public_id)
    original = req.robot_calls.order_by("created_at").first()
    if original is None:
        raise Http404("this request was not sent by b24sign's robot or form")
    call = queue_card_call(request, scope, original.properties, code=original.code)
    return HttpResponseRedirect(card_url(request, scope, "card-item", sent=call.pk), status=303)


def queue_card_call(request, scope: CardScope, properties: dict, code: str = "b24sign_send") -> RobotCall:
    """The form's and "send again"'s way in: a robot call nobody waits for, in the same outbox (sweeper, retries,
    one send per call) as the queue server's."""
    call = RobotCall.objects.create(
        portal=request.ui.portal, code=code, event_token=f"card:{uuid.uuid4()}", workflow_id="",
        document_id=scope.document_id(), properties={**properties, "wait": False}, input_errors=[],
        use_subscription=False, auth_user_id=request.ui.user_id,
        # Proven already: the user's own token opened the frame and read the item (no queue-server token to prove).
        proven_at=timezone.now(),
        # The worker reads the CRM and downloads with this user's rights, never the stored admin token's
        # (a manager must not send a Drive file they cannot open). No refresh token: should it expire
        # before the worker runs, the call fails with "start again".
        auth_access_token=request.ui.user_access_token())
    transaction.on_commit(lambda: process_robot_call.delay(call.pk), robust=True)
    return call


def _file(request, public_id, field: str, suffix: str):
    scope = scope_from_token(request)
    req = _one(request, scope, public_id, download=True)
    stored = getattr(req, field)
    if not stored:
        raise Http404("not available")
    name = f"{(req.document_name or req.title or 'document').rsplit('.', 1)[0]} - {suffix}"
    return FileResponse(stored.open("rb"), as_attachment=True, filename=name)


@require_GET
@ui_view
@card_view
def card_signed(request, public_id):
    return _file(request, public_id, "signed_file", "signed.pdf")


@require_GET
@ui_view
@card_view
def card_audit(request, public_id):
    return _file(request, public_id, "audit_file", "audit trail.pdf")
