"""No double sends at business level (issue 13, item 5).

Maria's deal moves back to the "Contract" stage and her "Send for e-signature" rule fires again (a new
event_token, so the redelivery guard does not apply).  The rule's option "if an open request exists for
this item (same document)" decides: return the open one (default), cancel it and send again, or send
another; the answer says which happened.  signNow is the strict emulator.
"""
import pytest

from bizproc_ext import pipeline
from bizproc_ext.models import RobotCall
from signing import states
from signing.models import SignatureRequest
from tests.providers.flows import ANNA, SEND_TO_BOTH, SIGNNOW_LOGIN, account_of, connect
from tests.robots.helpers import deal_doc, run_worker

ONCE = {**SEND_TO_BOTH, "wait": "N"}


@pytest.fixture
def connected(portal_a, signnow):
    connect(portal_a, "signnow", *SIGNNOW_LOGIN, "--default")
    return account_of(portal_a, "signnow")


def invites(signnow):
    return [c for c in signnow.calls_to("POST", r"^/document/[0-9a-f]+/invite$") if c["status"] == 200]


def fire(portal, deal, **props):
    wf = portal.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties={**ONCE, **props})
    run_worker()
    return wf


@pytest.fixture
def first(eager_tasks, portal_a, connected, deal):
    wf = fire(portal_a, deal)
    assert wf.return_values["status"] == "sent" and wf.return_values["open_request"] == "none"
    return SignatureRequest.objects.get(), wf


def test_a_refired_robot_returns_the_open_request_by_default(portal_a, signnow, first, deal):
    req, _ = first
    again = fire(portal_a, deal)  # option left at its default
    assert again.return_values["request_id"] == str(req.public_id)
    assert again.return_values["open_request"] == "returned"
    assert again.return_values["status"] == "sent" and again.return_values["error"] == ""
    assert "nothing sent again" in again.answers[0]["LOG_MESSAGE"]
    assert SignatureRequest.objects.count() == 1
    assert len(signnow.documents) == 1 and len(invites(signnow)) == 1  # nobody got a second e-mail


def test_a_returned_request_answers_the_waiting_refired_workflow_when_signed(portal_a, signnow, first, deal):
    req, _ = first
    again = fire(portal_a, deal, wait="Y", if_open_exists="return")
    assert again.answers == [] and RobotCall.objects.filter(state=RobotCall.WAITING).count() == 1
    signnow.sign(req.external_id, ANNA)
    signnow.sign(req.external_id, "boris@customer.test")
    assert again.return_values["status"] == "completed"
    assert again.return_values["open_request"] == "returned"
    assert again.return_values["request_id"] == str(req.public_id)


def test_cancel_and_send_again_withdraws_the_open_invites_first(portal_a, signnow, first, deal):
    req, _ = first
    again = fire(portal_a, deal, if_open_exists="replace")
    req.refresh_from_db()
    assert req.status == states.CANCELLED
    assert len(signnow.calls_to("PUT", "fieldinvitecancel$")) == 1
    new = SignatureRequest.objects.exclude(pk=req.pk).get()
    assert again.return_values["request_id"] == str(new.public_id)
    assert again.return_values["open_request"] == "replaced" and again.return_values["status"] == "sent"
    assert "cancelled first" in again.answers[0]["LOG_MESSAGE"]
    assert len(signnow.documents) == 2 and len(invites(signnow)) == 2


def test_send_another_keeps_both_open(portal_a, signnow, first, deal):
    req, _ = first
    again = fire(portal_a, deal, if_open_exists="another")
    assert again.return_values["open_request"] == "another"
    assert again.return_values["request_id"] != str(req.public_id)
    assert SignatureRequest.objects.open().count() == 2 and len(invites(signnow)) == 2


def test_a_different_document_on_the_same_deal_is_not_a_duplicate(eager_tasks, portal_a, connected, signnow,
                                                                    pdf_bytes):
    crm = portal_a.emu.crm
    anna = crm.add_contact("Anna", "Buyer", emails=[ANNA])
    deal = crm.add_deal("Two papers", contact_ids=[anna], files={"ufCrmContract": ("contract.pdf", pdf_bytes),
                                                                  "ufCrmNda": ("nda.pdf", pdf_bytes)})
    assert fire(portal_a, deal).return_values["open_request"] == "none"
    again = fire(portal_a, deal, document_field="UF_CRM_NDA")
    assert again.return_values["open_request"] == "none"
    assert SignatureRequest.objects.open().count() == 2


def test_a_finished_request_is_no_reason_to_hold_back(portal_a, signnow, first, deal):
    req, _ = first
    signnow.sign(req.external_id, ANNA)
    signnow.sign(req.external_id, "boris@customer.test")
    req.refresh_from_db()
    assert req.status == states.COMPLETED
    again = fire(portal_a, deal)
    assert again.return_values["open_request"] == "none"
    assert again.return_values["request_id"] != str(req.public_id)


def test_a_refired_robot_waits_for_the_open_request_still_being_sent_and_answers_sent(
        eager_tasks, portal_a, connected, signnow, deal):
    # The first call's upload fails for now (signNow 503): its request is a draft, its call will retry.
    signnow.fail_next(1, status=503)
    first = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=ONCE)
    pipeline.run(RobotCall.objects.get().pk)
    assert first.answers == [] and SignatureRequest.objects.get().send_phase != "sent"
    again = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=ONCE)
    again_call = RobotCall.objects.order_by("-pk").first()
    pipeline.run(again_call.pk)  # the deal fired again meanwhile: nothing to answer yet ("draft" would mislead)
    again_call.refresh_from_db()
    assert again.answers == [] and again_call.state == RobotCall.QUEUED and again_call.retry_at is not None
    run_worker()  # the first call's retry sends; then the second answers with the request as it went out
    assert first.return_values["status"] == "sent"
    assert again.return_values["status"] == "sent" and again.return_values["open_request"] == "returned"
    assert SignatureRequest.objects.count() == 1 and len(invites(signnow)) == 1
