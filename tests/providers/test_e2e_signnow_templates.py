"""signNow templates with role mapping and prefill (issue 13, item 2), against the strict signNow emulator.

Portal A's admin keeps a "Sales agreement" template in signNow with two roles (Buyer, Seller) and two
text fields (Price, Deal).  Maria's rule maps Buyer to the deal's primary contact and Seller to herself,
and fills Price and Deal from the deal's own fields.
"""
import pytest

from signing.models import SignatureRequest
from tests.conftest import MANAGER_ID
from tests.emulators.pdf import make_pdf
from tests.providers.flows import ANNA, EVIA_ID, EVIA_KEY, SEND_TO_BOTH, SIGNNOW_LOGIN, account_of, connect
from tests.robots.helpers import deal_doc, run_worker

SELLER = "manager@alpha.test"
AGREEMENT_FIELDS = [{"type": "signature", "role": "Buyer", "name": "buyer_signature"},
                    {"type": "signature", "role": "Seller", "name": "seller_signature"},
                    {"type": "text", "role": "Seller", "name": "Price"},
                    {"type": "text", "role": "Seller", "name": "Deal"}]


def from_template(template_id, **extra):
    return {**SEND_TO_BOTH, "wait": "Y", "signer_contacts": "none", "provider_template_id": template_id,
            "template_roles": f"Buyer=primary_contact\nSeller=user_{MANAGER_ID}",
            "prefill_fields": "Price=OPPORTUNITY\nDeal=TITLE", **extra}


@pytest.fixture
def connected(portal_a, signnow):
    connect(portal_a, "signnow", *SIGNNOW_LOGIN, "--default")
    return account_of(portal_a, "signnow")


@pytest.fixture
def agreement(signnow):
    return signnow.add_template("Sales agreement", AGREEMENT_FIELDS)


@pytest.fixture
def priced_deal(portal_a, pdf_bytes):
    crm = portal_a.emu.crm
    anna = crm.add_contact("Anna", "Buyer", emails=[ANNA])
    return crm.add_deal("Big deal", contact_ids=[anna], opportunity=5000)


def fire(portal, deal, props):
    wf = portal.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=props)
    run_worker()
    return wf


def invites(signnow):
    return [c for c in signnow.calls_to("POST", r"^/document/[0-9a-f]+/invite$") if c["status"] == 200]


def test_the_request_is_made_from_the_template_with_roles_mapped_and_fields_prefilled(
        eager_tasks, portal_a, connected, signnow, agreement, priced_deal):
    wf = fire(portal_a, priced_deal, from_template(agreement))
    assert wf.answers == [], wf.return_values  # sent, waiting for the signers
    [copy] = signnow.calls_to("POST", rf"^/template/{agreement}/copy$")
    assert copy["status"] == 200
    [prefill] = signnow.calls_to("PUT", r"^/v2/documents/[0-9a-f]+/prefill-texts$")
    assert prefill["json"] == {"fields": [{"field_name": "Price", "prefilled_text": "5000"},
                                          {"field_name": "Deal", "prefilled_text": "Big deal"}]}
    [invite] = invites(signnow)
    assert {(t["role"], t["email"]) for t in invite["json"]["to"]} == {("Buyer", ANNA), ("Seller", SELLER)}
    assert signnow.calls_to("POST", r"^/document$") == []  # nothing uploaded: the template is the document

    req = SignatureRequest.objects.get()
    signnow.sign(req.external_id, ANNA)
    signnow.sign(req.external_id, SELLER)
    assert wf.return_values["status"] == "completed"
    [comment] = portal_a.emu.crm.comments_for("deal", priced_deal)
    pdf = comment["files"][0][1]
    assert b"Price: 5000" in pdf and b"Deal: Big deal" in pdf  # the prefilled fields in the signed PDF


def test_an_unmapped_role_is_an_input_error_before_anything_is_sent(eager_tasks, portal_a, connected, signnow,
                                                                    agreement, priced_deal):
    wf = fire(portal_a, priced_deal, from_template(agreement, template_roles="Buyer=primary_contact"))
    assert wf.return_values["status"] == "error"
    assert "role(s) Seller not mapped" in wf.return_values["error"]
    assert signnow.calls_to("POST", r"/copy$") == [] and invites(signnow) == []


def test_a_prefill_field_the_template_lacks_is_an_input_error_before_anything_is_sent(
        eager_tasks, portal_a, connected, signnow, agreement, priced_deal):
    wf = fire(portal_a, priced_deal, from_template(agreement, prefill_fields="Discount=OPPORTUNITY"))
    assert wf.return_values["status"] == "error"
    assert "no text field Discount" in wf.return_values["error"] and "Price, Deal" in wf.return_values["error"]
    assert signnow.calls_to("POST", r"/copy$") == [] and invites(signnow) == []


def test_a_role_the_template_does_not_have_is_named(eager_tasks, portal_a, connected, signnow, agreement,
                                                    priced_deal):
    roles = f"Buyer=primary_contact\nSeller=user_{MANAGER_ID}\nWitness=email:w@x.test"
    wf = fire(portal_a, priced_deal, from_template(agreement, template_roles=roles))
    assert "has no role Witness" in wf.return_values["error"]


def test_a_template_deleted_in_signnow_is_explained(eager_tasks, portal_a, connected, signnow, agreement,
                                                    priced_deal):
    signnow.delete_template(agreement)
    wf = fire(portal_a, priced_deal, from_template(agreement))
    assert wf.return_values["status"] == "error"
    assert "no longer exists" in wf.return_values["error"]
    assert invites(signnow) == []


def test_fixed_email_and_crm_field_sources(eager_tasks, portal_a, connected, signnow, agreement, pdf_bytes):
    deal = portal_a.emu.crm.add_deal("Field deal", ufCrmBuyerEmail="bea@buyer.test", opportunity=10)
    roles = "Buyer=field:UF_CRM_BUYER_EMAIL\nSeller=email:boss@acme-sales.test"
    fire(portal_a, deal, from_template(agreement, template_roles=roles))
    [invite] = invites(signnow)
    assert {(t["role"], t["email"]) for t in invite["json"]["to"]} == {("Buyer", "bea@buyer.test"),
                                                                      ("Seller", "boss@acme-sales.test")}


def test_text_tags_in_an_uploaded_pdf_give_the_roles(eager_tasks, portal_a, connected, signnow):
    tagged = make_pdf(['Contract\n{{t:s;r:y;o:"Signer 1";}}\n{{t:s;r:y;o:"Signer 2";}}'])
    crm = portal_a.emu.crm
    anna = crm.add_contact("Anna", "Buyer", emails=[ANNA])
    deal = crm.add_deal("Tagged", contact_ids=[anna], files={"ufCrmContract": ("c.pdf", tagged)})
    props = {**SEND_TO_BOTH, "wait": "N", "signer_contacts": "none", "text_tags": "Y",
             "template_roles": "Signer 2=primary_contact\nSigner 1=email:boss@acme-sales.test"}
    wf = fire(portal_a, deal, props)
    assert wf.return_values["status"] == "sent", wf.return_values
    assert len(signnow.calls_to("POST", r"^/document/fieldextract$")) == 1
    [invite] = invites(signnow)
    assert {(t["role"], t["email"]) for t in invite["json"]["to"]} == {("Signer 2", ANNA),
                                                                      ("Signer 1", "boss@acme-sales.test")}


def test_evia_says_it_has_no_templates(eager_tasks, portal_a, evia, priced_deal):
    connect(portal_a, "evia", f"client_id={EVIA_ID}", f"client_secret={EVIA_KEY}", f"code={evia.issue_auth_code()}",
            "--default")
    wf = fire(portal_a, priced_deal, from_template("abc123"))
    assert wf.return_values["status"] == "error"
    assert "Evia Sign cannot create documents from its own templates" in wf.return_values["error"]
