"""A real prefork worker SIGKILLed in the middle of a send: the sweeper recovers the call, and the
workflow still gets exactly one answer with exactly one signNow invite (spec B.1 recovery points, B.2)."""
from __future__ import annotations

import pytest

from bizproc_ext.models import RobotCall
from bizproc_ext.tasks import sweep_robot_calls
from signing.models import SignatureRequest
from tests.robots.helpers import SEND_PROPS, deal_doc

from .conftest import connect_signnow, invited_documents, invites
from .support import Gate, wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

STALE = 3
ANSWER = r"^/rest/(bizproc\.event\.send|batch)"  # with ANSWER_BODY: the request carrying the answer
ANSWER_BODY = r"bizproc\.event\.send"


@pytest.fixture
def setup(settings, live_portal_a, signnow, fast_portal_limits, pdf_bytes):
    settings.ROBOT_CALL_LEASE = settings.ROBOT_CALL_REPUBLISH_AFTER = STALE
    fast_portal_limits(live_portal_a)
    connect_signnow(live_portal_a.db)
    crm = live_portal_a.emu.crm
    anna = crm.add_contact("Anna", "Buyer", emails=["anna@customer.test"])
    deal = crm.add_deal("Big deal", contact_ids=[anna], files={"ufCrmContract": ("contract.pdf", pdf_bytes)})
    return live_portal_a.emu, deal


def recover(wf, timeout: float = 90.0) -> None:
    """What beat does every minute, every second: until the call is finished and the workflow answered."""
    def finished():
        if wf.answers and not RobotCall.objects.exclude(state=RobotCall.DONE).exists():
            return True
        sweep_robot_calls.delay()
        return False
    wait_until(finished, timeout, 1.0, "the sweeper to get the killed call answered")


@pytest.mark.parametrize("where,method,path,drop", [
    # the invite reaches signNow after the kill: the retry must find it and not invite again
    pytest.param("signnow", "POST", r"^/document/[0-9a-f]+/invite$", False, id="invite"),
    # the upload lands after the kill (an orphan draft): the retry uploads again and invites once
    pytest.param("signnow", "POST", r"^/document$", False, id="upload"),
    # killed inside bizproc.event.send, which never reached Bitrix24: the retry must still answer (the answer goes
    # in a batch with the call's CRM card: docs/decisions.md, "the card with the answer")
    pytest.param("portal", "POST", ANSWER, True, id="answer-lost"),
    # killed inside bizproc.event.send, which did reach Bitrix24: no second answer
    pytest.param("portal", "POST", ANSWER, False, id="answer-landed"),
])
def test_sigkill_mid_send_then_sweeper_gives_one_answer_and_one_invite(setup, signnow, worker_env, workers,
                                                                        where, method, path, drop):
    emu, deal = setup
    signnow.delay = 0.1  # a slow provider ...
    # ... and one request we hold until the worker is dead
    gate = Gate(signnow if where == "signnow" else emu.server, method, path, drop=drop,
                body_regex=ANSWER_BODY if path == ANSWER else "")
    env = worker_env()
    first = workers(env)

    wf = emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    assert wf.response_status == 200

    assert gate.arrived.wait(60), f"the worker never reached the provider:\n{first.log()[-3000:]}"
    first.kill()  # SIGKILL to the whole process group, mid-request
    gate.release()  # the provider finishes what the dead worker asked for
    if where == "signnow":
        wait_until(lambda: signnow.calls_to(method, path), 30, 0.05, "the held request to land")
        assert wf.answers == []
    else:
        wait_until(lambda: drop or wf.answers, 30, 0.05, "the held answer to land")
    call = RobotCall.objects.get()
    assert call.state == RobotCall.RUNNING

    second = workers(env)
    recover(wf)

    call.refresh_from_db()
    assert call.attempts == 2, second.log()[-3000:]
    # a resend Bitrix24 refuses (it already had the answer) is recorded as failed, not retried forever
    assert call.answer_state == ("failed" if where == "portal" and not drop else "sent")
    assert wf.return_values["status"] == "sent"
    req = SignatureRequest.objects.get()
    assert req.send_phase == "sent" and wf.return_values["request_id"] == str(req.public_id)
    assert invited_documents(signnow) == [req.external_id]
    # the last two lines of every test in this suite: one answer, nothing sent twice
    assert len(wf.answers) == 1
    assert len(invites(signnow)) == 1
