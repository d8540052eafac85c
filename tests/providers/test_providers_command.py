"""``manage.py providers``: the scripted setup portal A's admin (or support) runs instead of clicking.

Personas: portal A's admin connects signNow (owner@acme.test) and Bitrix24 Sign; portal B stays out of it.
"""
import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from signing.models import ProviderAccount, SignatureRequest
from tests.providers.flows import SIGNNOW_BASIC, SIGNNOW_LOGIN, SIGNNOW_OWNER, Courier, signnow_emulator


@pytest.fixture
def signnow(settings, client):
    with signnow_emulator(settings, Courier(client)) as emu:
        yield emu


def providers(*args) -> str:
    out = io.StringIO()
    call_command("providers", *args, stdout=out)
    return out.getvalue()


def member(portal) -> str:
    return portal.emu.member_id


# -- connect ----------------------------------------------------------------------------------------------------
def test_connect_checks_stores_encrypted_and_subscribes_to_callbacks(portal_a, signnow):
    out = providers("connect", member(portal_a), "signnow", *SIGNNOW_LOGIN, "--default")
    assert f"Connected signNow for {portal_a.emu.domain} as the default provider" in out
    account = ProviderAccount.objects.get(portal=portal_a.db, provider="signnow")
    assert account.is_default and account.enabled
    assert account.credentials["access_token"] in signnow.tokens  # the password grant ran
    assert account.webhook_secret not in out
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM signing_provideraccount WHERE id = %s", [account.pk])
        raw = str(cursor.fetchone()[0])
    assert SIGNNOW_OWNER not in raw and account.credentials["access_token"] not in raw  # encrypted at rest
    assert {s["json_attributes"]["callback_url"] for s in signnow.subscriptions.values()} == {account.webhook_url()}


def test_connecting_again_updates_the_account_and_default_moves(portal_a, memory_provider, signnow):
    providers("connect", member(portal_a), "memory", "--default")
    providers("connect", member(portal_a), "signnow", *SIGNNOW_LOGIN, "--default")
    providers("connect", member(portal_a), "signnow", *SIGNNOW_LOGIN)
    accounts = {a.provider: a for a in ProviderAccount.objects.filter(portal=portal_a.db)}
    assert sorted(accounts) == ["memory", "signnow"]
    assert accounts["signnow"].is_default and not accounts["memory"].is_default
    assert len(signnow.subscriptions) == 5  # replaced, not doubled


def test_a_dash_asks_for_the_secret_instead_of_taking_it_from_the_command_line(portal_a, signnow, monkeypatch):
    monkeypatch.setattr("signing.management.commands.providers.getpass", lambda prompt: "pw")
    providers("connect", member(portal_a), "signnow", f"basic_token={SIGNNOW_BASIC}", f"username={SIGNNOW_OWNER}",
              "password=-")
    assert ProviderAccount.objects.get(provider="signnow").credentials["password"] == "pw"


@pytest.mark.parametrize("args,message", [
    (["nobody", "signnow"], "no portal with member_id 'nobody'"),
    (["{member}", "docusign"], "unknown provider 'docusign'; choose one of: signnow, evia, b24kedo"),
    (["{member}", "signnow", "username=a@b.test"], "signNow needs basic_token (Basic authorization token), "
                                                   "password (signNow password)"),
    (["{member}", "signnow", "user=a@b.test"], "signNow takes no credential 'user'; it takes: basic_token"),
    (["{member}", "signnow", "hunter2"], "credential #1 is not key=value"),
    (["{member}", "evia", "client_id=x", "client_secret=y"], "could not connect Evia Sign: Evia Sign: connect with "
                                                             "an authorization code"),
])
def test_mistakes_get_a_clear_error_and_store_nothing(portal_a, signnow, args, message):
    with pytest.raises(CommandError) as exc:
        providers("connect", *[a.format(member=member(portal_a)) for a in args])
    assert message in str(exc.value)
    assert "hunter2" not in str(exc.value)
    assert not ProviderAccount.objects.exists() and not signnow.calls


def test_rejected_credentials_are_explained_and_not_stored(portal_a, signnow):
    with pytest.raises(CommandError, match="could not connect signNow: .*username or password was rejected"):
        providers("connect", member(portal_a), "signnow", f"basic_token={SIGNNOW_BASIC}",
                  f"username={SIGNNOW_OWNER}", "password=wrong")
    assert not ProviderAccount.objects.exists()


def test_bitrix24_sign_connects_with_the_portal_itself_and_checks_the_provider(portal_a):
    with pytest.raises(CommandError, match="not available for the company"):
        providers("connect", member(portal_a), "b24kedo", "provider_uid=nope")
    assert "Connected Bitrix24 Sign" in providers("connect", member(portal_a), "b24kedo")
    assert "OK: Bitrix24 Sign is available: 1 signing provider(s)" in providers("test", member(portal_a), "b24kedo")


# -- list -------------------------------------------------------------------------------------------------------
def test_list_shows_accounts_with_their_secrets_masked(portal_a, portal_b, signnow):
    providers("connect", member(portal_a), "signnow", *SIGNNOW_LOGIN, "--default")
    account = ProviderAccount.objects.get()
    out = providers("list")
    assert f"{portal_a.emu.domain}  member_id={member(portal_a)}" in out and portal_b.emu.domain not in out
    assert "signnow (signNow)  default, enabled, last test OK" in out  # connecting checks the credentials
    assert f"username={SIGNNOW_OWNER}" in out and "password=****" in out
    creds = account.credentials
    for secret in (SIGNNOW_BASIC, creds["access_token"], creds["refresh_token"], creds["webhook_hmac_secret"],
                   account.webhook_secret):
        assert secret not in out
    assert f"access_token=****{creds['access_token'][-4:]}" in out
    assert providers("list", member(portal_b)).endswith("no provider connected\n")


# -- test -------------------------------------------------------------------------------------------------------
def test_test_makes_a_real_call_and_records_the_verdict(portal_a, signnow):
    providers("connect", member(portal_a), "signnow", *SIGNNOW_LOGIN)
    calls = len(signnow.calls_to("GET", "^/user$"))
    assert providers("test", member(portal_a), "signnow").startswith("OK: Connected to signNow as owner@acme.test")
    assert len(signnow.calls_to("GET", "^/user$")) == calls + 1
    account = ProviderAccount.objects.get()
    assert account.last_test_ok and "owner@acme.test" in account.last_test_message
    assert "last test OK" in providers("list", member(portal_a))


def test_a_failed_test_says_why_and_exits_with_1(portal_a, signnow, capsys, monkeypatch):
    """As run from a shell: one line on stderr, exit code 1, no traceback."""
    from django.db import connections

    from signing.management.commands.providers import Command

    monkeypatch.setattr(connections, "close_all", lambda: None)  # keep the test's database connection
    providers("connect", member(portal_a), "signnow", *SIGNNOW_LOGIN)
    signnow.fail_next(1, status=503)
    with pytest.raises(SystemExit) as exit_:
        Command().run_from_argv(["manage.py", "providers", "test", member(portal_a), "signnow"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert f"FAILED: signNow for {portal_a.emu.domain}: signNow answered HTTP 503" in err
    assert "Traceback" not in err
    assert ProviderAccount.objects.get().last_test_ok is False


def test_test_needs_a_connected_account(portal_a):
    with pytest.raises(CommandError) as exc:
        providers("test", member(portal_a), "signnow")
    assert str(exc.value) == f"signNow is not connected for {portal_a.emu.domain}"


# -- disconnect -------------------------------------------------------------------------------------------------
def test_disconnect_removes_an_unused_account(portal_a, memory_provider):
    providers("connect", member(portal_a), "memory")
    assert "Disconnected In-memory test provider" in providers("disconnect", member(portal_a), "memory")
    assert not ProviderAccount.objects.exists()


def test_disconnect_keeps_history_and_refuses_while_requests_are_open(portal_a, memory_provider):
    providers("connect", member(portal_a), "memory", "--default")
    account = ProviderAccount.objects.get()
    account.credentials = {"api_key": "k" * 20}
    account.save()
    SignatureRequest.objects.create(portal=account.portal, account=account, provider="memory", status="sent")
    with pytest.raises(CommandError, match="1 open signature request"):
        providers("disconnect", member(portal_a), "memory")

    assert "account kept (disabled)" in providers("disconnect", member(portal_a), "memory", "--force")
    account.refresh_from_db()
    assert account.credentials == {} and not account.enabled and not account.is_default
    assert SignatureRequest.objects.get().account == account
