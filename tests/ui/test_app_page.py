"""/app/: who may open the app page, and what the page token lets them do (personas from tests/conftest.py)."""
from __future__ import annotations

from urllib.parse import urlencode

from django.core import signing

from b24app.frames import SALT
from tests.conftest import ADMIN_ID, MANAGER_ID

from .conftest import make_request, open_app, token_of


def test_it_lets_portal_as_admin_in_and_sends_them_to_settings_first(client, portal_a):
    response = open_app(client, portal_a.emu, ADMIN_ID)
    assert response.status_code == 303
    assert response["Location"].startswith("/app/settings/?t=")
    assert f"http://{portal_a.emu.domain}" in response["Content-Security-Policy"]
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert page["Content-Security-Policy"] == f"frame-ancestors 'self' https://{portal_a.emu.domain} " \
                                              f"http://{portal_a.emu.domain}"
    assert "X-Frame-Options" not in page
    assert b'id="connect-memory"' in page.content or b'id="connect-signnow"' in page.content
    assert b"readonly-note" not in page.content


def test_it_sends_the_manager_to_a_read_only_dashboard(client, portal_a):
    response = open_app(client, portal_a.emu, MANAGER_ID)
    assert response["Location"].startswith("/app/requests/?t=")
    data = signing.loads(token_of(response), salt=SALT)
    assert data["u"] == MANAGER_ID and data["a"] is False
    settings_page = client.get(f"/app/settings/?t={token_of(response)}")
    assert settings_page.status_code == 200 and b"readonly-note" in settings_page.content


def test_it_checks_admin_rights_on_the_server_not_from_the_form(client, portal_a):
    # The page POST has no admin flag anyone could set; user.admin on the portal decides.
    response = open_app(client, portal_a.emu, MANAGER_ID, body_overrides={"IS_ADMIN": "Y", "admin": "1"})
    assert signing.loads(token_of(response), salt=SALT)["a"] is False


def test_it_refuses_a_forged_auth_id(client, portal_a):
    response = open_app(client, portal_a.emu, ADMIN_ID, body_overrides={"AUTH_ID": "f" * 32})
    assert response.status_code == 403
    assert b"not valid for this portal" in response.content
    assert response["X-Frame-Options"] == "DENY"


def test_it_refuses_another_portals_auth(client, portal_a, portal_b):
    # Portal B's real admin token presented with portal A's member_id and application token.
    _, b_body = portal_b.emu.app_page_request(ADMIN_ID)
    response = open_app(client, portal_a.emu, ADMIN_ID, body_overrides={"AUTH_ID": b_body["AUTH_ID"]})
    assert response.status_code == 403


def test_it_refuses_a_forged_application_token(client, portal_a):
    response = open_app(client, portal_a.emu, ADMIN_ID, body_overrides={"APPLICATION_TOKEN": "0" * 32})
    assert response.status_code == 403


def test_it_refuses_an_unknown_portal(client, portal_a):
    response = open_app(client, portal_a.emu, ADMIN_ID, body_overrides={"member_id": "nope"})
    assert response.status_code == 401


def test_it_does_not_trust_the_domain_in_the_query(client, portal_a, portal_b):
    query, body = portal_a.emu.app_page_request(ADMIN_ID)
    query["DOMAIN"] = portal_b.emu.domain
    response = client.post(f"/app/?{urlencode(query)}", body)
    assert portal_b.emu.domain not in response["Content-Security-Policy"]


def test_pages_need_a_valid_token(client, portal_a, admin_token):
    assert client.get("/app/requests/").status_code == 401
    assert client.get("/app/requests/?t=garbage").status_code == 403
    forged = signing.dumps({"p": portal_a.db.pk, "u": 1, "a": True, "l": "en", "v": "x"}, salt="other")
    assert client.get(f"/app/requests/?t={forged}").status_code == 403
    assert client.get(f"/app/requests/?t={admin_token}").status_code == 200
    assert client.get("/app/requests/", HTTP_X_B24SIGN_TOKEN=admin_token).status_code == 200


def test_a_token_expires_after_an_hour(client, portal_a, admin_token, monkeypatch):
    import time

    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3601)
    response = client.get(f"/app/requests/?t={admin_token}")
    assert response.status_code == 401 and b"expired" in response.content
    # The portal may still frame the "reopen the app" message (a blank frame would explain nothing).
    assert portal_a.emu.domain in response["Content-Security-Policy"]


def test_a_token_dies_with_the_installation(client, portal_a, admin_token):
    portal = portal_a.db
    portal.set_application_token("a-new-install")
    portal.save()
    assert client.get(f"/app/requests/?t={admin_token}").status_code == 403


def test_portal_b_cannot_see_or_touch_portal_as_requests(client, portal_a, memory_account, admin_token,
                                                         b_admin_token):
    req = make_request(portal_a.db, memory_account, title="Alpha secret contract")
    assert b"Alpha secret contract" in client.get(f"/app/requests/?t={admin_token}").content
    assert b"Alpha secret contract" not in client.get(f"/app/requests/?t={b_admin_token}").content
    assert client.get(f"/app/requests/{req.public_id}/?t={b_admin_token}").status_code == 404
    assert client.post(f"/app/requests/{req.public_id}/cancel/", {"t": b_admin_token}).status_code == 404
    assert client.get(f"/app/requests/{req.public_id}/signed.pdf?t={b_admin_token}").status_code == 404
    req.refresh_from_db()
    assert req.status == "sent"


def test_it_speaks_the_portal_users_language(client, portal_a):
    response = open_app(client, portal_a.emu, MANAGER_ID, lang="ru")
    page = client.get(response["Location"])
    assert page["Content-Language"] == "ru"
    assert "Запросы на подпись".encode() in page.content
    en = client.get(open_app(client, portal_a.emu, MANAGER_ID, lang="de")["Location"])
    assert b"Signature requests" in en.content
