""""Send for e-signature" from the CRM card (CRM_*_ACTIVITY_TIMELINE_MENU, the tab's "New request") and
"Sign this document" (CRM_*_DOCUMENTGENERATOR_BUTTON): the send robot's own settings as a form, prefilled
from the item, sent through the same pipeline as a robot call (a ``RobotCall`` in the same outbox: typed by
the same parser, retried, swept, sent once).

The document generator's button names only the item (``ENTITY_ID``), not the document: the form picks the
item's newest generated document and lists the others.
"""
from __future__ import annotations

import logging

from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from b24app.frames import frame_entry, ui_view
from b24app.rest import B24Error
from b24app.rest.client import call_with_token
from bizproc_ext.parsing import typed_properties
from bizproc_ext.robots import catalogue
from signing.models import ProviderAccount

from .card_scope import CardScope, scope_from_frame, scope_from_token
from .card_tab import card_url, card_view, queue_card_call
from .robot_form import drive_file_error, prop_rows, provider_choices, provider_template_choices, template_choices
from .views import base_context

log = logging.getLogger("b24sign.ui")

# A robot fired again by a deal moving back returns the open request (its default); a manager pressing
# "Send" in the card means a new one, so the form preselects "send another" (they may change it).
MANUAL_SEND = "another"

FORM_KEYS = ("provider", "document_source", "document_field", "document_id", "document_url", "template_id",
             "template_values", "signer_emails", "signer_contacts", "signing_order", "cc_emails", "subject",
             "message", "expiry_days", "reminder_days",
             # issue 13: provider templates with role mapping and prefill, links, re-sends
             "provider_template_id", "template_roles", "prefill_fields", "delivery", "if_open_exists")


def file_fields(item: dict) -> list[tuple[str, str]]:
    """The item's file fields as the item API shows them (values with a download URL)."""
    out = []
    for key, value in item.items():
        first = value[0] if isinstance(value, list) and value else value
        if key.startswith("ufCrm") and isinstance(first, dict) and ("urlMachine" in first or "url" in first):
            out.append((key, key))
    return out


def _contact_emails(endpoint: str, auth_id: str, item: dict) -> list[str]:
    """Emails of the item's contacts and company, read with the user's own token (what they may see)."""
    emails = []
    reads = [("crm.contact.get", cid) for cid in (item.get("contactIds") or [])[:5]]
    if item.get("companyId"):
        reads.append(("crm.company.get", item["companyId"]))
    for method, rid in reads:
        try:
            row = call_with_token(endpoint, auth_id, method, {"id": rid}) or {}
        except B24Error:
            continue
        for e in row.get("EMAIL") or []:
            if isinstance(e, dict) and e.get("VALUE") and e["VALUE"] not in emails:
                emails.append(e["VALUE"])
                break
    return emails


def _generated(endpoint: str, auth_id: str, scope: CardScope) -> list[dict]:
    try:
        res = call_with_token(endpoint, auth_id, "crm.documentgenerator.document.list", {
            "filter": {"entityTypeId": scope.entity_type_id, "entityId": scope.entity_id}, "order": {"id": "desc"}})
    except B24Error:
        return []
    docs = (res or {}).get("documents") if isinstance(res, dict) else res
    return [{"id": str(d.get("id")), "title": str(d.get("title") or d.get("id"))} for d in docs or []]


def render_form(request, scope: CardScope, values: dict, *, fields=(), documents=(), errors=(), status=200):
    """The robot's own form (pages/robot_form.py), with the choices this item offers."""
    portal = request.ui.portal
    accounts = ProviderAccount.objects.filter(portal=portal, enabled=True)
    templates, templates_error = template_choices(portal, scope.entity_type_id)
    if templates_error:
        log.info("portal %s: templates not listed: %s", portal.member_id[:8], templates_error)
    provider_templates, provider_templates_error = provider_template_choices(accounts)
    choices = {"provider": provider_choices(accounts), "document_field": list(fields),
               "document_id": [(d["id"], d["title"]) for d in documents], "template_id": templates,
               "provider_template_id": provider_templates}
    context = {**base_context(request, "card"), "scope": scope, "c": scope.token(request.ui),
               "props": prop_rows(catalogue()["b24sign_send"], values, request.ui.lang, FORM_KEYS, choices),
               "drive_file_id": values.get("drive_file_id") or "",
               "templates_error": templates_error, "provider_templates_error": provider_templates_error,
               "errors": list(errors), "back_url": card_url(request, scope, "card-item")}
    return render(request, "pages/card_send.html", context, status=status)


@require_POST
@frame_entry
@card_view
def card_send(request):
    """The placement POST: the item checked with the user's token, then the prefilled form."""
    scope, item = scope_from_frame(request)
    endpoint, auth_id = request.ui.portal.client_endpoint, request.POST.get("AUTH_ID", "")
    fields = file_fields(item)
    values = {"signer_emails": _contact_emails(endpoint, auth_id, item), "signer_contacts": "none",
              "if_open_exists": MANUAL_SEND,
              "subject": _("Please sign: %(title)s") % {"title": scope.title} if scope.title else ""}
    documents = _generated(endpoint, auth_id, scope)
    if request.GET.get("document") == "generated" and documents:
        values.update(document_source="docgen", document_id=documents[0]["id"])
    elif fields:
        values.update(document_source="field", document_field=fields[0][0])
    return render_form(request, scope, values, fields=fields, documents=documents)


@ui_view
@card_view
def card_send_form(request):
    """GET: the tab's "New request" (contacts resolved by the pipeline); POST: send."""
    scope = scope_from_token(request)
    if request.method != "POST":
        return render_form(request, scope, {"signer_contacts": "all", "document_source": "field",
                                            "if_open_exists": MANUAL_SEND})
    raw = {k: (request.POST.getlist(k) if k in ("signer_emails", "cc_emails") else request.POST.get(k))
           for k in FORM_KEYS}
    raw["signer_emails"] = [e for line in raw["signer_emails"] or [] for e in line.replace(",", "\n").split() if e]
    raw["cc_emails"] = [e for line in raw["cc_emails"] or [] for e in line.replace(",", "\n").split() if e]
    drive_file = (request.POST.get("drive_file_id") or "").strip()
    if raw.get("document_source") == "disk" and drive_file:  # the Drive control (document_id lists generated ones)
        raw["document_id"] = drive_file
    values, errors = typed_properties(catalogue()["b24sign_send"], raw)
    if not values.get("signer_emails") and values.get("signer_contacts") in (None, "none") \
            and not values.get("template_roles"):
        errors.append(_("Add at least one signer."))
    if values.get("document_source") == "disk" and not errors:
        # Asked now with the manager's own token: a file they cannot open is refused here, before any call.
        problem = drive_file_error(request.ui.call_as_user, values.get("document_id"))
        if problem:
            errors.append(problem)
    if errors:
        return render_form(request, scope, {**raw, **{k: v for k, v in values.items() if v},
                                            "drive_file_id": drive_file}, errors=errors, status=400)
    call = queue_card_call(request, scope, values)
    log.info("portal %s: user %s sent a request from the CRM card (call %s)", request.ui.portal.member_id[:8],
             request.ui.user_id, call.pk)
    return HttpResponseRedirect(card_url(request, scope, "card-item", sent=call.pk), status=303)
