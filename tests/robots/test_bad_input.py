"""Bad input never loses or silently drops a robot call (issue 11, item 7), on PostgreSQL.

Each shape the review found is either refused with a 4xx before anything is stored, or stored
sanitized and answered; only a second delivery of the same (portal, event_token) is a "duplicate".
"""
from urllib.parse import urlencode

import pytest

from bizproc_ext.models import RobotCall
from tests.robots.helpers import SEND_PROPS, deal_doc, run_worker

URL = "/bizproc/robots/b24sign_send/"


def _post(client, pairs, **extra):
    return client.post(URL, urlencode(pairs), content_type="application/x-www-form-urlencoded", **extra)


def _call(portal_a, deal, **props):
    return portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties={**SEND_PROPS, **props},
                                    deliver=False)


def _replace(pairs, key, value):
    return [(k, value if k == key else v) for k, v in pairs]


@pytest.mark.django_db
def test_nul_bytes_are_stripped_and_the_call_is_answered(client, portal_a, memory_account, memory_provider, deal):
    wf = _call(portal_a, deal, subject="Please\x00 sign")
    pairs = wf.pairs + [("properties[message\x00]", "hel\x00lo\x00"), ("workflow_id\x00", "x")]
    response = _post(client, pairs)
    assert response.status_code == 200 and response.json()["status"] == "queued"
    call = RobotCall.objects.get()
    assert call.properties["subject"] == "Please sign"
    assert call.properties["message"] == "hello"
    run_worker()
    assert len(wf.answers) == 1 and wf.return_values["status"] == "sent"
    assert memory_provider.sends == 1


@pytest.mark.django_db
@pytest.mark.parametrize("user_id", ["3000000000", "-1", "0", "99999999999999999999999", "1e9", "abc"])
def test_out_of_range_user_id_is_stored_without_it_not_dropped_as_duplicate(client, portal_a, deal, user_id):
    wf = _call(portal_a, deal)
    response = _post(client, _replace(wf.pairs, "auth[user_id]", user_id))
    assert response.status_code == 200 and response.json()["status"] == "queued"
    call = RobotCall.objects.get()
    assert call.event_token == wf.event_token and call.auth_user_id is None


@pytest.mark.django_db
def test_huge_timeout_duration_is_clamped_and_stored(client, portal_a, deal):
    wf = _call(portal_a, deal)
    response = _post(client, _replace(wf.pairs, "timeout_duration", "3000000000"))
    assert response.status_code == 200 and response.json()["status"] == "queued"
    assert RobotCall.objects.get().timeout_duration == 2**31 - 1


@pytest.mark.django_db
def test_only_the_same_event_token_is_a_duplicate(client, portal_a, deal):
    wf = _call(portal_a, deal)
    assert _post(client, wf.pairs).json()["status"] == "queued"
    assert _post(client, wf.pairs).json()["status"] == "duplicate"
    other = _call(portal_a, deal)
    assert _post(client, _replace(other.pairs, "auth[user_id]", "-1")).json()["status"] == "queued"
    assert RobotCall.objects.count() == 2


@pytest.mark.django_db
def test_3000_deep_nesting_is_refused_before_authentication(client, portal_a, deal):
    deep = "document_id[0]" + "[a]" * 3000
    response = _post(client, [(deep, "x"), ("code", "b24sign_send")])
    assert response.status_code == 400
    wf = _call(portal_a, deal)
    assert _post(client, wf.pairs + [(deep, "x")]).status_code == 400
    assert not RobotCall.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("pairs", [
    [("event", "ONAPPINSTALL"), ("auth", "x")],
    [("event", "ONAPPUPDATE"), ("auth", "x")],
    [("event", "ONAPPUNINSTALL"), ("auth", "x")],
    [("event", "ONAPPINSTALL"), ("auth[expires_in]", "abc"), ("auth[access_token]", "t"),
     ("auth[member_id]", "m"), ("auth[application_token]", "a")],
    [("event", "ONAPPUPDATE"), ("auth[expires_in]", "abc")],
    [("event", "ONAPPINSTALL"), ("auth" + "[a]" * 3000, "x")],
])
def test_app_events_with_a_malformed_auth_get_a_4xx(client, portal_a, pairs):
    response = client.post("/b24/events/", urlencode(pairs), content_type="application/x-www-form-urlencoded")
    assert 400 <= response.status_code < 500
    portal_a.db.refresh_from_db()
    assert portal_a.db.is_installed and portal_a.db.access_token


@pytest.mark.django_db
@pytest.mark.parametrize("url", [URL, "/b24/events/", "/b24/install/"])
@pytest.mark.parametrize("length", ["abc", "-5", "1e3", " "])
def test_non_numeric_content_length_is_a_400(client, portal_a, deal, url, length):
    wf = _call(portal_a, deal)
    response = client.post(url, urlencode(wf.pairs), content_type="application/x-www-form-urlencoded",
                           CONTENT_LENGTH=length)
    assert response.status_code == 400
    assert not RobotCall.objects.exists()
