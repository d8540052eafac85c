"""Several documents in one request (issue 13, item 3): a signNow document group, one invite, one signed
bundle plus the audit trail on the deal's timeline.  Strict signNow emulator; Evia refuses clearly.
"""
import json

import pytest

from signing import states
from signing.models import SignatureRequest
from tests.emulators.pdf import make_pdf
from tests.providers.flows import (
    ANNA,
    BORIS,
    EVIA_ID,
    EVIA_KEY,
    SEND_TO_BOTH,
    SIGNNOW_LOGIN,
    account_of,
    connect,
    poll_now,
)
from tests.robots.helpers import deal_doc, run_worker


@pytest.fixture
def connected(portal_a, signnow):
    connect(portal_a, "signnow", *SIGNNOW_LOGIN, "--default")
    return account_of(portal_a, "signnow")


@pytest.fixture
def papers(portal_a, deal):
    crm = portal_a.emu.crm
    nda = crm.add_disk_file("NDA.pdf", make_pdf(["Non-disclosure agreement"]))
    annex = crm.add_generated_document(2, deal, make_pdf(["Annex: price list"]), title="Annex")
    return [f"disk:{nda}", f"docgen:{annex}"]


def test_three_documents_go_out_in_one_invite_and_come_back_as_one_bundle(eager_tasks, portal_a, connected, signnow,
                                                                           deal, papers):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal),
                                  properties={**SEND_TO_BOTH, "extra_documents": papers})
    run_worker()
    assert wf.answers == [], wf.answers
    [group] = signnow.groups.values()
    assert len(group["document_ids"]) == 3
    assert len(signnow.calls_to("POST", r"^/documentgroup/[0-9a-f]+/groupinvite$")) == 1
    assert signnow.calls_to("POST", r"^/document/[0-9a-f]+/invite$") == []  # no per-document invite
    assert [e["to"] for e in signnow.sent_emails if e["kind"] == "invite"] == [ANNA]  # Boris signs second
    req = SignatureRequest.objects.get()
    assert req.external_id == group["id"]

    signnow.sign_group(group["id"], ANNA)
    poll_now()
    req.refresh_from_db()
    assert req.status == states.PARTIALLY_SIGNED
    signnow.sign_group(group["id"], BORIS)
    poll_now()
    req.refresh_from_db()
    assert req.status == states.COMPLETED
    assert wf.return_values["status"] == "completed"
    [comment] = portal_a.emu.crm.comments_for("deal", deal)
    (pdf_name, pdf), (audit_name, audit) = comment["files"]
    assert "signed" in pdf_name and "audit trail" in audit_name and pdf.startswith(b"%PDF-")
    assert pdf.count(b"Signed by boris@customer.test") == 3 and b"Document group history" in pdf
    assert set(json.loads(audit)) == set(group["document_ids"])  # every document's history


def test_more_than_ten_documents_are_refused_before_any_upload(eager_tasks, portal_a, connected, signnow, deal):
    many = [f"disk:{portal_a.emu.crm.add_disk_file(f'p{i}.pdf', make_pdf([str(i)]))}" for i in range(10)]
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal),
                                  properties={**SEND_TO_BOTH, "extra_documents": many})
    run_worker()
    assert wf.return_values["status"] == "error"
    assert "up to 10 documents" in wf.return_values["error"]
    assert signnow.documents == {}


def test_a_malformed_extra_document_is_explained(eager_tasks, portal_a, connected, signnow, deal):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal),
                                  properties={**SEND_TO_BOTH, "extra_documents": ["NDA.pdf"]})
    run_worker()
    assert "is not field:CODE, disk:ID or docgen:ID" in wf.return_values["error"]


def test_evia_says_it_cannot_send_several_documents(eager_tasks, portal_a, evia, deal, papers):
    connect(portal_a, "evia", f"client_id={EVIA_ID}", f"client_secret={EVIA_KEY}", f"code={evia.issue_auth_code()}",
            "--default")
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal),
                                  properties={**SEND_TO_BOTH, "extra_documents": papers})
    run_worker()
    assert wf.return_values["status"] == "error"
    assert "Evia Sign cannot send several documents in one request" in wf.return_values["error"]
