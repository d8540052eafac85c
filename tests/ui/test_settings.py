"""Settings: providers, Bitrix24 Sign (KEDO), defaults and robots; only admins change anything."""
from __future__ import annotations

import base64

import pytest

from bizproc_ext.models import RobotRegistration
from bizproc_ext.robots import CATALOGUE_VERSION
from signing.models import PortalSettings, ProviderAccount
from tests.emulators.signnow import SignNowEmulator

BASIC = base64.b64encode(b"client:secret").decode()
OWNER = "owner@acme.test"


@pytest.fixture
def signnow(settings):
    emulator = SignNowEmulator(basic_token=BASIC, users={OWNER: "correct horse battery"}).start()
    emulator.webhook_sender = lambda url, body, headers: 200
    settings.SIGNNOW_API_BASE = emulator.base_url
    settings.SIGNNOW_RATE_PER_S = 0
    yield emulator
    emulator.stop()


def connect_signnow(client, token, password="correct horse battery"):
    return client.post("/app/settings/providers/signnow/connect/", {
        "t": token, "signnow-basic_token": BASIC, "signnow-username": OWNER, "signnow-password": password})


def test_admin_connects_signnow_and_never_sees_the_secrets_again(client, portal_a, signnow, admin_token):
    response = connect_signnow(client, admin_token)
    assert response.status_code == 200, response.content[:500]
    assert b"signNow is connected." in response.content
    account = ProviderAccount.objects.get(portal=portal_a.db, provider="signnow")
    assert account.enabled and account.is_default
    assert account.credentials["password"] == "correct horse battery"  # decrypted on access
    page = client.get(f"/app/settings/?t={admin_token}").content.decode()
    assert "correct horse battery" not in page and BASIC not in page
    assert account.credentials["access_token"] not in page
    assert "••••••••" in page and OWNER in page  # the login is not a secret


def test_a_blank_secret_keeps_the_stored_one(client, portal_a, signnow, admin_token):
    connect_signnow(client, admin_token)
    response = client.post("/app/settings/providers/signnow/connect/", {
        "t": admin_token, "signnow-basic_token": "", "signnow-username": OWNER, "signnow-password": ""})
    assert response.status_code == 200 and b"signNow is connected." in response.content
    assert ProviderAccount.objects.get(provider="signnow").credentials["basic_token"] == BASIC


def test_bad_credentials_get_a_clear_answer(client, portal_a, signnow, admin_token):
    response = connect_signnow(client, admin_token, password="wrong")
    assert response.status_code == 400
    assert b"signNow refused the connection" in response.content
    assert not ProviderAccount.objects.filter(provider="signnow").exists()


def test_test_connection_answers_the_xhr_with_a_verdict(client, portal_a, signnow, admin_token):
    connect_signnow(client, admin_token)
    response = client.post("/app/settings/providers/signnow/test/", HTTP_X_B24SIGN_TOKEN=admin_token,
                           HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response.json()["ok"] is True and OWNER in response.json()["message"]
    account = ProviderAccount.objects.get(provider="signnow")
    assert account.last_test_ok is True and account.last_test_at


def test_test_connection_reports_a_failure(client, portal_a, signnow, admin_token):
    connect_signnow(client, admin_token)
    signnow.outage(60, status=503)  # signNow is down
    response = client.post("/app/settings/providers/signnow/test/", HTTP_X_B24SIGN_TOKEN=admin_token,
                           HTTP_ACCEPT="application/json")
    assert response.json()["ok"] is False and response.json()["message"]


def test_disconnect_forgets_the_credentials(client, portal_a, signnow, admin_token):
    connect_signnow(client, admin_token)
    response = client.post("/app/settings/providers/signnow/disconnect/", {"t": admin_token})
    assert b"signNow is disconnected." in response.content
    account = ProviderAccount.objects.get(provider="signnow")
    assert not account.enabled and account.credentials == {} and not account.is_default


def test_default_provider_is_one_of_the_connected(client, portal_a, memory_provider, signnow, admin_token):
    connect_signnow(client, admin_token)
    client.post("/app/settings/providers/memory/connect/", {"t": admin_token})
    assert ProviderAccount.objects.get(provider="signnow").is_default
    response = client.post("/app/settings/default-provider/", {"t": admin_token, "provider": "memory"})
    assert response.status_code == 200
    assert ProviderAccount.objects.get(provider="memory").is_default
    assert not ProviderAccount.objects.get(provider="signnow").is_default
    refused = client.post("/app/settings/default-provider/", {"t": admin_token, "provider": "evia"})
    assert refused.status_code == 400


def test_defaults_are_saved_per_portal(client, portal_a, portal_b, admin_token, b_admin_token):
    response = client.post("/app/settings/defaults/", {
        "t": admin_token, "sender_name": "Alpha Sales", "expiry_days": "14",
        "reminder_days": "2", "attach_signed_copy": ""})
    assert response.status_code == 200
    row = PortalSettings.objects.get(portal=portal_a.db)
    assert (row.sender_name, row.expiry_days, row.reminder_days, row.attach_signed_copy, row.updated_by) == \
        ("Alpha Sales", 14, 2, False, 1)
    assert not PortalSettings.objects.filter(portal=portal_b.db).exists()
    bad = client.post("/app/settings/defaults/", {"t": admin_token, "expiry_days": "0", "reminder_days": "1"})
    assert bad.status_code == 400


def test_the_defaults_offer_no_reply_to_that_no_provider_would_use(client, portal_a, admin_token):
    page = client.get(f"/app/settings/?t={admin_token}").content.decode()
    assert 'name="reply_to"' not in page and "Reply-to" not in page
    client.post("/app/settings/defaults/", {"t": admin_token, "reply_to": "sales@alpha.test", "expiry_days": "14",
                                            "reminder_days": "2"})
    assert PortalSettings.objects.get(portal=portal_a.db).reply_to == ""


def test_kedo_lists_the_companys_signing_providers_and_stores_the_choice(client, portal_a, admin_token):
    sign = portal_a.emu.sign
    extra = sign.add_provider("Goskey", code="goskey")
    page = client.get(f"/app/settings/?t={admin_token}").content.decode()
    assert extra["uid"] in page and sign.providers[0]["uid"] in page
    company_id = portal_a.emu.crm.add_company("Alpha HR LLC", my=True)
    page = client.get(f"/app/settings/?t={admin_token}").content.decode()
    assert f'value="{company_id}"' in page and "Alpha HR LLC" in page
    response = client.post("/app/settings/kedo/", {"t": admin_token, "company_id": company_id,
                                                   "provider_uid": extra["uid"]})
    assert response.status_code == 200, response.content[:800]
    account = ProviderAccount.objects.get(portal=portal_a.db, provider="b24kedo")
    assert account.enabled and account.credentials["provider_uid"] == extra["uid"]
    assert b"Goskey (goskey)" in response.content
    unknown = client.post("/app/settings/kedo/", {"t": admin_token, "provider_uid": "not-a-provider"})
    assert unknown.status_code == 400


def test_robots_show_their_version_and_can_be_registered_again(client, portal_a, admin_token):
    RobotRegistration.objects.filter(portal=portal_a.db, code="b24sign_cancel").delete()
    portal_a.emu.robots.pop("b24sign_cancel", None)
    page = client.get(f"/app/settings/?t={admin_token}").content.decode()
    assert 'data-code="b24sign_cancel" data-state="missing"' in page
    assert 'data-code="b24sign_send" data-state="current"' in page and f"v{CATALOGUE_VERSION}" in page
    response = client.post("/app/settings/robots/", {"t": admin_token})
    assert response.status_code == 200
    assert 'data-code="b24sign_cancel" data-state="current"' in response.content.decode()
    assert "b24sign_cancel" in portal_a.emu.robots


@pytest.mark.parametrize("url,data", [
    ("/app/settings/providers/memory/connect/", {}),
    ("/app/settings/providers/memory/test/", {}),
    ("/app/settings/providers/memory/disconnect/", {}),
    ("/app/settings/default-provider/", {"provider": "memory"}),
    ("/app/settings/kedo/", {}),
    ("/app/settings/defaults/", {"expiry_days": "3", "reminder_days": "1"}),
    ("/app/settings/robots/", {}),
])
def test_a_manager_cannot_change_settings(client, portal_a, memory_account, manager_token, url, data):
    response = client.post(url, {"t": manager_token, **data})
    assert response.status_code == 403
    assert b"only a Bitrix24 administrator" in response.content
    memory_account.refresh_from_db()
    assert memory_account.enabled and memory_account.is_default
    assert not PortalSettings.objects.exists()


def test_the_settings_page_names_a_scope_the_portal_did_not_grant(client, portal_a, admin_token):
    portal = portal_a.db
    portal.scope = "bizproc,crm,user_basic,disk,documentgenerator,placement,sign.b2e"  # as granted at install
    portal.save(update_fields=["scope"])
    page = client.get(f"/app/settings/?t={admin_token}").content.decode()
    assert 'data-scope="humanresources.hcmlink"' in page
    assert "Bitrix24 Sign (HR documents)" in page.split('data-scope="humanresources.hcmlink"')[1].split("</li>")[0]


def test_a_portal_with_every_scope_shows_no_scope_problem(client, portal_a, admin_token):
    assert portal_a.db.missing_scopes({"sign.b2e", "crm", "humanresources.hcmlink", "bizproc"}) == []
    assert 'data-problem="scope"' not in client.get(f"/app/settings/?t={admin_token}").content.decode()
