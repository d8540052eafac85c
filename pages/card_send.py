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
from b24app.rest import B24Client, B24Error
from b24app.rest.client import call_with_token
from bizproc_ext import sources
from bizproc_ext.parsing import typed_properties
from bizproc_ext.robots import catalogue
from signing.models import ProviderAccount
from signing.registry import all_providers

from .card_scope import CardScope, scope_from_frame, scope_from_token
from .card_tab import card_url, card_view, queue_card_call
from .robot_settings import provider_template_choices
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


def form_props(request, values: dict) -> list[dict]:
    lang = request.ui.lang
    robot = catalogue()["b24sign_send"]
    props = []
    for key in FORM_KEYS:
        prop = robot.properties[key]
        value = values.get(key, prop.default if prop.default is not None else "")
        props.append({"key": key, "label": prop.name.get(lang) or prop.name["en"], "type": prop.type,
                      "multiple": prop.multiple,
                      "value": (value if isinstance(value, list) else [v for v in [value] if v]) if prop.multiple
                      else ("" if value is None else value),
                      "options": [(k, v.get(lang) or v["en"]) for k, v in (prop.options or {}).items()]})
        if prop.multiple:
            props[-1]["text"] = "\n".join(str(v) for v in props[-1]["value"])
    return props


def render_form(request, scope: CardScope, values: dict, *, fields=(), documents=(), errors=(), status=200):
    accounts = ProviderAccount.objects.filter(portal=request.ui.portal, enabled=True)
    labels = all_providers()
    providers = [(a.provider, labels[a.provider].label if a.provider in labels else a.provider, a.is_default)
                 for a in accounts if a.provider in labels and labels[a.provider].via_robot == "send"]
    templates = []
    try:  # the document generator's templates for this item's type (robot settings do the same)
        templates = sources.list_templates(B24Client(request.ui.portal), scope.entity_type_id)
    except B24Error as exc:
        log.info("portal %s: templates not listed: %s", request.ui.portal.member_id[:8], exc.error)
    provider_templates, _unlisted = provider_template_choices(accounts)
    context = {**base_context(request, "card"), "scope": scope, "c": scope.token(request.ui),
               "templates": templates, "provider_templates": provider_templates,
               "props": form_props(request, values), "providers": providers, "file_fields": list(fields),
               "documents": list(documents), "errors": list(errors), "back_url": card_url(request, scope, "card-item")}
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
    values, errors = typed_properties(catalogue()["b24sign_send"], raw)
    if not values.get("signer_emails") and values.get("signer_contacts") in (None, "none") \
            and not values.get("template_roles"):
        errors.append(_("Add at least one signer."))
    if errors:
        return render_form(request, scope, {**raw, **{k: v for k, v in values.items() if v}}, errors=errors,
                           status=400)
    call = queue_card_call(request, scope, values)
    log.info("portal %s: user %s sent a request from the CRM card (call %s)", request.ui.portal.member_id[:8],
             request.ui.user_id, call.pk)
    return HttpResponseRedirect(card_url(request, scope, "card-item", sent=call.pk), status=303)
