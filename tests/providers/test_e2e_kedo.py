"""Bitrix24 Sign for HR documents (KEDO) end to end: the HR robot -> ``sign.b2e.document.send`` -> employees
sign in Bitrix24 -> ``ONSIGNB2E*`` events at /b24/events/ -> status re-read -> the signed file on the deal's
timeline -> one answer.  Personas: portal A's admin; Dave, the employee who signs; Erin, HR, who signs for
the company.
"""
import pytest

from signing import states
from signing.models import SignatureRequest
from tests.providers.flows import connect, poll_now, settle, timeline_files
from tests.robots.helpers import deal_doc, run_worker

DAVE, ERIN = 25, 42
HR_SEND = {"document_source": "field", "document_field": "UF_CRM_CONTRACT", "title": "Offer letter",
           "signers": [f"user_{DAVE}"], "assignee": f"user_{ERIN}", "wait": "Y"}


@pytest.fixture
def sent(eager_tasks, portal_a, deal):
    portal_a.emu.add_user(DAVE, "dave@alpha.test", name="Dave", last_name="Employee")
    portal_a.emu.add_user(ERIN, "erin@alpha.test", name="Erin", last_name="HR")
    assert "Connected Bitrix24 Sign" in connect(portal_a, "b24kedo")
    wf = portal_a.emu.start_robot("b24sign_kedo_send", document_id=deal_doc(deal), properties=HR_SEND)
    run_worker()
    return SignatureRequest.objects.get(), wf


def test_employee_and_hr_sign_and_the_signed_file_lands_on_the_deal(portal_a, sent, deal):
    req, wf = sent
    doc = portal_a.emu.sign.documents[req.external_id]
    assert [(m["userId"], m["role"]) for m in doc["members"]] == [(DAVE, "signer"), (ERIN, "assignee")]
    assert req.status == states.SENT and wf.answers == []

    with settle():
        portal_a.emu.sign_b2e_member_signs(req.external_id, DAVE)
    req.refresh_from_db()
    assert req.status == states.PARTIALLY_SIGNED and wf.answers == []

    with settle():
        portal_a.emu.sign_b2e_member_signs(req.external_id, ERIN)
    assert len(wf.answers) == 1
    assert wf.return_values["status"] == "completed"
    assert wf.return_values["signers_status"] == "dave@alpha.test: signed; erin@alpha.test: signed"
    [(name, pdf)] = timeline_files(portal_a, deal)
    assert "signed" in name and pdf.startswith(b"%PDF-") and b"Signed electronically" in pdf
    assert len(portal_a.emu.sign.documents) == 1  # one document in Bitrix24 Sign
    events = [d for d in portal_a.emu.deliveries if d["kind"].startswith("event:ONSIGNB2E")]
    assert len(events) == 4 and {d["status"] for d in events} == {200}  # how we heard of each step


def test_an_employee_who_refuses_is_answered_as_declined(portal_a, sent, deal):
    req, wf = sent
    with settle():
        portal_a.emu.sign_b2e_member_refuses(req.external_id, DAVE)
    assert len(wf.answers) == 1 and wf.return_values["status"] == "declined"
    assert timeline_files(portal_a, deal) == []


def test_a_document_deleted_in_bitrix24_sign_ends_the_request_in_error(portal_a, sent):
    """The core answers ``{"error":"","error_description":"Document not found."}`` (HTTP 400) for a deleted
    document: the request stops being polled, shows the message, and the workflow is answered."""
    req, wf = sent
    portal_a.emu.sign.delete(req.external_id)
    poll_now()
    req.refresh_from_db()
    assert req.status == states.ERROR and "Document not found." in req.error
    assert len(wf.answers) == 1 and wf.return_values["status"] == "error"
    assert "Document not found." in wf.return_values["error"]
    before = portal_a.emu.stats.by_method["sign.b2e.document.get"]
    poll_now()
    assert portal_a.emu.stats.by_method["sign.b2e.document.get"] == before  # not polled any more


@pytest.mark.django_db
def test_an_employee_without_an_email_signs_by_user_id(eager_tasks, portal_a, deal):
    """KEDO members are Bitrix24 user ids; warehouse staff often have no e-mail in their profile."""
    portal_a.emu.add_user(DAVE, "", name="Dave", last_name="Employee")
    portal_a.emu.add_user(ERIN, "erin@alpha.test", name="Erin", last_name="HR")
    assert "Connected Bitrix24 Sign" in connect(portal_a, "b24kedo")
    wf = portal_a.emu.start_robot("b24sign_kedo_send", document_id=deal_doc(deal), properties=HR_SEND)
    run_worker()
    req = SignatureRequest.objects.get()
    assert req.status == states.SENT, req.error
    doc = portal_a.emu.sign.documents[req.external_id]
    assert [(m["userId"], m["role"]) for m in doc["members"]] == [(DAVE, "signer"), (ERIN, "assignee")]
    with settle():
        portal_a.emu.sign_b2e_member_signs(req.external_id, DAVE)
    with settle():
        portal_a.emu.sign_b2e_member_signs(req.external_id, ERIN)
    assert wf.return_values["status"] == "completed"
    assert "Dave" in wf.return_values["signers_status"] or f"user:{DAVE}: signed" in wf.return_values["signers_status"]


@pytest.mark.django_db
def test_two_reviewers_are_refused_with_a_clear_error(eager_tasks, portal_a, deal):
    """The core keeps only the last reviewer: the first would show "pending" for ever."""
    for uid, email in ((DAVE, "dave@alpha.test"), (ERIN, "erin@alpha.test"), (51, "frank@alpha.test"),
                       (52, "gina@alpha.test")):
        portal_a.emu.add_user(uid, email, name=email.split("@")[0].title())
    connect(portal_a, "b24kedo")
    wf = portal_a.emu.start_robot("b24sign_kedo_send", document_id=deal_doc(deal),
                                  properties={**HR_SEND, "reviewers": ["user_51", "user_52"]})
    run_worker()
    assert wf.return_values["status"] == "error"
    assert "Reviewer takes one value" in wf.return_values["error"]
    assert portal_a.emu.sign.documents == {}
