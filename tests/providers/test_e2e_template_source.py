"""Document source "Template" (issue 13, item 1): Maria's rule generates the contract from the portal's
document-generator template for her deal, waits (bounded, re-queued) for Bitrix24's PDF conversion and
sends that PDF through signNow (strict emulator).  The Bitrix24 emulator converts asynchronously.
"""
import pytest

from bizproc_ext.models import RobotCall
from signing.models import SignatureRequest
from tests.emulators.bitrix24.docgen import add_template, delete_template
from tests.providers.flows import SEND_TO_BOTH, SIGNNOW_LOGIN, account_of, connect
from tests.robots.helpers import deal_doc, run_worker

FROM_TEMPLATE = {**SEND_TO_BOTH, "wait": "N", "document_source": "template", "document_field": "",
                 "template_values": "DocumentNumber=2026-001\nPaymentTerms=30 days"}


@pytest.fixture
def connected(portal_a, signnow):
    connect(portal_a, "signnow", *SIGNNOW_LOGIN, "--default")
    return account_of(portal_a, "signnow")


def fire(portal, deal, **props):
    wf = portal.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties={**FROM_TEMPLATE, **props})
    run_worker()
    return wf


def test_the_contract_is_generated_from_the_template_and_sent_once_its_pdf_is_ready(
        eager_tasks, portal_a, connected, signnow, deal):
    tid = add_template(portal_a.emu, "Sales contract", entity_type_ids=("2_category_0",), pdf_after_gets=3)
    wf = fire(portal_a, deal, template_id=str(tid))

    assert wf.return_values["status"] == "sent", wf.return_values
    [add] = portal_a.emu.crm.document_adds  # generated once, although the call was re-queued while converting
    assert add["values"] == {"DocumentNumber": "2026-001", "PaymentTerms": "30 days"}
    assert int(add["templateId"]) == tid and int(add["entityId"]) == deal
    assert RobotCall.objects.get().attempts == 3  # two rounds back in the queue while Bitrix24 converted
    [doc] = signnow.documents.values()
    assert b"Sales contract" in doc["pdf"] and b"DocumentNumber: 2026-001" in doc["pdf"]  # the generated PDF
    req = SignatureRequest.objects.get()
    [event] = req.events.filter(kind="generated")
    assert "Sales contract Big deal" in event.message and event.payload["template_id"] == tid
    [comment] = portal_a.emu.crm.comments_for("deal", deal)
    assert "generated from template" in comment["comment"] and str(event.payload["id"]) in comment["comment"]


def test_the_generated_pdf_carries_the_values(eager_tasks, portal_a, connected, signnow, deal):
    tid = add_template(portal_a.emu, "Sales contract", pdf_after_gets=1)
    fire(portal_a, deal, template_id=str(tid))
    req = SignatureRequest.objects.get()
    generated = portal_a.emu.crm.documents[req.options["generated"]["id"]]
    pdf = portal_a.emu.files[generated["pdf_fid"]]["data"]
    assert b"DocumentNumber: 2026-001" in pdf and b"For: Big deal" in pdf
    assert req.document_size == len(pdf)


def test_a_pdf_that_never_gets_ready_is_answered_with_an_error_after_the_bounded_wait(
        eager_tasks, portal_a, connected, signnow, deal, settings):
    settings.DOCGEN_PDF_MAX_WAIT = 60
    tid = add_template(portal_a.emu, "Stuck contract", pdf_after_gets=None)  # conversion hangs
    wf = fire(portal_a, deal, template_id=str(tid))
    call = RobotCall.objects.get()
    assert wf.answers == [] and call.state == RobotCall.QUEUED  # re-queued with a countdown, not spinning
    assert "not ready yet" in call.last_error

    req = SignatureRequest.objects.get()  # a minute later ...
    req.options["generated"]["at"] -= 61
    SignatureRequest.objects.filter(pk=req.pk).update(options=req.options)
    run_worker()
    assert wf.return_values["status"] == "error"
    assert "was not ready after 60 s" in wf.return_values["error"]
    assert signnow.documents == {}  # nothing went out
    assert len(portal_a.emu.crm.document_adds) == 1


def test_a_deleted_template_is_an_input_error(eager_tasks, portal_a, connected, signnow, deal):
    tid = add_template(portal_a.emu, "Old contract")
    delete_template(portal_a.emu, tid)
    wf = fire(portal_a, deal, template_id=str(tid))
    assert wf.return_values["status"] == "error"
    assert "Cannot create document on deleted template" in wf.return_values["error"]
    assert RobotCall.objects.get().attempts == 1 and signnow.documents == {}


def test_no_template_chosen_is_explained(eager_tasks, portal_a, connected, signnow, deal):
    wf = fire(portal_a, deal, template_id="")
    assert "choose the document template" in wf.return_values["error"]


def test_the_same_template_fired_again_returns_the_open_request(eager_tasks, portal_a, connected, signnow, deal):
    tid = add_template(portal_a.emu, "Sales contract")
    first = fire(portal_a, deal, template_id=str(tid))
    again = fire(portal_a, deal, template_id=str(tid))
    assert again.return_values["open_request"] == "returned"
    assert again.return_values["request_id"] == first.return_values["request_id"]
    assert len(portal_a.emu.crm.document_adds) == 1  # no second document generated either
