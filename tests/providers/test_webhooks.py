"""Provider callbacks at /signing/webhooks/<provider>/<secret>/: the same delivery twice, forgeries, and a
callback that never arrives.  Whatever comes in, Maria's workflow gets one answer and the deal one file.
Personas: see tests/providers/flows.py; portal B is an outsider with its own Evia account.
"""
import json
from urllib.parse import urlsplit

import pytest

from signing import states
from signing.models import RequestEvent, SignatureRequest
from tests.providers.flows import (
    ANNA,
    BORIS,
    EVIA_ID,
    EVIA_KEY,
    SEND_TO_BOTH,
    SIGNNOW_LOGIN,
    account_of,
    connect,
    history,
    poll_now,
    timeline_files,
)
from tests.robots.helpers import deal_doc, run_worker


def send(portal, deal, courier):
    wf = portal.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_TO_BOTH)
    run_worker()
    courier.flush()
    return SignatureRequest.objects.get(), wf


@pytest.fixture
def signnow_sent(eager_tasks, portal_a, signnow, courier, deal):
    connect(portal_a, "signnow", *SIGNNOW_LOGIN, "--default")
    return send(portal_a, deal, courier)


@pytest.fixture
def evia_sent(eager_tasks, portal_a, evia, courier, deal):
    connect(portal_a, "evia", f"client_id={EVIA_ID}", f"client_secret={EVIA_KEY}", f"code={evia.issue_auth_code()}",
            "--default")
    return send(portal_a, deal, courier)


def reads(signnow) -> int:
    return len(signnow.calls_to("GET", r"^/document/[0-9a-f]+$"))


# -- the same delivery twice -----------------------------------------------------------------------------------
def test_a_duplicated_signnow_callback_changes_nothing(portal_a, signnow, courier, signnow_sent, deal):
    req, wf = signnow_sent
    signnow.sign(req.external_id, ANNA)
    seen, moves = reads(signnow), req.events.filter(kind="status").count()

    again = courier.replay()
    assert again.status_code == 200 and again.json() == {"status": "ok", "handled": 0}
    assert len(history(req, "webhook")) == 1
    assert req.events.filter(kind="status").count() == moves and reads(signnow) == seen  # not even re-read

    signnow.sign(req.external_id, BORIS)
    assert courier.replay().json()["handled"] == 0  # "document complete", delivered again after the answer
    assert len(wf.answers) == 1 and len(timeline_files(portal_a, deal)) == 2  # signed PDF + audit trail


def test_a_duplicated_evia_completion_is_applied_once(portal_a, evia, courier, evia_sent, deal):
    req, wf = evia_sent
    evia.sign(req.external_id, ANNA)
    evia.sign(req.external_id, BORIS)
    completed = next(d for d in courier.delivered if b'"EventId": 3' in d[1])
    assert courier.post(*completed[:3]).json()["handled"] == 0
    assert len(history(req, "attached")) == 1
    assert len(wf.answers) == 1 and len(timeline_files(portal_a, deal)) == 1


# -- forgeries -------------------------------------------------------------------------------------------------
def test_forged_signnow_callbacks_are_refused_and_change_nothing(portal_a, signnow, courier, signnow_sent):
    req, wf = signnow_sent
    courier.losing = True
    signnow.sign(req.external_id, ANNA)
    [(url, body, headers)] = courier.lost
    path = urlsplit(url).path
    before = RequestEvent.objects.count()

    tampered = body.replace(b"fieldinvite.signed", b"complete")
    assert courier.post(path, tampered, headers).status_code == 403  # the HMAC no longer matches
    assert courier.post(path, body, {**headers, "X-SignNow-Signature": "0" * 64}).status_code == 403
    unsigned = {k: v for k, v in headers.items() if k.lower() not in ("x-signnow-signature", "x-b24sign-token")}
    assert courier.post(path, body, unsigned).status_code == 403
    assert courier.post("/signing/webhooks/signnow/guessed-secret/", body, headers).status_code == 404
    req.refresh_from_db()
    assert req.status == states.SENT and RequestEvent.objects.count() == before and wf.answers == []

    assert courier.post(path, body, headers).status_code == 200  # the genuine one still counts
    req.refresh_from_db()
    assert req.status == states.PARTIALLY_SIGNED


def test_evia_callbacks_only_reach_the_accounts_own_requests(portal_a, portal_b, evia, courier, evia_sent):
    req, wf = evia_sent
    connect(portal_b, "evia", f"client_id={EVIA_ID}", f"client_secret={EVIA_KEY}", f"code={evia.issue_auth_code()}")
    forged = json.dumps({"RequestId": req.external_id, "UserName": "Anna", "Email": ANNA, "Subject": "Big deal",
                         "EventId": 3, "EventDescription": "RequestCompleted",
                         "EventTime": "2030-01-01T00:00:00Z"}).encode()
    headers = {"Content-Type": "application/json"}
    b_url = urlsplit(account_of(portal_b, "evia").webhook_url()).path

    assert courier.post(b_url, forged, headers).json()["handled"] == 0  # portal B's URL, portal A's request
    assert courier.post("/signing/webhooks/evia/guessed-secret/", forged, headers).status_code == 404
    assert courier.post(b_url, b"<xml>not json</xml>", headers).status_code == 403
    req.refresh_from_db()
    assert req.status == states.SENT and wf.answers == []


# -- the callback that never came ----------------------------------------------------------------------------------
def test_a_lost_callback_is_caught_up_by_the_poller(portal_a, signnow, courier, signnow_sent, deal):
    req, wf = signnow_sent
    courier.losing = True
    signnow.sign(req.external_id, ANNA)
    signnow.sign(req.external_id, BORIS)
    assert len(courier.lost) == 3 and wf.answers == []
    req.refresh_from_db()
    assert req.status == states.SENT

    assert poll_now() == 1
    assert len(wf.answers) == 1 and wf.return_values["status"] == "completed"
    assert len(timeline_files(portal_a, deal)) == 2
    assert poll_now() == 0  # nothing left open to poll
