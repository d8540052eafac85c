"""signNow end to end: Maria's robot call -> signNow (emulated) -> callbacks at our webhook URL -> the
signed PDF on the deal's timeline and one answer to her workflow.  Personas: see tests/providers/flows.py.
"""
import time

import pytest

from bizproc_ext import pipeline
from bizproc_ext.models import RobotCall
from signing import services, states
from signing.models import SignatureRequest
from tests.providers.flows import (
    ANNA,
    BORIS,
    SEND_TO_BOTH,
    SIGNNOW_LOGIN,
    account_of,
    connect,
    poll_now,
    settle,
    timeline_files,
)
from tests.robots.helpers import deal_doc, run_worker

DAVE = "dave@customer.test"


@pytest.fixture
def connected(portal_a, signnow):
    connect(portal_a, "signnow", *SIGNNOW_LOGIN, "--default")
    return account_of(portal_a, "signnow")


@pytest.fixture
def sent(eager_tasks, portal_a, connected, deal):
    """Maria's deal went out for signature; her workflow waits."""
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_TO_BOTH)
    run_worker()
    assert wf.answers == [] and RobotCall.objects.get().state == RobotCall.WAITING
    return SignatureRequest.objects.get(), wf


def invites(signnow):
    return [c for c in signnow.calls_to("POST", r"^/document/[0-9a-f]+/invite$") if c["status"] == 200]


def test_both_contacts_sign_and_the_signed_pdf_lands_on_the_deal(portal_a, signnow, courier, sent, deal):
    req, wf = sent
    signnow.sign(req.external_id, ANNA)
    req.refresh_from_db()
    assert req.status == states.PARTIALLY_SIGNED and wf.answers == []

    signnow.sign(req.external_id, BORIS)
    req.refresh_from_db()
    assert req.status == states.COMPLETED
    assert len(wf.answers) == 1
    assert wf.return_values["status"] == "completed"
    assert wf.return_values["signers_status"] == f"{ANNA}: signed; {BORIS}: signed"
    assert wf.return_values["signed_file_url"].startswith("http")
    [comment] = portal_a.emu.crm.comments_for("deal", deal)
    assert ANNA in comment["comment"] and BORIS in comment["comment"]
    (pdf_name, pdf), (audit_name, _) = comment["files"]
    assert "signed" in pdf_name and pdf.startswith(b"%PDF-") and b"Signed by boris@customer.test" in pdf
    assert "audit trail" in audit_name
    assert len(signnow.documents) == 1 and len(invites(signnow)) == 1  # one signature request at signNow
    assert {status for *_, status in courier.delivered} == {200}


def test_a_decline_is_answered_with_the_reason_and_nothing_is_attached(portal_a, signnow, sent, deal):
    req, wf = sent
    signnow.decline(req.external_id, ANNA, reason="wrong price")
    assert len(wf.answers) == 1
    assert wf.return_values["status"] == "declined"
    assert "wrong price" in wf.return_values["error"]
    assert portal_a.emu.crm.comments_for("deal", deal) == []


def test_an_expired_invite_is_noticed_by_the_poller(portal_a, signnow, sent, deal):
    req, wf = sent
    signnow.expire(req.external_id)  # signNow sends no callback for this
    assert poll_now() == 1
    assert wf.return_values["status"] == "expired" and len(wf.answers) == 1
    assert portal_a.emu.crm.comments_for("deal", deal) == []


def test_the_cancel_robot_withdraws_the_invites_and_the_waiting_workflow_hears_it(portal_a, signnow, sent, deal):
    req, send_wf = sent
    wf = portal_a.emu.start_robot("b24sign_cancel", document_id=deal_doc(deal),
                                  properties={"request_id": str(req.public_id), "reason": "Deal lost"})
    run_worker()
    assert wf.return_values == {"status": "cancelled", "error": ""}
    assert signnow.calls_to("PUT", "fieldinvitecancel$")[0]["json"] == {"reason": "Deal lost"}
    with pytest.raises(ValueError):
        signnow.sign(req.external_id, ANNA)  # Anna's invite is gone
    assert send_wf.return_values["status"] == "cancelled" and len(send_wf.answers) == 1


def test_the_remind_robot_emails_whoever_is_due_to_sign(portal_a, signnow, sent, deal):
    req, _ = sent
    wf = portal_a.emu.start_robot("b24sign_remind", document_id=deal_doc(deal),
                                  properties={"request_id": str(req.public_id)})
    run_worker()
    assert wf.return_values == {"status": "sent", "error": ""}
    assert [e["to"] for e in signnow.sent_emails if e["kind"] == "resend"] == [ANNA]  # Boris' turn comes later


def test_a_replaced_signer_signs_instead_and_is_named_on_the_timeline(portal_a, signnow, sent, deal):
    req, wf = sent
    services.replace_signer(req, BORIS, DAVE)  # through signNow's replace-invite calls
    signnow.sign(req.external_id, ANNA)
    with pytest.raises(ValueError):
        signnow.sign(req.external_id, BORIS)
    signnow.sign(req.external_id, DAVE)
    assert wf.return_values["status"] == "completed"
    [comment] = portal_a.emu.crm.comments_for("deal", deal)
    assert DAVE in comment["comment"] and BORIS not in comment["comment"]
    assert wf.return_values["signers_status"] == f"{ANNA}: signed; {DAVE}: signed"
    assert len(invites(signnow)) == 1


def test_a_short_outage_is_ridden_out_with_one_send_and_one_answer(eager_tasks, portal_a, connected, signnow, deal):
    over_at = time.time() + 2.0
    signnow.outage(2.0)  # "a minute" of 503s, shortened
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_TO_BOTH)
    call = RobotCall.objects.get()
    with settle():
        outcome = pipeline.run(call.pk)
    assert outcome.retry_in == 5.0  # the Celery task re-queues itself with this countdown
    call.refresh_from_db()
    assert call.state == RobotCall.QUEUED and "signNow answered HTTP 503" in call.last_error
    assert wf.answers == [] and signnow.documents == {}

    time.sleep(max(0.0, over_at - time.time()) + 0.05)
    run_worker()
    assert RobotCall.objects.get().attempts == 2
    assert len(signnow.documents) == 1 and len(invites(signnow)) == 1
    req = SignatureRequest.objects.get()
    signnow.sign(req.external_id, ANNA)
    signnow.sign(req.external_id, BORIS)
    assert len(wf.answers) == 1 and wf.return_values["status"] == "completed"
    assert len(timeline_files(portal_a, deal)) == 2
