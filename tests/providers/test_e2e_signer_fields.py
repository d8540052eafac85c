"""Signers from the CRM item's own fields (issue 13, item 6): the deal's responsible employee, a contact
bound in a custom field and an e-mail typed into a text field sign, chosen in the slider from
``document_fields``; signNow is the strict emulator.
"""
import pytest

from signing.models import SignatureRequest
from tests.conftest import MANAGER_ID
from tests.providers.flows import SEND_TO_BOTH, SIGNNOW_LOGIN, account_of, connect
from tests.robots.helpers import deal_doc, run_worker

BY_FIELDS = {**SEND_TO_BOTH, "wait": "N", "signer_contacts": "none",
             "signer_fields": ["user:ASSIGNED_BY_ID", "contact:UF_CRM_BUYER", "email:UF_CRM_LAWYER_EMAIL"]}


@pytest.fixture
def connected(portal_a, signnow):
    connect(portal_a, "signnow", *SIGNNOW_LOGIN, "--default")
    return account_of(portal_a, "signnow")


@pytest.fixture
def fielded_deal(portal_a, pdf_bytes):
    crm = portal_a.emu.crm
    buyer = crm.add_contact("Clara", "Buyer", emails=["clara@customer.test"])
    return crm.add_deal("Fielded deal", files={"ufCrmContract": ("contract.pdf", pdf_bytes)},
                        assigned_by_id=MANAGER_ID, ufCrmBuyer=f"C_{buyer}", ufCrmLawyerEmail="lex@law.test")


def test_employee_contact_and_email_fields_of_the_deal_sign(eager_tasks, portal_a, connected, signnow, fielded_deal):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(fielded_deal), properties=BY_FIELDS)
    run_worker()
    assert wf.return_values["status"] == "sent", wf.return_values
    req = SignatureRequest.objects.get()
    rows = list(req.signers.values_list("email", "name", "user_id", "order"))
    assert rows == [("manager@alpha.test", "Maria Manager", MANAGER_ID, 1), ("clara@customer.test", "Clara Buyer", None, 2),
                    ("lex@law.test", "", None, 3)]
    [doc] = signnow.documents.values()
    invited = [c for c in signnow.calls_to("POST", r"^/document/[0-9a-f]+/invite$") if c["status"] == 200]
    assert len(invited) == 1
    assert {t["email"] for t in invited[0]["json"]["to"]} == {"manager@alpha.test", "clara@customer.test",
                                                            "lex@law.test"}


def test_an_empty_signer_field_is_an_input_error_before_any_send(eager_tasks, portal_a, connected, signnow,
                                                                 fielded_deal):
    props = {**BY_FIELDS, "signer_fields": ["email:UF_CRM_NOBODY"]}
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(fielded_deal), properties=props)
    run_worker()
    assert wf.return_values["status"] == "error"
    assert "UF_CRM_NOBODY" in wf.return_values["error"] and "empty" in wf.return_values["error"]
    assert signnow.documents == {}


def test_a_malformed_signer_field_is_explained(eager_tasks, portal_a, connected, signnow, fielded_deal):
    props = {**BY_FIELDS, "signer_fields": ["ASSIGNED_BY_ID"]}
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(fielded_deal), properties=props)
    run_worker()
    assert "expected user:CODE" in wf.return_values["error"]
    assert signnow.documents == {}
