"""The app page Bitrix24 opens (``/app/``), the dashboard of signature requests and a request's detail.

Views stay thin: auth.py says who is looking (and scopes everything to ``request.ui.portal``),
queries.py reads, the signing services and the providers act.
"""
from __future__ import annotations

import logging
from datetime import datetime
from datetime import timezone as dt_timezone
from urllib.parse import urlencode

from django.http import FileResponse, Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from b24app.frames import admin_view, frame_entry, ui_view
from b24app.rest import B24Error
from bizproc_ext.models import RobotCall
from signing import services
from signing.base import ProviderError
from signing.models import ProviderAccount, SignatureRequest
from signing.registry import all_providers, provider_class

from . import queries, visibility
from .forms import FilterForm, status_choices

log = logging.getLogger("b24sign.ui")

# Keyed by SignerRow.display_status: "viewed" is a signer still to sign who has opened the document.
SIGNER_LABELS = {"pending": gettext_lazy("waiting"), "viewed": gettext_lazy("viewed"), "signed": gettext_lazy("signed"),
                 "declined": gettext_lazy("declined"), "cancelled": gettext_lazy("cancelled")}
CALL_LABELS = {"queued": gettext_lazy("queued"), "running": gettext_lazy("running"),
               "waiting": gettext_lazy("waiting for signers"), "done": gettext_lazy("done")}
ANSWER_LABELS = {"pending": gettext_lazy("not sent yet"), "sending": gettext_lazy("sending"),
                 "sent": gettext_lazy("sent")}


def crm_label(entity_type_id, entity_id) -> str:
    if not entity_type_id or not entity_id:
        return ""
    if entity_type_id == 2:
        return _("Deal #%(id)s") % {"id": entity_id}
    if entity_type_id == 1:
        return _("Lead #%(id)s") % {"id": entity_id}
    if entity_type_id == 31:
        return _("Invoice #%(id)s") % {"id": entity_id}
    return _("Item #%(id)s (type %(type)s)") % {"id": entity_id, "type": entity_type_id}


def _decorate(req, portal, status_labels: dict, provider_labels: dict) -> None:
    """Display values the templates cannot compute (translated labels, links into the portal)."""
    req.status_label = status_labels.get(req.status, req.status)
    req.provider_label = provider_labels.get(req.provider, req.provider)
    req.crm_url = queries.crm_url(portal, req.entity_type_id, req.entity_id)
    req.crm_path = queries.crm_path(req.entity_type_id, req.entity_id)
    req.crm_label = crm_label(req.entity_type_id, req.entity_id)
    for signer in getattr(req, "signer_list", []):
        signer.status_label = SIGNER_LABELS.get(signer.display_status, signer.display_status)


def app_url(request, name: str, *args, **params) -> str:
    """A URL of the app carrying this page's token (no cookies in the frame)."""
    query = urlencode({"t": request.ui.token, **{k: v for k, v in params.items() if v not in (None, "")}})
    return f"{reverse(name, args=args)}?{query}"


def base_context(request, tab: str) -> dict:
    ui = request.ui
    return {"ui": ui, "portal": ui.portal, "t": ui.token, "lang": ui.lang, "tab": tab,
            "provider_labels": {code: p.label for code, p in all_providers().items()},
            "status_labels": dict(status_choices())}


@require_POST
@frame_entry
def app_page(request):
    """Bitrix24 opens the app with a POST (spec §1.2): verified in auth.py, then on to a page with a token."""
    from . import card_tab  # noqa: PLC0415  (card_tab builds on this module's helpers)

    ui = request.ui
    if card_tab.opened_from_timeline(request):  # Open / Remind / Cancel on our timeline card (openRestApp)
        return card_tab.card_from_timeline(request)
    needs_setup = ui.is_admin and not ProviderAccount.objects.filter(portal=ui.portal, enabled=True).exists()
    return HttpResponseRedirect(app_url(request, "app-settings" if needs_setup else "app-dashboard"), status=303)


@require_GET
@ui_view
def dashboard(request):
    portal = request.ui.portal
    providers = [(code, p.label) for code, p in all_providers().items()]
    form = FilterForm(request.GET or None, providers=providers)
    filters = queries.Filters()
    if form.is_valid():
        filters = queries.Filters(**form.cleaned_data)
    pg = queries.page(portal, filters, older_than=request.GET.get("older", ""),
                      newer_than=request.GET.get("newer", ""))
    pg.rows = visibility.visible(request.ui, pg.rows)  # admins: all; others: what their CRM rights allow
    params = filters.as_params()
    base = base_context(request, "dashboard")
    for row in pg.rows:
        _decorate(row, portal, base["status_labels"], base["provider_labels"])
        row.detail_url = app_url(request, "app-request", row.public_id)
    context = {**base, "form": form, "page": pg, "filtered": bool(params),
               "older_url": app_url(request, "app-dashboard", older=pg.older, **params) if pg.older else "",
               "newer_url": app_url(request, "app-dashboard", newer=pg.newer, **params) if pg.newer else "",
               "reset_url": app_url(request, "app-dashboard"),
               "has_provider": ProviderAccount.objects.filter(portal=portal, enabled=True).exists()}
    return render(request, "b24app/app/dashboard.html", context)


def _request_or_404(request, public_id) -> SignatureRequest:
    # Scoped by the token's portal: another portal's id is simply not found.
    return get_object_or_404(SignatureRequest.objects.select_related("account"), portal=request.ui.portal,
                             public_id=public_id)


def _capabilities(req: SignatureRequest) -> frozenset:
    try:
        return provider_class(req.provider).capabilities
    except KeyError:
        return frozenset()


def _detail(request, req: SignatureRequest, message: str = "", error: str = "", status: int = 200):
    portal = request.ui.portal
    seen = visibility.require_visible(request.ui, req)
    caps = _capabilities(req)
    calls = list(RobotCall.objects.filter(portal=portal, signature_request=req).order_by("created_at", "id"))
    for call in calls:
        call.answer_state_label = ANSWER_LABELS.get(call.answer_state, call.answer_state)
        call.state_label = CALL_LABELS.get(call.state, call.state)
    base = base_context(request, "dashboard")
    req.signer_list = list(req.signers.all())
    _decorate(req, portal, base["status_labels"], base["provider_labels"])
    context = {**base, "req": req, "signers": req.signer_list, "status_label": req.status_label,
               "provider_label": req.provider_label, "crm_label": req.crm_label,
               "events": list(req.events.all()), "calls": calls, "message": message, "error": error,
               "crm_url": req.crm_url, "crm_path": req.crm_path,
               "can_remind": request.ui.is_admin and "remind" in caps and not req.is_terminal,
               "can_cancel": request.ui.is_admin and "cancel" in caps and not req.is_terminal,
               "back_url": app_url(request, "app-dashboard"),
               "remind_url": reverse("app-request-remind", args=[req.public_id]),
               "cancel_url": reverse("app-request-cancel", args=[req.public_id]),
               "download_url": app_url(request, "app-request-signed", req.public_id)
               if req.signed_file and seen.can_download(req) else "",
               **_links_context(request, req, caps)}
    return render(request, "b24app/app/detail.html", context, status=status)


def _links_context(request, req: SignatureRequest, caps) -> dict:
    """Signing links of a request sent with "I send the link myself" (admins see and renew them)."""
    enabled = (req.options or {}).get("delivery") == "link"
    if not enabled:
        return {"links_enabled": False}
    now = timezone.now().timestamp()
    links = [{"email": email, "url": v.get("url", ""),
              "expires": datetime.fromtimestamp(float(v.get("expires_at") or 0), tz=dt_timezone.utc),
              "expired": float(v.get("expires_at") or 0) < now}
             for email, v in (req.signing_links or {}).items()] if request.ui.is_admin else []
    return {"links_enabled": True, "links": links,
            "can_new_links": request.ui.is_admin and "signing_links" in caps and not req.is_terminal,
            "links_url": reverse("app-request-links", args=[req.public_id])}


@require_POST
@admin_view
def request_links(request, public_id):
    """New signing links (the old ones may have expired: the provider documents how long they live)."""
    req = _request_or_404(request, public_id)
    if req.is_terminal:
        return _detail(request, req, error=_("The request is already finished."), status=409)
    try:
        services.issue_signing_links(req, source="admin")
    except (ProviderError, B24Error) as exc:
        return _detail(request, req, error=_("The provider could not issue links: %(e)s") % {"e": exc}, status=502)
    return _detail(request, req, message=_("New signing links were issued."))


@require_GET
@ui_view
def request_detail(request, public_id):
    return _detail(request, _request_or_404(request, public_id))


@require_POST
@admin_view
def request_remind(request, public_id):
    req = _request_or_404(request, public_id)
    if req.is_terminal:
        return _detail(request, req, error=_("The request is already finished; there is nobody to remind."), status=409)
    try:
        services.remind_request(req, source="admin", actor=f"user {request.ui.user_id}")
    except (ProviderError, B24Error) as exc:
        return _detail(request, req, error=_("The provider refused the reminder: %(e)s") % {"e": exc}, status=502)
    return _detail(request, req, message=_("The signers were reminded."))


@require_POST
@admin_view
def request_cancel(request, public_id):
    """Like the cancel robot (bizproc_ext.pipeline.cancel): at the provider first, then the state machine."""
    req = _request_or_404(request, public_id)
    if req.is_terminal:
        return _detail(request, req, error=_("The request is already finished."), status=409)
    reason = (request.POST.get("reason") or "").strip()[:500] or f"Cancelled in b24sign by user {request.ui.user_id}"
    try:
        services.cancel_request(req, reason, source="admin")  # also answers a workflow waiting for it
    except (ProviderError, B24Error) as exc:
        return _detail(request, req, error=_("The provider could not cancel the request: %(e)s") % {"e": exc},
                       status=502)
    req.refresh_from_db()
    return _detail(request, req, message=_("The request was cancelled."))


@require_GET
@ui_view
def request_signed(request, public_id):
    req = _request_or_404(request, public_id)
    visibility.require_visible(request.ui, req, download=True)
    if not req.signed_file:
        raise Http404("no signed copy yet")
    name = f"{(req.document_name or req.title or 'document').rsplit('.', 1)[0]} - signed.pdf"
    return FileResponse(req.signed_file.open("rb"), as_attachment=True, filename=name,
                        content_type="application/pdf")
