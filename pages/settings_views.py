"""The settings page: providers (connect, test, disconnect, default), Bitrix24 Sign (KEDO), the portal's
defaults for new requests and the robots registered on the portal.  Everybody may look; only
administrators (``user.admin`` at page open, carried in the signed token) may change anything."""
from __future__ import annotations

import logging

from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from b24app.frames import admin_view, ui_view
from b24app.rest import B24Error
from b24app.trust import stored_token_is_admin
from bizproc_ext.models import RobotRegistration
from bizproc_ext.registration import sync_robots
from bizproc_ext.robots import CATALOGUE_VERSION, catalogue
from signing import services
from signing.base import ProviderError
from signing.models import PortalSettings, ProviderAccount
from signing.registry import all_providers, provider_class

from .forms import CredentialsForm, DefaultsForm, KedoForm, mask
from .scopes import missing_scopes
from .views import base_context

log = logging.getLogger("b24sign.ui")
KEDO = "b24kedo"


def _send_providers() -> dict:
    """Providers the generic send robot uses (KEDO has its own robot and section)."""
    return {code: p for code, p in all_providers().items() if p.via_robot == "send"}


def _accounts(portal) -> dict[str, ProviderAccount]:
    return {a.provider: a for a in ProviderAccount.objects.filter(portal=portal)}


def _provider_cards(portal, accounts, forms_by_code=None, verdicts=None) -> list[dict]:
    cards = []
    for code, info in _send_providers().items():
        account = accounts.get(code)
        connected = bool(account and account.enabled)
        cls = provider_class(code)
        existing = account.credentials if connected else {}
        form = (forms_by_code or {}).get(code) or CredentialsForm(cls, existing, prefix=code)
        stored = [{"label": form.fields[f.name].label, "value": mask(existing.get(f.name)) if f.secret
                   else existing.get(f.name, "")} for f in cls.credential_fields if existing.get(f.name)]
        cards.append({"code": code, "label": info.label, "account": account, "connected": connected,
                      "is_default": connected and account.is_default, "form": form, "stored": stored,
                      "verdict": (verdicts or {}).get(code)})
    return cards


def _kedo_context(portal, accounts, form=None) -> dict:
    """Bitrix24 Sign's section: the portal's own companies and the signing providers the chosen one has."""
    account = accounts.get(KEDO)
    enabled = bool(account and account.enabled)
    creds = account.credentials if enabled else {}
    provider = (account or ProviderAccount(portal=portal, provider=KEDO)).provider_impl()
    companies, choices, error = [], [], ""
    company_id = None
    try:
        companies = provider.client().my_companies()
        raw = (form.data.get("company_id") if form is not None and form.is_bound else None) or creds.get("company_id")
        company_id = int(raw) if raw else (companies[0]["id"] if companies else None)
        if company_id:
            choices = provider.list_company_providers(company_id)
    except (ProviderError, B24Error, ValueError) as exc:  # no sign.b2e on the portal, no CRM rights, …
        error = getattr(exc, "message", None) or getattr(exc, "description", None) or str(exc)
    if form is None:
        form = KedoForm(initial={"company_id": company_id, "provider_uid": creds.get("provider_uid")})
    current = next((p for p in choices if p["uid"] == creds.get("provider_uid")), None)
    return {"kedo": {"enabled": enabled, "account": account, "form": form, "choices": choices, "companies": companies,
                     "company_id": company_id, "error": error, "current": current, "creds": creds}}


def _robots(portal, lang: str) -> dict:
    registered = {r.code: r for r in RobotRegistration.objects.filter(portal=portal)}
    rows = []
    for code, robot in catalogue().items():
        reg = registered.get(code)
        state = "missing" if reg is None else "current" if reg.version >= CATALOGUE_VERSION else "outdated"
        rows.append({"code": code, "name": robot.name.get(lang) or robot.name["en"], "registration": reg,
                     "state": state})
    return {"robots": rows, "catalogue_version": CATALOGUE_VERSION,
            "robots_ok": all(r["state"] == "current" for r in rows)}


def _portal_problems(portal) -> list[dict]:
    """What Bitrix24 refuses this portal's app, in words an administrator can act on."""
    problems = [{"kind": "scope", "scope": m["scope"],
                 "text": _("The app was not granted the scope %(scope)s; this disables: %(features)s. An "
                           "administrator adds it to the app's scopes in Bitrix24 and opens the app again.")
                 % {"scope": m["scope"], "features": "; ".join(m["disables"])}} for m in missing_scopes(portal)]
    if portal.access_problem:
        problems.append({"kind": "access", "text": _("%(problem)s. Workflows waiting for b24sign are answered "
                                                      "once this is fixed (check the app's plan, rights and "
                                                      "installation).") % {"problem": portal.access_problem}})
    return problems


def _settings_page(request, *, message="", error="", status=200, forms_by_code=None, verdicts=None,
                   defaults_form=None, kedo_form=None, section=""):
    portal = request.ui.portal
    accounts = _accounts(portal)
    settings_row = PortalSettings.for_portal(portal)
    context = {**base_context(request, "settings"), "message": message, "error": error, "section": section,
               "token_admin_ok": stored_token_is_admin(portal),
               "cards": _provider_cards(portal, accounts, forms_by_code, verdicts),
               "default_choices": [(a.provider, all_providers()[a.provider].label) for a in accounts.values()
                                   if a.enabled and a.provider in _send_providers()],
               "default_code": next((a.provider for a in accounts.values() if a.enabled and a.is_default), ""),
               "defaults_form": defaults_form or DefaultsForm(instance=settings_row), "defaults": settings_row,
               "portal_problems": _portal_problems(portal),
               **_kedo_context(portal, accounts, kedo_form), **_robots(portal, request.ui.lang)}
    return render(request, "b24app/app/settings.html", context, status=status)


@require_GET
@ui_view
def settings_page(request):
    return _settings_page(request)


def _known_send_provider(code: str) -> bool:
    return code in _send_providers()


@require_POST
@admin_view
def provider_connect(request, code):
    if not _known_send_provider(code):
        return _settings_page(request, error=_("Unknown provider."), status=404)
    portal = request.ui.portal
    account = ProviderAccount.objects.filter(portal=portal, provider=code).first() or \
        ProviderAccount(portal=portal, provider=code)
    existing = account.credentials if account.pk and account.enabled else {}
    form = CredentialsForm(provider_class(code), existing, request.POST, prefix=code)
    if not form.is_valid():
        return _settings_page(request, forms_by_code={code: form}, status=400, section=code,
                              error=_("Please fill in the required fields."))
    label = all_providers()[code].label
    try:
        account, warning = services.connect_account(portal, code, form.credentials())
    except (ProviderError, B24Error) as exc:
        return _settings_page(request, forms_by_code={code: form}, status=400, section=code,
                              error=_("%(provider)s refused the connection: %(e)s") % {"provider": label, "e": exc})
    if warning:
        warning = " " + _("Status callbacks could not be set up; b24sign will poll instead.")
    return _settings_page(request, message=_("%(provider)s is connected.") % {"provider": label} + warning,
                          section=code)


@require_POST
@admin_view
def provider_test(request, code):
    """XHR (JSON) from the settings page, or a plain form post without JavaScript."""
    account = ProviderAccount.objects.filter(portal=request.ui.portal, provider=code, enabled=True).first()
    if account is None:
        ok, verdict = False, _("Not connected.")
    else:
        try:
            verdict, ok = str(account.provider_impl().test_connection()), True
        except (ProviderError, B24Error) as exc:
            verdict, ok = str(getattr(exc, "message", None) or exc), False
        except Exception:  # noqa: BLE001 - a verdict for the admin, the details for us
            log.exception("portal %s: %s connection test crashed", request.ui.portal.member_id[:8], code)
            verdict, ok = _("The test failed unexpectedly; please try again later."), False
        ProviderAccount.objects.filter(pk=account.pk).update(last_test_at=timezone.now(), last_test_ok=ok,
                                                             last_test_message=verdict[:2000])
    if request.headers.get("Accept", "").startswith("application/json"):
        return JsonResponse({"ok": ok, "message": verdict})
    return _settings_page(request, verdicts={code: {"ok": ok, "message": verdict}}, section=code)


@require_POST
@admin_view
def provider_disconnect(request, code):
    """Forget the credentials.  The row stays (its requests keep their history), disabled."""
    portal = request.ui.portal
    account = ProviderAccount.objects.filter(portal=portal, provider=code).first()
    if account is not None:
        with transaction.atomic():
            account.credentials, account.enabled, account.is_default = {}, False, False
            account.save()
            remaining = ProviderAccount.objects.filter(portal=portal, enabled=True,
                                                       provider__in=list(_send_providers()))
            if not remaining.filter(is_default=True).exists() and remaining.count() == 1:
                remaining.update(is_default=True)
    label = all_providers()[code].label if code in all_providers() else code
    return _settings_page(request, message=_("%(provider)s is disconnected.") % {"provider": label}, section=code)


@require_POST
@admin_view
def provider_default(request):
    code = request.POST.get("provider", "")
    portal = request.ui.portal
    with transaction.atomic():
        account = ProviderAccount.objects.select_for_update().filter(
            portal=portal, provider=code, enabled=True).first()
        if account is None or not _known_send_provider(code):
            return _settings_page(request, error=_("Connect that provider first."), status=400)
        ProviderAccount.objects.filter(portal=portal).exclude(pk=account.pk).update(is_default=False)
        ProviderAccount.objects.filter(pk=account.pk).update(is_default=True)
    return _settings_page(request, message=_("%(provider)s is now the default provider.") % {
        "provider": all_providers()[code].label}, section="defaults")


@require_POST
@admin_view
def kedo_enable(request):
    portal = request.ui.portal
    form = KedoForm(request.POST)
    if not form.is_valid():
        return _settings_page(request, kedo_form=form, status=400, section="kedo",
                              error=_("Please check the Bitrix24 Sign fields."))
    account = ProviderAccount.objects.filter(portal=portal, provider=KEDO).first() or \
        ProviderAccount(portal=portal, provider=KEDO)
    data = {"company_id": form.cleaned_data["company_id"] or "", "provider_uid": form.cleaned_data["provider_uid"]}
    try:
        credentials = account.provider_impl().connect(data)
    except (ProviderError, B24Error) as exc:
        return _settings_page(request, kedo_form=form, status=400, section="kedo",
                              error=_("Bitrix24 Sign could not be enabled: %(e)s") % {"e": exc})
    account.credentials, account.enabled = credentials, True
    account.save()
    return _settings_page(request, message=_("Bitrix24 Sign (HR documents) is enabled."), section="kedo")


@require_POST
@admin_view
def defaults_save(request):
    row = PortalSettings.for_portal(request.ui.portal)
    form = DefaultsForm(request.POST, instance=row)
    if not form.is_valid():
        return _settings_page(request, defaults_form=form, status=400, section="defaults",
                              error=_("Please correct the defaults."))
    row = form.save(commit=False)
    row.updated_by = request.ui.user_id
    row.save()
    return _settings_page(request, message=_("Defaults saved."), section="defaults")


@require_POST
@admin_view
def robots_sync(request):
    try:
        actions = sync_robots(request.ui.portal)
    except B24Error as exc:
        return _settings_page(request, error=_("Bitrix24 refused the registration: %(e)s") % {"e": exc},
                              status=502, section="robots")
    return _settings_page(request, message=_("Robots registered again (%(n)s).") % {"n": len(actions)},
                          section="robots")
