"""A robot call is proven by its event token before it has any effect (issue 11, item 4).

The application token is readable by every user who opens the app, so a user can post a robot call that
passes the handler.  What they cannot make is an event token the portal signed: the worker's first
request is a halt=1 batch whose first command is ``bizproc.activity.log`` with that token.
"""
from urllib.parse import parse_qsl

import pytest

from bizproc_ext.models import RobotCall
from signing.models import SignatureRequest
from tests.robots.helpers import SEND_PROPS, deal_doc, run_worker


def _forge(wf, token: str):
    return [(k, token if k == "event_token" else v) for k, v in wf.pairs]


def _cmd_method(query: str) -> str:
    return query.partition("?")[0]


@pytest.mark.django_db
def test_first_request_is_one_batch_with_the_proof_first_then_the_crm_reads(portal_a, memory_account,
                                                                            memory_provider, deal):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    portal_a.emu.rest_log.clear()
    run_worker()

    first = portal_a.emu.rest_log[0]
    assert first["method"] == "batch" and str(first["params"]["halt"]) == "1"
    commands = list(first["params"]["cmd"].values())
    assert _cmd_method(commands[0]) == "bizproc.activity.log"
    proof = dict(parse_qsl(commands[0].partition("?")[2]))
    assert proof["EVENT_TOKEN"] == wf.event_token and proof["LOG_MESSAGE"] == "received by b24sign"
    assert "crm.item.get" in [_cmd_method(c) for c in commands[1:]]  # the reads ride in the same request
    assert not any(r["method"] == "crm.item.get" for r in portal_a.emu.rest_log)  # no separate read
    assert wf.log[0] == "received by b24sign"
    assert memory_provider.sends == 1 and len(wf.answers) == 1  # the legitimate flow still works
    assert RobotCall.objects.get().proven_at is not None


@pytest.mark.django_db
def test_forged_call_for_a_confidential_drive_file_reads_and_sends_nothing(portal_a, memory_account,
                                                                          memory_provider, deal, pdf_bytes):
    """The attack from the issue: a manager posts a call with a valid application token, a Drive file id
    and their own address; the worker must not read the file, download it or send it anywhere."""
    secret_file = portal_a.emu.store_file("salaries.pdf", pdf_bytes)
    props = {**SEND_PROPS, "document_source": "disk", "document_id": str(secret_file),
             "signer_contacts": "none", "signer_emails": "attacker@evil.test"}
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=props, deliver=False)
    # A made-up token, then a well-formed one with a wrong signature: both pass the handler.
    for n, token in enumerate((f"{wf.workflow_id}|{wf.activity_name}|x{'0' * 31}.deadbeef",
                               wf.event_token[:-4] + "0000")):
        response = portal_a.emu.post_robot_call(wf, _forge(wf, token))
        assert response.status_code == 200, response.content
    portal_a.emu.rest_log.clear()
    portal_a.emu.stats.by_method.clear()

    run_worker()

    methods = portal_a.emu.stats.by_method
    for read in ("crm.item.get", "disk.file.get", "user.get", "crm.contact.get"):
        assert methods[read] == 0, read
    assert portal_a.emu.stats.downloads == 0
    assert memory_provider.sends == 0 and not SignatureRequest.objects.exists()
    assert methods["bizproc.event.send"] == 0  # no answer: there is no workflow behind a forged token
    calls = list(RobotCall.objects.all())
    assert len(calls) == 2
    for call in calls:
        assert call.state == RobotCall.DONE and call.answer_state == "refused"
        assert "event token" in call.last_error and "ACCESS_DENIED" in call.last_error
        assert call.proven_at is None
    assert len(portal_a.emu.rest_log) == 2  # one request each: the proof, halted at once


@pytest.mark.django_db
@pytest.mark.parametrize("code,props", [
    ("b24sign_cancel", {"request_id": "REQ", "reason": "forged"}),
    ("b24sign_remind", {"request_id": "REQ"}),
])
def test_forged_cancel_or_remind_does_not_touch_the_request(portal_a, memory_account, memory_provider, deal,
                                                            code, props):
    legit = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    run_worker()
    req = SignatureRequest.objects.get()
    status = req.status
    props = {k: (str(req.public_id) if v == "REQ" else v) for k, v in props.items()}
    wf = portal_a.emu.start_robot(code, document_id=deal_doc(deal), properties=props, deliver=False)
    assert portal_a.emu.post_robot_call(wf, _forge(wf, legit.event_token[:-6] + "abcdef")).status_code == 200

    run_worker()

    req.refresh_from_db()
    assert req.status == status
    doc = memory_provider.documents[req.external_id]
    assert doc["status"] != "cancelled" and doc["reminders"] == 0
    call = RobotCall.objects.get(code=code)
    assert call.answer_state == "refused"


@pytest.mark.django_db
def test_status_robot_is_proven_before_it_answers(portal_a, memory_account, memory_provider, deal):
    legit = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    run_worker()
    req = SignatureRequest.objects.get()
    wf = portal_a.emu.start_robot("b24sign_status", document_id=deal_doc(deal),
                                  properties={"request_id": str(req.public_id)})
    run_worker()
    assert wf.log[0] == "received by b24sign"
    assert wf.return_values["status"] == "sent" and legit.closed


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["N", "n", "", "yes"])
def test_use_subscription_other_than_y_is_refused_at_the_handler(portal_a, deal, value):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS, deliver=False)
    pairs = [(k, value if k == "use_subscription" else v) for k, v in wf.pairs]
    response = portal_a.emu.post_robot_call(wf, pairs)
    assert response.status_code == 400
    assert "use_subscription" in response.json()["error"]
    assert not RobotCall.objects.exists()
