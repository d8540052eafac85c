"""Evia Sign end to end: Maria's robot call -> Evia (emulated) -> callbacks at our webhook URL (the last one
carries the signed PDF) -> the PDF on the deal's timeline and one answer.  Personas: tests/providers/flows.py.
"""
import pytest

from signing import states
from signing.models import SignatureRequest
from tests.providers.flows import ANNA, BORIS, EVIA_ID, EVIA_KEY, SEND_TO_BOTH, connect, history, timeline_files
from tests.robots.helpers import deal_doc, run_worker


@pytest.fixture
def connected(portal_a, evia):
    """Portal A's admin connects Evia (an authorization code from Evia's authorize page) as the default."""
    connect(portal_a, "evia", f"client_id={EVIA_ID}", f"client_secret={EVIA_KEY}", f"code={evia.issue_auth_code()}",
            "--default")


def send(portal_a, deal, courier, **props):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties={**SEND_TO_BOTH, **props})
    run_worker()
    courier.flush()  # Evia's "sent" callbacks, fired while it answered our send
    return wf


def test_both_contacts_sign_and_evias_signed_copy_lands_on_the_deal(eager_tasks, portal_a, connected, evia, courier,
                                                                   deal):
    wf = send(portal_a, deal, courier)
    req = SignatureRequest.objects.get()
    [rq] = evia.requests.values()
    assert rq["requestId"] == req.external_id and [s["email"] for s in rq["signatories"]] == [ANNA, BORIS]
    assert req.status == states.SENT and wf.answers == []

    evia.sign(req.external_id, ANNA)
    req.refresh_from_db()
    assert req.status == states.PARTIALLY_SIGNED and wf.answers == []
    evia.sign(req.external_id, BORIS)

    assert len(wf.answers) == 1
    assert wf.return_values["status"] == "completed"
    assert wf.return_values["signers_status"] == f"{ANNA}: signed; {BORIS}: signed"
    [(name, pdf)] = timeline_files(portal_a, deal)
    assert "signed" in name and pdf.startswith(b"%PDF-") and b"Signed by" in pdf
    assert not evia.calls_to("GET", "/documents")  # the copy came with the callback: no guessed endpoint used
    # Evia posts "sent" and "completed" both to the request's callback URL and to the account webhook
    # we registered at connect time: every delivery was accepted, each event counts once.
    assert len(courier.delivered) > len(rq["events"])
    assert len(history(req, "webhook")) == len(rq["events"])


def test_a_rejection_is_answered_and_nothing_is_attached(eager_tasks, portal_a, connected, evia, courier, deal):
    wf = send(portal_a, deal, courier)
    req = SignatureRequest.objects.get()
    evia.reject(req.external_id, ANNA, "wrong price")
    assert len(wf.answers) == 1 and wf.return_values["status"] == "declined"
    assert timeline_files(portal_a, deal) == []


def test_sms_codes_need_every_signers_mobile_before_anything_goes_to_evia(portal_a, connected, evia, courier, deal):
    calls_after_setup = len(evia.calls)
    wf = send(portal_a, deal, courier, signer_auth="sms")  # Boris has no mobile number in the CRM
    assert len(wf.answers) == 1
    assert wf.return_values["status"] == "error"
    assert f"SMS verification needs a mobile number for {BORIS}" in wf.return_values["error"]
    assert len(evia.calls) == calls_after_setup and evia.requests == {}


def test_sms_codes_go_to_the_contacts_mobile(portal_a, connected, evia, courier, deal):
    wf = send(portal_a, deal, courier, signer_auth="sms", signer_contacts="primary", wait="N")
    assert wf.return_values["status"] == "sent"
    [rq] = evia.requests.values()
    assert rq["signatories"][0]["otp"]["MobileNumber"] == "+15550001111"


def test_the_remind_robot_explains_that_evia_reminds_by_itself(eager_tasks, portal_a, connected, evia, courier, deal):
    send(portal_a, deal, courier)
    req = SignatureRequest.objects.get()
    wf = portal_a.emu.start_robot("b24sign_remind", document_id=deal_doc(deal),
                                  properties={"request_id": str(req.public_id)})
    run_worker()
    assert wf.return_values["status"] == "error"
    assert "no reminder call" in wf.return_values["error"]
