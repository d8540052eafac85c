"""A manager's "Send for e-signature" rule, from the queue server's call to the workflow's answer."""
import pytest

from bizproc_ext.models import RobotCall
from signing import states
from signing.models import SignatureRequest
from signing.tasks import refresh_request_status
from tests.robots.helpers import SEND_PROPS, deal_doc, run_worker


@pytest.mark.django_db
def test_robot_call_leads_to_one_send_and_one_answer(portal_a, memory_account, memory_provider, deal):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    assert wf.response_status == 200

    run_worker()

    assert memory_provider.sends == 1
    assert len(wf.answers) == 1 and wf.closed
    values = wf.return_values
    req = SignatureRequest.objects.get()
    assert values["request_id"] == str(req.public_id)
    assert values["status"] == "sent"
    assert "anna@customer.test: pending" in values["signers_status"]
    assert values["error"] == ""
    doc = memory_provider.documents[req.external_id]
    assert doc["bytes"].startswith(b"%PDF-")
    assert list(doc["signers"]) == ["anna@customer.test"]  # primary contact only


@pytest.mark.django_db
def test_waiting_robot_is_answered_when_signed_with_the_pdf_on_the_timeline(eager_tasks,
        portal_a, memory_account, memory_provider, deal, django_capture_on_commit_callbacks):
    props = {**SEND_PROPS, "signer_contacts": "all", "wait": "Y", "signer_users": ["user_2"]}
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=props)
    run_worker()
    assert wf.answers == [] and not wf.closed  # waiting for the signers
    assert any("waiting for the signers" in line for line in wf.log)
    call = RobotCall.objects.get()
    assert call.state == RobotCall.WAITING

    req = SignatureRequest.objects.get()
    assert [s.email for s in req.signers.all()] == ["manager@alpha.test", "anna@customer.test", "boris@customer.test"]
    for email in ("manager@alpha.test", "anna@customer.test", "boris@customer.test"):
        memory_provider.sign(req.external_id, email)
    with django_capture_on_commit_callbacks(execute=True):
        refresh_request_status.apply(args=[req.pk, "poll"])

    req.refresh_from_db()
    assert req.status == states.COMPLETED
    assert len(wf.answers) == 1
    assert wf.return_values["status"] == "completed"
    assert wf.return_values["signed_file_url"].startswith("http")
    comments = portal_a.emu.crm.comments_for("deal", deal)
    assert len(comments) == 1
    names = [name for name, _ in comments[0]["files"]]
    assert any("signed" in n for n in names) and any("audit" in n for n in names)
    assert comments[0]["files"][0][1].startswith(b"%PDF-")
    assert "anna@customer.test" in comments[0]["comment"]


@pytest.mark.django_db
def test_declined_request_answers_the_waiting_workflow(eager_tasks, portal_a, memory_account, memory_provider, deal,
                                                       django_capture_on_commit_callbacks):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties={**SEND_PROPS, "wait": "Y"})
    run_worker()
    req = SignatureRequest.objects.get()
    memory_provider.decline(req.external_id, "anna@customer.test")
    with django_capture_on_commit_callbacks(execute=True):
        refresh_request_status.apply(args=[req.pk, "webhook"])
    assert wf.return_values["status"] == "declined"
    assert portal_a.emu.crm.comments_for("deal", deal) == []  # nothing signed to attach


@pytest.mark.django_db
def test_provider_failure_answers_the_workflow_with_error(portal_a, memory_account, memory_provider, deal):
    memory_provider.fail_permanently = "the account is out of envelopes"
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    run_worker()
    assert len(wf.answers) == 1
    assert wf.return_values["status"] == "error"
    assert "out of envelopes" in wf.return_values["error"]
    assert SignatureRequest.objects.get().status == states.ERROR


@pytest.mark.django_db
def test_transient_provider_failure_is_retried_without_a_second_send(portal_a, memory_account, memory_provider, deal):
    memory_provider.fail_sends = 2
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    run_worker()
    assert memory_provider.sends == 1
    assert wf.return_values["status"] == "sent"
    assert RobotCall.objects.get().attempts == 3


@pytest.mark.django_db
def test_bad_settings_get_a_readable_error_not_a_silent_wait(portal_a, memory_account, deal):
    props = {**SEND_PROPS, "signer_contacts": "none", "expiry_days": "soon"}
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=props)
    assert wf.response_status == 200  # recorded; the problem is answered, not refused
    run_worker()
    assert wf.return_values["status"] == "error"
    assert "Expires after (days)" in wf.return_values["error"]


@pytest.mark.django_db
def test_no_connected_provider_is_explained(portal_a, deal):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    run_worker()
    assert wf.return_values["status"] == "error"
    assert "provider" in wf.return_values["error"]


@pytest.mark.django_db
def test_a_file_that_is_not_a_pdf_is_refused(portal_a, memory_account, memory_provider):
    deal = portal_a.emu.crm.add_deal("Word doc", contact_ids=[portal_a.emu.crm.add_contact("C", emails=["c@x.test"])],
                                     files={"ufCrmContract": ("contract.docx", b"PK\x03\x04 not a pdf")})
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    run_worker()
    assert "not a PDF" in wf.return_values["error"]
    assert memory_provider.sends == 0


@pytest.mark.django_db
@pytest.mark.parametrize("document_id", [
    ("crm", "CCrmDocumentLead", "LEAD_{}"),
    ("crm", "Bitrix\\Crm\\Integration\\BizProc\\Document\\Dynamic", "DYNAMIC_177_{}"),
    ("crm", "Bitrix\\Crm\\Integration\\BizProc\\Document\\SmartInvoice", "SMART_INVOICE_{}"),
])
def test_works_on_leads_smart_processes_and_invoices(portal_a, memory_account, memory_provider, pdf_bytes, document_id):
    crm = portal_a.emu.crm
    type_id = {"LEAD": 1, "DYNAMIC": 177, "SMART": 31}[document_id[2].split("_")[0]]
    item = crm.add_item(type_id, "Item", files={"ufCrmContract": ("c.pdf", pdf_bytes)})
    doc = (document_id[0], document_id[1], document_id[2].format(item))
    props = {**SEND_PROPS, "signer_contacts": "none", "signer_emails": ["x@customer.test"], "wait": "Y"}
    wf = portal_a.emu.start_robot("b24sign_send", document_id=doc, properties=props)
    run_worker()
    req = SignatureRequest.objects.get()
    assert (req.entity_type_id, req.entity_id) == (type_id, item)
    assert req.status == states.SENT and wf.answers == []


@pytest.mark.django_db
def test_portal_defaults_fill_what_the_robot_leaves_empty(portal_a, memory_account, memory_provider, deal, monkeypatch):
    from signing.models import PortalSettings
    from tests.support import memory_provider as mp

    PortalSettings.objects.create(portal=portal_a.db, expiry_days=14, reminder_days=0, sender_name="Acme Sales")
    seen = {}
    original = mp.MemoryProvider.send

    def spy(self, spec):
        seen.update(expiry=spec.expiry_days, reminder=spec.reminder_days, subject=spec.subject)
        return original(self, spec)

    monkeypatch.setattr(mp.MemoryProvider, "send", spy)
    props = {k: v for k, v in SEND_PROPS.items() if k != "subject"}
    portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=props)
    run_worker()
    assert seen == {"expiry": 14, "reminder": None, "subject": "Acme Sales: please sign Big deal"}


@pytest.mark.django_db
def test_signed_copy_stays_off_the_timeline_when_the_admin_says_so(eager_tasks, portal_a, memory_account,
                                                                   memory_provider, deal):
    from signing.models import PortalSettings

    PortalSettings.objects.create(portal=portal_a.db, attach_signed_copy=False)
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties={**SEND_PROPS, "wait": "Y"})
    run_worker()
    req = SignatureRequest.objects.get()
    memory_provider.sign(req.external_id, "anna@customer.test")
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        refresh_request_status.apply(args=[req.pk, "poll"])
    assert wf.return_values["status"] == "completed"
    assert wf.return_values["signed_file_url"]  # still downloadable from b24sign
    assert portal_a.emu.crm.comments_for("deal", deal) == []
