"""Get status / Remind / Cancel robots, by request id, scoped to the calling portal."""

import pytest

from signing import states
from signing.models import SignatureRequest
from tests.robots.helpers import SEND_PROPS, deal_doc, run_worker


@pytest.fixture
def sent_request(eager_tasks, portal_a, memory_account, memory_provider, deal):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties={**SEND_PROPS, "wait": "Y"})
    run_worker()
    return SignatureRequest.objects.get(), wf


@pytest.mark.django_db
def test_status_robot_returns_the_current_state(portal_a, sent_request, memory_provider, deal):
    req, _ = sent_request
    memory_provider.sign(req.external_id, "anna@customer.test")
    wf = portal_a.emu.start_robot("b24sign_status", document_id=deal_doc(deal), properties={"request_id": str(req.public_id)})
    run_worker()
    assert wf.return_values["status"] == "completed"
    assert "anna@customer.test: signed" in wf.return_values["signers_status"]
    declared = set(portal_a.emu.robots["b24sign_status"]["RETURN_PROPERTIES"])
    [sent] = wf.answers
    assert set(sent["RETURN_VALUES"]) <= declared and "request_id" not in sent["RETURN_VALUES"]


@pytest.mark.django_db
def test_remind_robot_reminds_through_the_provider(portal_a, sent_request, memory_provider, deal):
    req, _ = sent_request
    wf = portal_a.emu.start_robot("b24sign_remind", document_id=deal_doc(deal), properties={"request_id": str(req.public_id)})
    run_worker()
    assert wf.return_values == {"status": "sent", "error": ""}
    assert memory_provider.documents[req.external_id]["reminders"] == 1


@pytest.mark.django_db
def test_cancel_robot_cancels_and_the_waiting_send_robot_hears_it(portal_a, sent_request, memory_provider, deal):
    req, send_wf = sent_request
    wf = portal_a.emu.start_robot("b24sign_cancel", document_id=deal_doc(deal),
                                  properties={"request_id": str(req.public_id), "reason": "Customer changed mind"})
    run_worker()
    assert wf.return_values["status"] == "cancelled"
    assert memory_provider.documents[req.external_id]["status"] == "cancelled"
    req.refresh_from_db()
    assert req.status == states.CANCELLED
    assert send_wf.return_values["status"] == "cancelled"  # the workflow that waited got its answer
    assert len(send_wf.answers) == 1


@pytest.mark.django_db
def test_another_portal_cannot_touch_this_portals_request(portal_a, portal_b, sent_request, memory_provider):
    req, _ = sent_request
    other_deal = portal_b.emu.crm.add_deal("Theirs")
    wf = portal_b.emu.start_robot("b24sign_cancel", document_id=deal_doc(other_deal),
                                  properties={"request_id": str(req.public_id)})
    run_worker()
    assert wf.return_values["status"] == "error"
    assert "no signature request" in wf.return_values["error"]
    req.refresh_from_db()
    assert req.status == states.SENT
    assert memory_provider.documents[req.external_id]["status"] == "sent"


@pytest.mark.django_db
def test_robot_settings_placement_offers_friendly_controls(portal_a, memory_account, client):
    options = {"code": "b24sign_send", "activity_name": "A1_2_3_4",
               "current_values": {"signer_emails": ["a@x.test"], "document_field": "UF_CRM_CONTRACT"},
               "document_fields": {"UF_CRM_CONTRACT": {"Name": "Contract", "Type": "file"},
                                   "TITLE": {"Name": "Title", "Type": "string"}}}
    query, body = portal_a.emu.app_page_request(user_id=2, placement="BIZPROC_ACTIVITY_PROPERTIES_DIALOG",
                                                options=options)
    response = client.post("/bizproc/settings/b24sign_send/?LANG=en", body)
    assert response.status_code == 200
    html = response.content.decode()
    assert "setPropertyValue" in html
    assert 'value="UF_CRM_CONTRACT" selected' in html and "TITLE" not in html.split('id="p-document_field"')[1][:300]
    assert "In-memory test provider" in html
    assert 'value="a@x.test"' in html
    assert response["Content-Security-Policy"].startswith("frame-ancestors 'self' https://" + portal_a.emu.domain)

    body["APPLICATION_TOKEN"] = "forged"
    assert client.post("/bizproc/settings/b24sign_send/", body).status_code == 403
