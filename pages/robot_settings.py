"""The robot settings placement (BIZPROC_ACTIVITY_PROPERTIES_DIALOG, spec §5.1).

Bitrix24 opens our page in a 350px frame with PLACEMENT_OPTIONS (code, current_values,
document_fields, properties).  The page shows friendly controls and writes every change back with
``BX24.placement.call('setPropertyValue', ...)``; Bitrix24's own Save button stores them.
"""
from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from b24app.frames import verified_frame_user
from b24app.framing import allow_portal_frame
from b24app.lifecycle import Rejected
from b24app.models import Portal
from bizproc_ext import sources
from bizproc_ext.robots import catalogue
from signing.models import ProviderAccount

from .robot_form import prop_rows, provider_choices, provider_template_choices, template_choices


def frame_portal(post) -> Portal:
    """Like every frame: the user's own AUTH_ID is the proof, never APPLICATION_TOKEN (b24app/frames.py)."""
    portal, _user = verified_frame_user(post)
    return portal


def placement_options(post) -> dict:
    try:
        options = json.loads(post.get("PLACEMENT_OPTIONS") or "{}")
    except ValueError:
        raise Rejected(400, "PLACEMENT_OPTIONS is not JSON") from None
    return options if isinstance(options, dict) else {}


def file_fields(document_fields) -> list[tuple[str, str]]:
    """File-type fields of the document (both the upper-case and the normalised shapes, U9)."""
    out = []
    for code, field in (document_fields or {}).items():
        if not isinstance(field, dict):
            continue
        kind = str(field.get("Type") or field.get("TYPE") or "").lower()
        if kind == "file":
            out.append((code, str(field.get("Name") or field.get("NAME") or code)))
    return out


SIGNER_FIELD_TYPES = {"user": "user", "employee": "user", "uf:employee": "user",
                      "uf:crm": "contact", "crm": "contact", "e:ecrm": "contact",
                      "email": "email", "uf:email": "email"}


def signer_field_choices(document_fields) -> list[tuple[str, str]]:
    """Employee, contact and e-mail fields of the item, as (``kind:CODE``, label) for the signer_fields control."""
    out = []
    for code, field in (document_fields or {}).items():
        if not isinstance(field, dict):
            continue
        kind = SIGNER_FIELD_TYPES.get(str(field.get("Type") or field.get("TYPE") or "").lower())
        if kind is None and str(code).upper().endswith("EMAIL"):
            kind = "email"
        if kind == "contact" and "CONTACT" not in str(code).upper() and \
                "CONTACT" not in json.dumps(field.get("Options") or field.get("Settings") or "").upper():
            continue  # a binding to companies or deals names nobody who signs
        if kind:
            out.append((f"{kind}:{code}", str(field.get("Name") or field.get("NAME") or code)))
    return out


def settings_context(request, code: str) -> dict:
    portal = frame_portal(request.POST)
    options = placement_options(request.POST)
    robot = catalogue().get(options.get("code") or code)
    if robot is None:
        raise Rejected(404, "unknown robot")
    current = options.get("current_values") if isinstance(options.get("current_values"), dict) else {}
    lang = (request.GET.get("LANG") or portal.language or "en")[:2]
    accounts = ProviderAccount.objects.filter(portal=portal, enabled=True)
    request.portal = portal
    templates, templates_error = [], ""
    if "template_id" in robot.properties:
        templates, templates_error = template_choices(portal, sources.entity_type_of(options.get("document_type")))
    provider_templates, provider_templates_error = [], ""
    if "provider_template_id" in robot.properties:
        provider_templates, provider_templates_error = provider_template_choices(accounts)
    choices = {"document_field": file_fields(options.get("document_fields")), "template_id": templates,
               "provider_template_id": provider_templates,
               "signer_fields": signer_field_choices(options.get("document_fields"))}
    if "provider" in robot.properties:
        choices["provider"] = provider_choices(accounts)
    return {"provider_templates_error": provider_templates_error, "templates_error": templates_error,
            "portal": portal, "robot": robot, "props": prop_rows(robot, current, lang, choices=choices), "lang": lang,
            "robot_name": robot.name.get(lang) or robot.name["en"], "current_json": json.dumps(current)}


@csrf_exempt
@require_POST
def robot_settings(request: HttpRequest, code: str) -> HttpResponse:
    """BIZPROC_ACTIVITY_PROPERTIES_DIALOG: friendly controls that write values with setPropertyValue."""
    try:
        context = settings_context(request, code)
    except Rejected as exc:
        return render(request, "b24app/install_failed.html", {"message": exc.message}, status=exc.status)
    response = render(request, "bizproc_ext/robot_settings.html", context)
    return allow_portal_frame(response, context["portal"].domain)
