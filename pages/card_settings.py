"""Settings → CRM card: the placements with what Bitrix24 says about them (``placement.get``), the triggers,
and per CRM entity type the three status fields (on/off, created by b24sign or mapped to existing fields,
their state).  Everybody may look; only admins change anything or press "bind again"."""
from __future__ import annotations

import re

from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from b24app.frames import admin_view, ui_view
from b24app.rest import B24Error
from crmcard import fields as uf
from crmcard.models import CardSetup
from crmcard.placements import current_state, unbind_all
from crmcard.tasks import setup_portal
from crmcard.triggers import delete_all

from .views import app_url, base_context

UF_RE = re.compile(r"^UF_CRM_[A-Z0-9_]{1,43}$")
ENTITY_LABELS = {2: "Deals", 1: "Leads", 31: "Invoices"}


def _page(request, message="", error="", status=200):
    portal = request.ui.portal
    setup = CardSetup.for_portal(portal)
    names = {int(t["entityTypeId"]): t["title"] for t in setup.smart_types}
    entities = []
    for etid in uf.entity_types(setup):
        cfg = uf.config_for(setup, etid)
        entities.append({"etid": etid, "label": _(ENTITY_LABELS[etid]) if etid in ENTITY_LABELS else names.get(etid),
                         **cfg, **{role: cfg.get(role) or "" for role in uf.ROLES}})
    rows = current_state(portal)
    context = {**base_context(request, "settings"), "placements": rows,
               "placements_ok": all(r["state"] == "bound" for r in rows), "triggers": setup.triggers,
               "entities": entities, "message": message, "error": error,
               "back_url": app_url(request, "app-settings")}
    return render(request, "pages/card_settings.html", context, status=status)


@require_GET
@ui_view
def card_settings(request):
    return _page(request)


@require_POST
@admin_view
def card_bind_again(request):
    shown = setup_portal(request.ui.portal)
    failed = {k: v for k, v in shown.items() if v != "ok"}
    if failed:
        return _page(request, error=_("Not everything could be set up: %(f)s") % {"f": failed}, status=502)
    return _page(request, message=_("Placements bound, triggers registered and fields checked again."))


@require_POST
@admin_view
def card_fields_save(request):
    """Per entity type: on/off, and optionally the existing fields to write instead of ours."""
    portal = request.ui.portal
    setup = CardSetup.for_portal(portal)
    new, recheck = dict(setup.fields), []
    for etid in uf.entity_types(setup):
        prefix = f"e{etid}_"
        cfg = uf.config_for(setup, etid)
        enabled = request.POST.get(prefix + "enabled") == "on"
        mapped = {role: (request.POST.get(prefix + role) or "").strip().upper() for role in uf.ROLES}
        if any(mapped.values()):
            bad = [v for v in mapped.values() if not UF_RE.match(v)]
            if bad or not all(mapped.values()):
                return _page(request, error=_("Map all three fields to user field codes such as UF_CRM_1700000000."),
                             status=400)
            cfg.update(mapped=True, state="ok", message="", **mapped)
        elif cfg.get("mapped"):
            cfg.update(mapped=False, state="")
            recheck.append(etid)
        if enabled and not cfg["enabled"]:
            recheck.append(etid)
        cfg["enabled"] = enabled
        new[str(etid)] = cfg
    setup.fields = new
    setup.save(update_fields=["fields"])
    try:
        if recheck:
            uf.ensure_fields(portal, only=recheck)
    except B24Error as exc:
        return _page(request, error=_("Bitrix24 refused: %(e)s") % {"e": exc}, status=502)
    return _page(request, message=_("Field settings saved."))


@require_POST
@admin_view
def card_remove(request):
    """Take b24sign out of the CRM card (placements and triggers) while staying installed; "Bind again" undoes it."""
    try:
        removed = unbind_all(request.ui.portal)
        delete_all(request.ui.portal)
    except B24Error as exc:
        return _page(request, error=_("Bitrix24 refused: %(e)s") % {"e": exc}, status=502)
    return _page(request, message=_("Removed from the CRM card (%(n)s placements).") % {"n": removed})
