"""The robot handler: what it records, what it refuses, and that it never answers 500."""
import threading
from urllib.parse import urlencode

import pytest

from bizproc_ext.models import RobotCall
from bizproc_ext.robots import catalogue
from tests.robots.helpers import SEND_PROPS, deal_doc

URL = "/bizproc/robots/b24sign_send/"


def _post(client, pairs, **extra):
    return client.post(URL, urlencode(pairs), content_type="application/x-www-form-urlencoded", **extra)


@pytest.mark.django_db
def test_a_call_in_bitrix24_format_is_recorded_with_typed_properties(portal_a, deal, django_capture_on_commit_callbacks):
    props = {**SEND_PROPS, "signer_users": ["user_2", "7"], "signer_emails": ["a@x.test"], "expiry_days": "10",
             "wait": "Y"}
    with django_capture_on_commit_callbacks() as published:
        wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=props)
    assert wf.response_status == 200
    call = RobotCall.objects.get()
    assert call.portal.member_id == portal_a.emu.member_id
    assert call.event_token == wf.event_token and call.workflow_id == wf.workflow_id
    assert call.document_id == ["crm", "CCrmDocumentDeal", f"DEAL_{deal}"]
    assert call.properties["signer_users"] == [2, 7]
    assert call.properties["expiry_days"] == 10 and call.properties["wait"] is True
    assert call.input_errors == []
    # The handler only records: the row is the outbox and the drainer publishes it (bizproc_ext/drainer.py).
    assert published == [] and call.published_at is None


@pytest.mark.django_db
def test_duplicate_delivery_is_absorbed(portal_a, deal):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    for _ in range(4):
        response = portal_a.emu.post_robot_call(wf)
        assert response.status_code == 200 and b"duplicate" in response.content
    assert RobotCall.objects.count() == 1


@pytest.mark.django_db
def test_forged_application_token_is_refused(portal_a, deal):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS, deliver=False)
    forged = [(k, "f" * 32 if k == "auth[application_token]" else v) for k, v in wf.pairs]
    response = portal_a.emu.post_robot_call(wf, forged)
    assert response.status_code == 403
    assert not RobotCall.objects.exists()


@pytest.mark.django_db
def test_unknown_member_id_is_refused(portal_a, deal):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS, deliver=False)
    unknown = [(k, "0" * 32 if k == "auth[member_id]" else v) for k, v in wf.pairs]
    assert portal_a.emu.post_robot_call(wf, unknown).status_code == 401
    assert not RobotCall.objects.exists()


@pytest.mark.django_db
def test_another_portals_token_cannot_post_for_this_portal(portal_a, portal_b, deal):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS, deliver=False)
    crossed = [(k, portal_b.emu.application_token if k == "auth[application_token]" else v) for k, v in wf.pairs]
    assert portal_a.emu.post_robot_call(wf, crossed).status_code == 403
    assert not RobotCall.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("body", [
    "", "garbage", "code=b24sign_send", "workflow_id=1&code=b24sign_send&event_token=x",
    "workflow_id=1&code=b24sign_status&event_token=x&document_id[0]=crm&document_id[1]=D&document_id[2]=DEAL_1",
    "workflow_id=1&code=b24sign_send&event_token=x&document_id=DEAL_1&auth[member_id]=m",
    "%%%=%%%&auth[[]]=1&properties[a][b][c]=1",
])
def test_malformed_bodies_get_a_clear_4xx(portal_a, client, body):
    response = client.post(URL, body, content_type="application/x-www-form-urlencoded")
    assert 400 <= response.status_code < 500
    assert response.json()["error"]
    assert not RobotCall.objects.exists()


@pytest.mark.django_db
def test_a_10_mb_body_is_refused_without_500(portal_a, client):
    body = "workflow_id=1&code=b24sign_send&properties[message]=" + "x" * (10 * 1024 * 1024)
    response = client.post(URL, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413
    assert not RobotCall.objects.exists()


@pytest.mark.django_db
def test_unknown_robot_code_is_404(portal_a, client):
    assert client.post("/bizproc/robots/nope/", "a=1", content_type="application/x-www-form-urlencoded").status_code == 404


@pytest.mark.django_db
def test_missing_access_token_in_auth_is_accepted(portal_a, deal):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS,
                                  send_access_token=False, send_refresh_token=False, document_type=False)
    assert wf.response_status == 200
    assert RobotCall.objects.get().auth_user_id == 1


@pytest.mark.django_db
def test_registration_payloads_follow_the_documented_rules(portal_a):
    import re

    for code, robot in catalogue().items():
        payload = robot.payload("en", 1)
        assert re.fullmatch(r"[a-zA-Z0-9._-]+", payload["CODE"])
        assert payload["USE_SUBSCRIPTION"] == "Y"
        assert payload["HANDLER"].startswith("http") and code in payload["HANDLER"]
        for key, prop in {**payload.get("PROPERTIES", {}), **payload["RETURN_PROPERTIES"]}.items():
            assert re.fullmatch(r"[a-z][a-z0-9_]*", key), key
            assert prop["Name"]["en"] and prop["Name"]["ru"] and prop["Name"]["de"]
        assert {"status", "error"} <= set(payload["RETURN_PROPERTIES"])
        assert payload.get("PROPERTIES") != {}
        if payload["USE_PLACEMENT"] == "Y":
            assert payload["PLACEMENT_HANDLER"]
    assert set(portal_a.emu.robots) == set(catalogue())  # and the emulated portal accepted them


@pytest.mark.django_db(transaction=True)
def test_five_concurrent_duplicate_deliveries_record_one_call(live_portal_a, pdf_bytes):
    emu = live_portal_a.emu
    deal = emu.crm.add_deal("D", files={"ufCrmContract": ("c.pdf", pdf_bytes)})
    wf = emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS, deliver=False)
    statuses = []
    threads = [threading.Thread(target=lambda: statuses.append(emu.post_robot_call(wf).status_code)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert statuses == [200] * 5
    assert RobotCall.objects.count() == 1
