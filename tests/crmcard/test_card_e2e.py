"""A request sent by a robot lives in the deal card: timeline card, signer log messages, the three status fields,
the "Document signed" trigger and one notification to the responsible user."""
import time

import pytest

from crmcard.models import CardSetup, CardState
from signing import states
from signing.models import SignatureRequest
from signing.tasks import refresh_request_status
from tests.conftest import MANAGER_ID
from tests.robots.helpers import SEND_PROPS, deal_doc, run_worker


def _sign_all(memory_provider, req, capture, *emails):
    for email in emails:
        memory_provider.sign(req.external_id, email)
        with capture(execute=True):
            refresh_request_status.apply(args=[req.pk, "webhook"])


@pytest.mark.django_db
def test_robot_sent_request_goes_sent_to_signed_on_the_deal_card(eager_tasks, portal_a, memory_account,
                                                                 memory_provider, deal,
                                                                 django_capture_on_commit_callbacks):
    emu = portal_a.emu
    emu.crm.get(2, deal)["assignedById"] = MANAGER_ID
    props = {**SEND_PROPS, "signer_contacts": "all", "wait": "Y"}
    emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=props)
    run_worker()
    req = SignatureRequest.objects.get()

    [card] = emu.activities.values()
    assert (card["ownerTypeId"], card["ownerId"]) == (2, deal)
    assert card["fields"]["responsibleId"] == MANAGER_ID  # the deal's responsible, read in the same batch
    assert card["layout"]["header"]["tags"]["status"] == {"type": "primary", "title": "Sent"}
    texts = str(card["layout"]["body"])
    assert "Anna Buyer" in texts and "waiting" in texts and "In-memory test provider" in texts
    assert set(card["layout"]["footer"]["buttons"]) == {"open", "remind"}
    assert "cancel" in card["layout"]["footer"]["menu"]["items"]
    item = emu.crm.get(2, deal)
    assert item["ufCrm_B24SIGN_STATE"] == "Sent" and item.get("ufCrm_B24SIGN_DATE") in ("", None)

    before = emu.stats.requests
    _sign_all(memory_provider, req, django_capture_on_commit_callbacks, "anna@customer.test")
    # The REST budget: a signer event plus a status move cost one batch (card + log message + fields) in all.
    assert emu.stats.requests - before == 1
    card = emu.activities[card["id"]]
    assert card["layout"]["header"]["tags"]["status"]["title"] == "Partially signed"
    assert [m["title"] for m in emu.log_messages] == ["Signed: Anna Buyer"]

    before = emu.stats.requests
    _sign_all(memory_provider, req, django_capture_on_commit_callbacks, "boris@customer.test")
    req.refresh_from_db()
    # The outcome: the signed copy on the timeline (as before), the waiting robot's answer (as before), and
    # one batch for card + log message + fields + trigger + notification.
    assert emu.stats.requests - before == 3
    assert req.status == states.COMPLETED
    card = emu.activities[card["id"]]
    assert card["layout"]["header"]["tags"]["status"] == {"type": "success", "title": "Signed"}
    assert card["fields"]["completed"] == "Y"
    assert "remind" not in card["layout"]["footer"]["buttons"]
    assert [m["title"] for m in emu.log_messages] == ["Signed: Anna Buyer", "Signed: Boris Second"]
    item = emu.crm.get(2, deal)
    assert item["ufCrm_B24SIGN_STATE"] == "Signed"
    assert item["ufCrm_B24SIGN_DATE"].startswith(str(req.status_changed_at.date()))
    assert item["ufCrm_B24SIGN_FILE"].startswith("http") and "/signing/files/" in item["ufCrm_B24SIGN_FILE"]
    assert [(r["code"], r["entityId"]) for r in emu.trigger_runs] == [("b24sign_signed", deal)]
    assert emu.notify_sends == 1
    [note] = emu.notifications
    assert note["user_id"] == MANAGER_ID and "was signed" in note["message"] and f"/crm/deal/details/{deal}/" in \
        note["message"]
    assert len(emu.crm.comments_for("deal", deal)) == 1  # the signed PDF stays as before

    # Late webhooks and a second "finished" change nothing: no second trigger, notification or update.
    updates = card["updates"]
    with django_capture_on_commit_callbacks(execute=True):
        refresh_request_status.apply(args=[req.pk, "webhook"])
    from crmcard.sync import sync_request
    assert sync_request(req.pk) == 0
    assert len(emu.trigger_runs) == 1 and emu.notify_sends == 1
    assert emu.activities[card["id"]]["updates"] == updates
    assert CardState.objects.get(request=req).last_error == ""


@pytest.mark.django_db
def test_install_binds_the_card_placements_triggers_and_fields(portal_a):
    emu = portal_a.emu
    codes = {b["placement"] for b in emu.placements}
    for entity in ("DEAL", "LEAD", "SMART_INVOICE"):
        assert {f"CRM_{entity}_DETAIL_TAB", f"CRM_{entity}_ACTIVITY_TIMELINE_MENU",
                f"CRM_{entity}_DOCUMENTGENERATOR_BUTTON"} <= codes
    assert set(emu.triggers) == {"b24sign_signed", "b24sign_declined", "b24sign_expired", "b24sign_failed"}
    assert set(emu.userfields["CRM_DEAL"]) == {"UF_CRM_B24SIGN_STATE", "UF_CRM_B24SIGN_DATE", "UF_CRM_B24SIGN_FILE"}
    assert set(emu.userfields["CRM_LEAD"]) == {"UF_CRM_B24SIGN_STATE", "UF_CRM_B24SIGN_DATE", "UF_CRM_B24SIGN_FILE"}
    assert "UF_CRM_SMART_INVOICE_B24SIGN_STATE" in emu.userfields["CRM_SMART_INVOICE"]
    setup = CardSetup.objects.get(portal=portal_a.db)
    assert all(p["state"] == "bound" for p in setup.placements.values())


@pytest.mark.django_db
def test_uninstall_unbinds_everything(portal_a):
    emu = portal_a.emu
    assert emu.placements and emu.triggers
    emu.fire_event("ONAPPUNINSTALL")
    assert emu.placements == [] and emu.triggers == {}
    setup = CardSetup.objects.get(portal=portal_a.db)
    assert setup.placements == {} and setup.triggers == {}


@pytest.mark.django_db
def test_a_deleted_status_field_is_recreated_once_never_in_a_loop(eager_tasks, portal_a, memory_account,
                                                                  memory_provider, deal,
                                                                  django_capture_on_commit_callbacks):
    emu = portal_a.emu
    emu.delete_userfield("CRM_DEAL", "UF_CRM_B24SIGN_STATE")
    emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties={**SEND_PROPS, "wait": "Y"})
    run_worker()
    setup = CardSetup.objects.get(portal=portal_a.db)
    assert setup.fields["2"]["state"] == "ok"  # noticed in the crm.item.update answer, then created again
    assert "UF_CRM_B24SIGN_STATE" in emu.userfields["CRM_DEAL"]
    adds = emu.stats.by_method["crm.deal.userfield.add"]
    req = SignatureRequest.objects.get()
    _sign_all(memory_provider, req, django_capture_on_commit_callbacks, "anna@customer.test")
    assert emu.crm.get(2, deal)["ufCrm_B24SIGN_STATE"] == "Signed"
    assert emu.stats.by_method["crm.deal.userfield.add"] == adds


@pytest.mark.django_db
def test_a_field_that_cannot_be_recreated_is_reported_and_left_alone(eager_tasks, portal_a, memory_account,
                                                                     memory_provider, deal, monkeypatch):
    from tests.emulators.bitrix24 import methods_userfields

    emu = portal_a.emu
    emu.delete_userfield("CRM_DEAL", "UF_CRM_B24SIGN_DATE")
    monkeypatch.setattr(methods_userfields, "TYPES", set())  # the portal now refuses to create fields
    emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    run_worker()
    setup = CardSetup.objects.get(portal=portal_a.db)
    assert setup.fields["2"]["state"] == "failed" and "Invalid custom type" in setup.fields["2"]["message"]
    calls = emu.stats.by_method["crm.item.update"]
    from crmcard.sync import sync_request

    sync_request(SignatureRequest.objects.get().pk)
    assert emu.stats.by_method["crm.item.update"] == calls  # no writes to a broken field set, no retries


@pytest.mark.django_db
def test_a_declined_request_fires_document_declined_and_tells_the_responsible(eager_tasks, portal_a, memory_account,
                                                                               memory_provider, deal,
                                                                               django_capture_on_commit_callbacks):
    emu = portal_a.emu
    emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties={**SEND_PROPS, "wait": "Y"})
    run_worker()
    req = SignatureRequest.objects.get()
    memory_provider.decline(req.external_id, "anna@customer.test")
    with django_capture_on_commit_callbacks(execute=True):
        refresh_request_status.apply(args=[req.pk, "webhook"])
    [card] = emu.activities.values()
    assert card["layout"]["header"]["tags"]["status"] == {"type": "failure", "title": "Declined"}
    assert [m["title"] for m in emu.log_messages] == ["Declined: Anna Buyer"]
    assert emu.crm.get(2, deal)["ufCrm_B24SIGN_STATE"] == "Declined"
    assert emu.crm.get(2, deal)["ufCrm_B24SIGN_FILE"] == ""
    assert [r["code"] for r in emu.trigger_runs] == ["b24sign_declined"]
    assert emu.notify_sends == 1 and "was declined" in emu.notifications[0]["message"]


@pytest.mark.django_db
def test_a_sync_seconds_after_the_outcome_does_not_write_the_signed_document_field_again(
        eager_tasks, portal_a, memory_account, memory_provider, deal, django_capture_on_commit_callbacks, monkeypatch):
    # The e2e test above was flaky: a signed-file link carries the second it was signed in, so a sync in a
    # later second than the outcome's saw a "new" link and wrote crm.item.update again. Here the clock moves on.
    from crmcard.sync import sync_request

    emu = portal_a.emu
    emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties={**SEND_PROPS, "wait": "Y"})
    run_worker()
    req = SignatureRequest.objects.get()
    _sign_all(memory_provider, req, django_capture_on_commit_callbacks, "anna@customer.test")
    req.refresh_from_db()
    assert req.status == states.COMPLETED
    link = emu.crm.get(2, deal)["ufCrm_B24SIGN_FILE"]
    updates = emu.stats.by_method["crm.item.update"]

    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)
    assert sync_request(req.pk) == 0
    assert emu.stats.by_method["crm.item.update"] == updates
    assert emu.crm.get(2, deal)["ufCrm_B24SIGN_FILE"] == link  # the first link stays, valid for 30 days
