"""Issue 11 part A: the attacks of a user who can read APPLICATION_TOKEN, against the real handlers.

Every employee who opens b24sign on a cloud portal can read the application token of its frame POST.
Each test here is one thing such a user (portal A's sales manager, user 2) tried, and shows that it has
no effect while the legitimate flow still works.
"""
from __future__ import annotations

import logging
from urllib.parse import urlencode

import pytest
from django.core.files.base import ContentFile

from b24app.models import Portal
from b24app.rest import B24Client, B24Error
from bizproc_ext.models import RobotRegistration
from bizproc_ext.registration import sync_robots
from bizproc_ext.robots import catalogue
from signing.models import ProviderAccount, SignatureRequest
from tests.conftest import ADMIN_ID, MANAGER_ID, install
from tests.ui.conftest import make_request, open_app, token_of


def _event(client, pairs):
    return client.post("/b24/events/", data=urlencode(pairs), content_type="application/x-www-form-urlencoded")


def _forged_uninstall(emu, clean: bool):
    """What the manager can post: every value is one they can read in their own browser."""
    return [("event", "ONAPPUNINSTALL"), ("data[CLEAN]", "1" if clean else "0"), ("data[LANGUAGE_ID]", "en"),
            ("auth[domain]", emu.domain), ("auth[member_id]", emu.member_id),
            ("auth[application_token]", emu.application_token)]


def _user_event(emu, event: str, user_id: int):
    """ONAPPINSTALL / ONAPPUPDATE as the manager would forge it: their own real tokens, the app token."""
    tok = emu.issue_tokens(user_id)
    auth = {"access_token": tok["access_token"], "refresh_token": tok["refresh_token"], "expires_in": "3600",
            "member_id": emu.member_id, "application_token": emu.application_token, "domain": emu.domain,
            "server_endpoint": emu.cloud.server_endpoint, "client_endpoint": emu.client_endpoint,
            "user_id": str(user_id), "status": "L"}
    return [("event", event), ("data[VERSION]", "1")] + [(f"auth[{k}]", v) for k, v in auth.items()]


def _snapshot(portal):
    p = Portal.objects.get(pk=portal.pk)
    return (p.access_token, p.refresh_token, p.token_user_id, p.app_token_digest, p.uninstalled_at)


# --- 1. frames: the user's own token, never APPLICATION_TOKEN -------------------------------------------
@pytest.mark.django_db
def test_install_page_without_application_token_installs_and_onappinstall_brings_it(cloud, client):
    emu = cloud.add_portal("alpha")
    emu.frame_layout = True  # Bitrix24's app layout: no APPLICATION_TOKEN, SERVER_ENDPOINT, PLACEMENT_OPTIONS
    emu.add_user(MANAGER_ID, "manager@alpha.test")
    query, body = emu.install_request()
    assert not {"APPLICATION_TOKEN", "SERVER_ENDPOINT", "PLACEMENT_OPTIONS"} & set(body)

    response = install(client, emu)

    assert response.status_code == 200, response.content[:300]
    portal = Portal.objects.get(member_id=emu.member_id)
    assert portal.token_user_id == ADMIN_ID and portal.access_token
    assert set(emu.robots) == set(catalogue())
    assert not portal.application_token_matches(emu.application_token)  # not known yet
    [delivered] = emu.fire_event("ONAPPINSTALL")  # auth[application_token] arrives with the event
    assert delivered.status_code == 200
    assert Portal.objects.get(pk=portal.pk).application_token_matches(emu.application_token)
    # and the app opens in the same layout shape, for the admin and the manager alike
    assert open_app(client, emu, ADMIN_ID)["Location"].startswith("/app/settings/?t=")
    assert open_app(client, emu, MANAGER_ID)["Location"].startswith("/app/requests/?t=")


@pytest.mark.django_db
def test_the_application_token_alone_opens_no_frame(client, portal_a):
    _, body = portal_a.emu.app_page_request(MANAGER_ID)
    without_user = {k: v for k, v in body.items() if k not in ("AUTH_ID", "REFRESH_ID")}
    assert client.post("/app/", without_user).status_code == 401
    placement = client.post("/bizproc/settings/b24sign_send/", without_user)
    assert placement.status_code == 401
    forged = {**body, "AUTH_ID": "0" * 70}
    assert client.post("/bizproc/settings/b24sign_send/", forged).status_code == 403


@pytest.mark.django_db
def test_robot_settings_placement_opens_without_application_token(client, portal_a, memory_account):
    _, body = portal_a.emu.app_page_request(MANAGER_ID, placement="BIZPROC_ACTIVITY_PROPERTIES_DIALOG",
                                            options={"code": "b24sign_send", "current_values": {}}, layout=True)
    assert "APPLICATION_TOKEN" not in body
    response = client.post("/bizproc/settings/b24sign_send/?LANG=en", body)
    assert response.status_code == 200
    assert b"setPropertyValue" in response.content


# --- 2. only an administrator's verified token is ever stored -------------------------------------------
@pytest.mark.django_db
def test_a_manager_posting_the_install_page_replaces_no_token(client, portal_a):
    before = _snapshot(portal_a.db)
    query, body = portal_a.emu.app_page_request(MANAGER_ID)  # own AUTH_ID/REFRESH_ID + the app token
    response = client.post(f"/b24/install/?{urlencode(query)}", body)
    assert response.status_code == 403
    assert _snapshot(portal_a.db) == before
    assert portal_a.db.token_user_id == ADMIN_ID
    assert B24Client(portal_a.db).call("user.admin") is True  # the app still acts with the admin's token


@pytest.mark.django_db
@pytest.mark.parametrize("event", ["ONAPPINSTALL", "ONAPPUPDATE"])
def test_a_managers_forged_app_event_replaces_no_token(client, portal_a, event):
    before = _snapshot(portal_a.db)
    response = _event(client, _user_event(portal_a.emu, event, MANAGER_ID))
    assert response.status_code == 403
    assert _snapshot(portal_a.db) == before
    # the same event with an administrator's token is applied
    assert _event(client, _user_event(portal_a.emu, event, ADMIN_ID)).status_code == 200


@pytest.mark.django_db
def test_a_demoted_token_user_stops_admin_methods_until_an_admin_opens_the_app(client, portal_a):
    emu = portal_a.emu
    emu.add_user(3, "second.admin@alpha.test", name="Second", admin=True)
    emu.users[ADMIN_ID]["ADMIN"] = False  # the installing admin lost the rights
    manager = token_of(open_app(client, emu, MANAGER_ID))

    page = client.get(f"/app/settings/?t={manager}")
    assert b'id="token-admin-lost"' in page.content
    robot_calls = sum(n for m, n in emu.stats.by_method.items() if m.startswith("bizproc.robot."))
    with pytest.raises(B24Error) as exc:
        sync_robots(portal_a.db)
    assert exc.value.error == "ADMIN_TOKEN_REQUIRED"
    assert sum(n for m, n in emu.stats.by_method.items() if m.startswith("bizproc.robot.")) == robot_calls

    open_app(client, emu, 3)  # an administrator opens the app once
    portal = portal_a.db
    assert portal.token_user_id == 3 and portal.token_admin_lost_at is None
    assert b'id="token-admin-lost"' not in client.get(f"/app/settings/?t={manager}").content
    assert set(sync_robots(portal)) == set(catalogue())


# --- 3. ONAPPUNINSTALL is confirmed before anything is deleted ------------------------------------------
@pytest.fixture
def portal_with_data(portal_a, memory_account, pdf_bytes):
    req = make_request(portal_a.db, memory_account, title="Alpha contract", status="completed")
    req.signed_file.save(f"{req.public_id}.pdf", ContentFile(pdf_bytes), save=True)
    return req


@pytest.mark.django_db
@pytest.mark.parametrize("clean", [False, True])
def test_a_managers_forged_uninstall_changes_nothing(client, portal_a, portal_with_data, clean, caplog):
    before = _snapshot(portal_a.db)
    with caplog.at_level(logging.WARNING, logger="b24sign.lifecycle"):
        response = _event(client, _forged_uninstall(portal_a.emu, clean))
    assert response.status_code == 403
    assert "forged ONAPPUNINSTALL" in caplog.text
    assert _snapshot(portal_a.db) == before
    assert SignatureRequest.objects.filter(pk=portal_with_data.pk).exists()
    assert ProviderAccount.objects.filter(portal=portal_a.db).exists()
    assert RobotRegistration.objects.filter(portal=portal_a.db).count() == len(catalogue())
    assert B24Client(portal_a.db).call("user.admin") is True


@pytest.mark.django_db
def test_a_forged_uninstall_with_an_expired_stored_token_keeps_the_refreshed_pair(client, portal_a):
    portal_a.emu.expire_access_tokens()
    version = portal_a.db.token_version
    response = _event(client, _forged_uninstall(portal_a.emu, clean=True))
    assert response.status_code == 403
    portal = portal_a.db
    assert portal.is_installed and portal.token_version == version + 1  # the single-use refresh was kept
    assert B24Client(portal).call("user.admin") is True


@pytest.mark.django_db
def test_a_real_uninstall_with_clean_purges_requests_files_and_accounts(client, portal_a, portal_with_data,
                                                                        django_capture_on_commit_callbacks):
    storage = portal_with_data.signed_file.storage
    name = portal_with_data.signed_file.name
    assert storage.exists(name)
    link = client.get(f"/app/requests/{portal_with_data.public_id}/signed.pdf",
                      {"t": token_of(open_app(client, portal_a.emu, ADMIN_ID))})
    assert link.status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        [response] = portal_a.emu.fire_event("ONAPPUNINSTALL", clean=True)

    assert response.status_code == 200 and response.json() == {"status": "purged"}
    assert not Portal.objects.filter(member_id=portal_a.emu.member_id).exists()
    assert not SignatureRequest.objects.exists() and not ProviderAccount.objects.exists()
    assert not storage.exists(name)


def test_the_dev_servers_request_line_never_shows_a_webhook_secret_or_page_token(caplog):
    with caplog.at_level(logging.INFO, logger="django.server"):
        logging.getLogger("django.server").info('"%s" %s %s', "POST /signing/webhooks/evia/s3cr3t-Path-Part/ HTTP/1.1",
                                                 403, 20)
        logging.getLogger("django.server").info('"%s" %s %s', "GET /app/requests/?t=signed.page.token&x=1 HTTP/1.1",
                                                 200, 20)
    assert "s3cr3t-Path-Part" not in caplog.text and "signed.page.token" not in caplog.text
    assert "/signing/webhooks/evia/***/" in caplog.text and "?t=***&x=1" in caplog.text
