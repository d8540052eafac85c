"""Issue 11 part A, data lifecycle: big and bad Evia callbacks, webhook secrets in logs, links after uninstall."""
from __future__ import annotations

import base64
import json
import logging
from urllib.parse import urlsplit

import pytest

from signing import services
from signing.models import SignatureRequest
from tests.emulators.pdf import make_pdf
from tests.providers.flows import ANNA, BORIS, EVIA_ID, EVIA_KEY, SEND_TO_BOTH, connect, timeline_files
from tests.robots.helpers import deal_doc, run_worker


@pytest.fixture
def evia_sent(eager_tasks, portal_a, evia, courier, deal):
    connect(portal_a, "evia", f"client_id={EVIA_ID}", f"client_secret={EVIA_KEY}", f"code={evia.issue_auth_code()}",
            "--default")
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_TO_BOTH)
    run_worker()
    courier.flush()
    return SignatureRequest.objects.get(), wf


def _lost_completion(evia, courier, req):
    """Both sign; the completion callback (EventId 3, with the signed PDF) is caught on the way."""
    evia.sign(req.external_id, ANNA)
    courier.losing = True
    evia.sign(req.external_id, BORIS)
    courier.losing = False
    path, body, headers = next(x for x in courier.lost if b'"EventId": 3' in x[1])
    return urlsplit(path).path, json.loads(body), headers


def _with_document(payload, content: bytes):
    items = payload if isinstance(payload, list) else [payload]
    for item in items:
        for doc in item.get("Documents") or []:
            if "audit" not in str(doc.get("DocumentName", "")).lower():
                doc["DocumentContent"] = base64.b64encode(content).decode()
    return json.dumps(payload).encode()


def test_a_23_mb_evia_completion_callback_is_read_with_the_views_own_limit(portal_a, evia, courier, evia_sent,
                                                                             deal):
    req, wf = evia_sent
    path, payload, headers = _lost_completion(evia, courier, req)
    big = make_pdf(["Signed contract"]) + b"\n%" + b"0" * 1_750_000 + b"\n"  # 2.3 MB once in base64
    body = _with_document(payload, big)
    assert len(body) > 2_300_000

    response = courier.post(path, body, headers)

    assert response.status_code == 200 and response.json()["handled"] == 1
    req.refresh_from_db()
    assert req.status == "completed"
    assert req.signed_file.size == len(big)
    assert len(wf.answers) == 1 and wf.return_values["status"] == "completed"


def test_a_callback_carrying_no_pdf_never_reaches_the_crm(portal_a, evia, courier, evia_sent, deal):
    req, wf = evia_sent
    path, payload, headers = _lost_completion(evia, courier, req)
    response = courier.post(path, _with_document(payload, b"<html><script>alert(1)</script></html>"), headers)
    assert response.status_code == 200
    req.refresh_from_db()
    assert req.status == "completed"
    with req.signed_file.open("rb") as fh:
        assert fh.read(5) == b"%PDF-"  # the copy fetched from Evia's API instead
    assert all(b"<html>" not in content for _name, content in timeline_files(portal_a, deal))


def test_the_webhook_secret_never_reaches_a_log_line(portal_a, evia, courier, evia_sent, client, caplog):
    path = courier.delivered[0][0]
    secret = path.rstrip("/").rsplit("/", 1)[1]
    with caplog.at_level(logging.INFO):
        response = client.post(path, b"not json", content_type="application/json")
    assert response.status_code == 403
    assert "Forbidden" in caplog.text  # django.request logged the refusal ...
    assert secret not in caplog.text   # ... without the secret
    assert "/signing/webhooks/evia/***" in caplog.text


def test_signed_file_links_stop_working_after_an_uninstall(portal_a, evia, courier, evia_sent, client):
    req, wf = evia_sent
    evia.sign(req.external_id, ANNA)
    evia.sign(req.external_id, BORIS)
    req.refresh_from_db()
    link = urlsplit(services.signed_file_link(req)).path
    assert client.get(link).status_code == 200

    [response] = portal_a.emu.fire_event("ONAPPUNINSTALL", clean=False)

    assert response.status_code == 200
    assert client.get(link).status_code == 404
    assert client.get(urlsplit(wf.return_values["signed_file_url"]).path).status_code == 404


def test_the_signer_password_is_sealed_at_rest_and_erased_once_sent(eager_tasks, portal_a, evia, courier, deal):
    from django.db import connection

    from bizproc_ext.models import RobotCall

    connect(portal_a, "evia", f"client_id={EVIA_ID}", f"client_secret={EVIA_KEY}", f"code={evia.issue_auth_code()}",
            "--default")
    secret = "Hunter2-access-code"
    portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal),
                             properties={**SEND_TO_BOTH, "signer_auth": "password", "signer_auth_secret": secret})

    def raw_rows() -> str:
        with connection.cursor() as cur:
            cur.execute("SELECT properties::text FROM bizproc_ext_robotcall")
            return " ".join(row[0] for row in cur.fetchall())

    assert RobotCall.objects.count() == 1
    assert secret not in raw_rows()  # recorded by the handler: sealed
    run_worker()
    courier.flush()
    [rq] = evia.requests.values()
    assert {s["otp"]["AccessCode"] for s in rq["signatories"] if s["type"] == 1} == {secret}  # the provider got it
    assert secret not in raw_rows() and "sealed" not in raw_rows()  # and we no longer hold it, even encrypted
