"""Scripted provider setup: connect, list, test and disconnect a portal's e-signature accounts.

    python manage.py providers connect <member_id> signnow basic_token=... username=owner@acme.test password=- --default
    python manage.py providers list [<member_id>]
    python manage.py providers test <member_id> signnow
    python manage.py providers disconnect <member_id> signnow [--force]

``key=-`` asks for the value without echoing it, so secrets stay out of the shell history.  Nothing here
prints a secret in full: fields a provider declares non-secret (a login email, an application id) and
numbers (token expiry) are shown, every other stored value is masked.
"""
from __future__ import annotations

from getpass import getpass

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from b24app.models import Portal
from b24app.rest import B24Error
from signing import services
from signing.base import ProviderError, mask_secret
from signing.models import ProviderAccount
from signing.registry import all_providers, provider_class


class Command(BaseCommand):
    help = "Connect, list, test and disconnect the e-signature provider accounts of a portal."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="{connect,list,test,disconnect}")
        connect = sub.add_parser("connect", help="store a provider account (credentials are checked first)")
        connect.add_argument("member_id")
        connect.add_argument("provider", help=f"one of: {', '.join(all_providers())}")
        connect.add_argument("credentials", nargs="*", metavar="key=value", help="key=- prompts for the value")
        connect.add_argument("--default", action="store_true", help="make it the portal's default provider")
        connect.add_argument("--label", default="", help="a name for the account in the settings page")
        listing = sub.add_parser("list", help="show accounts (secrets masked)")
        listing.add_argument("member_id", nargs="?")
        test = sub.add_parser("test", help="one real call to the provider; exit code 1 on failure")
        test.add_argument("member_id")
        test.add_argument("provider")
        disconnect = sub.add_parser("disconnect", help="remove an account (or disable it when requests used it)")
        disconnect.add_argument("member_id")
        disconnect.add_argument("provider")
        disconnect.add_argument("--force", action="store_true", help="even while signature requests are open")

    def handle(self, *args, action: str, **options):
        getattr(self, f"do_{action}")(**options)

    # -- actions -------------------------------------------------------------------------------------------
    def do_connect(self, member_id, provider, credentials, default, label, **_):
        portal = _portal(member_id)
        info = _provider_info(provider)
        given = _credentials(provider_class(provider), info.label, credentials)
        try:
            account, warning = services.connect_account(portal, provider, given, make_default=True if default else None,
                                                        label=label)
        except (ProviderError, B24Error) as exc:
            raise CommandError(f"could not connect {info.label}: {_text(exc)}") from None
        if warning:
            raise CommandError(f"{info.label} is connected, but {warning}. Run the same command again to retry.")
        default = " as the default provider" if account.is_default else ""
        self.stdout.write(f"Connected {info.label} for {portal.domain}{default}; "
                          f"callbacks go to {_masked_url(account)}")

    def do_list(self, member_id=None, **_):
        portals = [_portal(member_id, installed=False)] if member_id else \
            Portal.objects.filter(provider_accounts__isnull=False).distinct().order_by("domain")
        shown = 0
        for portal in portals:
            accounts = list(portal.provider_accounts.order_by("provider"))
            self.stdout.write(f"{portal.domain}  member_id={portal.member_id}"
                              f"{'' if portal.is_installed else '  (uninstalled)'}")
            if not accounts:
                self.stdout.write("  no provider connected")
            for account in accounts:
                shown += 1
                self.stdout.write("  " + _summary(account))
                self.stdout.write("    credentials: " + (_masked_credentials(account) or "(none)"))
                self.stdout.write(f"    callbacks:   {_masked_url(account)}")
        if not member_id and not shown:
            self.stdout.write("No provider accounts yet; connect one with `providers connect`.")

    def do_test(self, member_id, provider, **_):
        account = _account(_portal(member_id), provider)
        label = _provider_info(provider).label
        try:
            verdict, ok = account.provider_impl().test_connection(), True
        except (ProviderError, B24Error) as exc:
            verdict, ok = _text(exc), False
        # update(), not save(): the call may have stored refreshed tokens on the account meanwhile
        ProviderAccount.objects.filter(pk=account.pk).update(last_test_at=timezone.now(), last_test_ok=ok,
                                                             last_test_message=verdict[:2000])
        if not ok:
            raise CommandError(f"FAILED: {label} for {account.portal.domain}: {verdict}", returncode=1)
        self.stdout.write(f"OK: {verdict}")

    def do_disconnect(self, member_id, provider, force, **_):
        account = _account(_portal(member_id, installed=False), provider)
        label = _provider_info(provider).label
        still_open = account.requests.open().count()
        if still_open and not force:
            raise CommandError(f"{still_open} open signature request(s) still use {label}; once disconnected they "
                               "can no longer be followed. Cancel them first, or pass --force.")
        if account.requests.exists():  # requests keep their account (history, signed copies): disable it
            account.credentials, account.enabled, account.is_default = {}, False, False
            account.save()
            self.stdout.write(f"Disconnected {label} for {account.portal.domain}: credentials erased, account kept "
                              "(disabled) for the history of its signature requests.")
        else:
            account.delete()
            self.stdout.write(f"Disconnected {label} for {account.portal.domain}.")


# -- helpers -------------------------------------------------------------------------------------------------
def _portal(member_id: str, installed: bool = True) -> Portal:
    portal = Portal.objects.filter(member_id=member_id).first()
    if portal is None:
        raise CommandError(f"no portal with member_id {member_id!r}; `providers list` shows the known ones")
    if installed and not portal.is_installed:
        raise CommandError(f"{portal.domain} has uninstalled b24sign")
    return portal


def _provider_info(code: str):
    providers = all_providers()
    if code not in providers:
        raise CommandError(f"unknown provider {code!r}; choose one of: {', '.join(providers)}")
    return providers[code]


def _account(portal: Portal, code: str) -> ProviderAccount:
    info = _provider_info(code)
    account = ProviderAccount.objects.filter(portal=portal, provider=code).first()
    if account is None:
        raise CommandError(f"{info.label} is not connected for {portal.domain}")
    return account


def _credentials(cls, label: str, pairs: list[str]) -> dict:
    fields = {f.name: f for f in cls.credential_fields}
    expected = ", ".join(f"{f.name} ({f.label}{'' if f.required else ', optional'})" for f in fields.values())
    given = {}
    for n, pair in enumerate(pairs, start=1):
        key, sep, value = pair.partition("=")
        if not sep or not key:  # never echo the argument: it may be a mistyped secret
            raise CommandError(f"credential #{n} is not key=value; {label} takes: {expected or 'nothing'}")
        if key not in fields:
            raise CommandError(f"{label} takes no credential {key!r}; it takes: {expected or 'nothing'}")
        given[key] = getpass(f"{fields[key].label}: ") if value == "-" else value
    missing = [f for f in fields.values() if f.required and not str(given.get(f.name, "")).strip()]
    if missing:
        raise CommandError(f"{label} needs " + ", ".join(f"{f.name} ({f.label})" for f in missing))
    return given


def _text(exc) -> str:
    if isinstance(exc, B24Error):
        return f"Bitrix24: {exc.description or exc.error}"
    return exc.message


def mask(value) -> str:
    return mask_secret(value) or "****"


def _masked_credentials(account: ProviderAccount) -> str:
    try:
        declared = provider_class(account.provider).credential_fields
    except (KeyError, ImportError):
        declared = []
    public = {f.name for f in declared if not f.secret}
    shown = []
    for key, value in sorted((account.credentials or {}).items()):
        plain = key in public or (isinstance(value, (int, float)) and not isinstance(value, bool))
        shown.append(f"{key}={value if plain else mask(value)}")
    return "  ".join(shown)


def _masked_url(account: ProviderAccount) -> str:
    return account.webhook_url().replace(account.webhook_secret, mask(account.webhook_secret))


def _summary(account: ProviderAccount) -> str:
    info = all_providers().get(account.provider)
    flags = [("default" if account.is_default else ""), ("enabled" if account.enabled else "disabled")]
    if account.last_test_at:
        verdict = "OK" if account.last_test_ok else "FAILED"
        when = f"{account.last_test_at:%Y-%m-%d %H:%M} UTC"
        flags.append(f"last test {verdict} {when}: {account.last_test_message[:120]}")
    else:
        flags.append("never tested")
    name = f"{account.provider} ({info.label if info else 'unknown provider'})"
    if account.label:
        name += f" \"{account.label}\""
    return f"{name}  " + ", ".join(f for f in flags if f)
