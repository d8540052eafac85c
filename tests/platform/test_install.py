"""Installing, updating and uninstalling the app, as a portal admin would."""
from urllib.parse import urlencode

import pytest
from django.db import connection

from b24app.models import Portal
from bizproc_ext.models import RobotRegistration
from bizproc_ext.robots import catalogue
from tests.conftest import MANAGER_ID, install


@pytest.mark.django_db
def test_install_stores_encrypted_tokens_and_registers_every_robot(cloud, client):
    emu = cloud.add_portal("alpha")
    response = install(client, emu)

    assert response.status_code == 200
    assert b"BX24.installFinish()" in response.content
    assert response["Content-Security-Policy"] == f"frame-ancestors 'self' https://{emu.domain} http://{emu.domain}"
    portal = Portal.objects.get(member_id=emu.member_id)
    assert portal.domain == emu.domain
    assert portal.application_token_matches(emu.application_token)
    assert portal.access_token and portal.refresh_token
    with connection.cursor() as cur:  # what the database itself holds
        cur.execute("SELECT access_token, refresh_token, app_token_digest FROM b24app_portal WHERE id=%s", [portal.pk])
        raw_access, raw_refresh, digest = cur.fetchone()
    assert portal.access_token not in raw_access and raw_access.startswith("v2.")  # AES-GCM (b24app.crypto)
    assert portal.refresh_token not in raw_refresh
    assert emu.application_token not in digest
    assert set(emu.robots) == set(catalogue())
    assert set(RobotRegistration.objects.filter(portal=portal).values_list("code", flat=True)) == set(catalogue())
    for code, robot in emu.robots.items():
        assert robot["USE_SUBSCRIPTION"] == "Y"
        assert {"status", "error"} <= {k.lower() for k in robot["RETURN_PROPERTIES"]}


@pytest.mark.django_db
def test_reinstall_updates_instead_of_duplicating(cloud, client):
    emu = cloud.add_portal("alpha")
    assert install(client, emu).status_code == 200
    adds_before = emu.stats.by_method.get("bizproc.robot.add", 0)
    assert install(client, emu).status_code == 200

    assert Portal.objects.filter(member_id=emu.member_id).count() == 1
    assert emu.stats.by_method.get("bizproc.robot.add", 0) == adds_before  # second time: updates only
    assert emu.stats.by_method.get("bizproc.robot.update", 0) == len(catalogue())
    bound = [(b["event"], b["handler"]) for b in emu.event_handlers]
    assert len(bound) == len(set(bound))  # events bound once


@pytest.mark.django_db
def test_a_non_admin_cannot_install(cloud, client):
    emu = cloud.add_portal("alpha")
    emu.add_user(MANAGER_ID, "manager@alpha.test")
    response = install(client, emu, user_id=MANAGER_ID)
    assert response.status_code == 403
    assert not Portal.objects.exists()


@pytest.mark.django_db
def test_a_token_of_another_app_or_portal_is_refused(cloud, client, settings):
    emu = cloud.add_portal("alpha")
    other = cloud.add_portal("bravo")
    query, body = emu.install_request()
    body["member_id"] = other.member_id  # claims to be bravo with alpha's token
    response = client.post(f"/b24/install/?{urlencode(query)}", body)
    assert response.status_code == 403
    settings.B24_CLIENT_ID = "someone.else"
    query, body = emu.install_request()
    assert client.post(f"/b24/install/?{urlencode(query)}", body).status_code == 403
    assert not Portal.objects.exists()


@pytest.mark.django_db
def test_an_untrusted_oauth_server_is_refused(cloud, client):
    emu = cloud.add_portal("alpha")
    query, body = emu.install_request()
    body["SERVER_ENDPOINT"] = "https://evil.example/rest/"
    response = client.post(f"/b24/install/?{urlencode(query)}", body)
    assert response.status_code == 403
    assert not Portal.objects.exists()


def _event(client, form_pairs):
    return client.post("/b24/events/", data=urlencode(form_pairs), content_type="application/x-www-form-urlencoded")


@pytest.mark.django_db
def test_onappinstall_event_stores_the_application_token(portal_a):
    Portal.objects.filter(pk=portal_a.db.pk).update(app_token_digest="stale")
    [response] = portal_a.emu.fire_event("ONAPPINSTALL")
    assert response.status_code == 200
    assert portal_a.db.application_token_matches(portal_a.emu.application_token)


@pytest.mark.django_db
def test_onappupdate_rotates_the_token_and_registers_robots_again(portal_a, django_capture_on_commit_callbacks):
    old_token = portal_a.emu.application_token
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        [response] = portal_a.emu.fire_event("ONAPPUPDATE")
    assert response.status_code == 200
    assert portal_a.emu.robots == {}  # Bitrix24 dropped them with the update
    portal = portal_a.db
    assert portal.application_token_matches(portal_a.emu.application_token)
    assert not portal.application_token_matches(old_token)
    from bizproc_ext.tasks import sync_portal_robots

    # Two after-commit tasks: robots again (automation) and the CRM card's placements/triggers (crmcard).
    assert len(callbacks) == 2
    assert portal_a.emu.placements == []  # Bitrix24 dropped the placements with the update too
    sync_portal_robots.apply(args=[portal.pk])  # what the worker runs for the first callback
    assert set(portal_a.emu.robots) == set(catalogue())
    from crmcard.tasks import setup_portal_card

    setup_portal_card.apply(args=[portal.pk])  # and for the second
    assert "CRM_DEAL_DETAIL_TAB" in {b["placement"] for b in portal_a.emu.placements}


@pytest.mark.django_db
def test_forged_or_unknown_uninstall_changes_nothing(portal_a, client):
    pairs = [("event", "ONAPPUNINSTALL"), ("data[CLEAN]", "1"), ("auth[member_id]", portal_a.emu.member_id),
             ("auth[application_token]", "forged-token"), ("auth[domain]", portal_a.emu.domain)]
    assert _event(client, pairs).status_code == 403
    unknown = [(k, "0" * 32 if k == "auth[member_id]" else v) for k, v in pairs]
    assert _event(client, unknown).status_code == 401
    assert _event(client, [("event", "ONAPPUNINSTALL")]).status_code == 401
    assert _event(client, [("event", "ONSOMETHINGELSE")]).status_code in (400, 401)
    portal = portal_a.db
    assert portal.is_installed and portal.access_token


@pytest.mark.django_db
def test_uninstall_with_clean_purges_the_portal_and_reinstall_works(portal_a, client):
    [response] = portal_a.emu.fire_event("ONAPPUNINSTALL", clean=True)
    assert response.status_code == 200
    assert not Portal.objects.filter(member_id=portal_a.emu.member_id).exists()
    assert not RobotRegistration.objects.exists()

    assert install(client, portal_a.emu).status_code == 200
    assert Portal.objects.get(member_id=portal_a.emu.member_id).is_installed


@pytest.mark.django_db
def test_uninstall_without_clean_keeps_data_but_voids_tokens(portal_a):
    [response] = portal_a.emu.fire_event("ONAPPUNINSTALL", clean=False)
    assert response.status_code == 200
    portal = portal_a.db
    assert portal.uninstalled_at is not None
    assert portal.access_token == "" and portal.refresh_token == ""
