"""The "E-signatures" tab and the send form in the CRM card, opened the way Bitrix24 opens placements."""
from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from bizproc_ext.models import RobotCall
from signing.models import SignatureRequest
from tests.conftest import ADMIN_ID, MANAGER_ID
from tests.robots.helpers import run_worker
from tests.ui.conftest import make_request


def open_placement(client, emu, placement: str, options: dict, user_id: int = ADMIN_ID, path="/card/tab/",
                   lang="en", overrides=None):
    query, body = emu.app_page_request(user_id, placement, options, lang=lang)
    body.update(overrides or {})
    return client.post(f"{path}{'&' if '?' in path else '?'}{urlencode(query)}", body)


def follow(client, response):
    assert response.status_code == 303, response.content[:400]
    return client.get(response["Location"])


def tokens(response) -> dict:
    q = parse_qs(urlsplit(response["Location"]).query)
    return {"t": q["t"][0], "c": q["c"][0]}


@pytest.mark.django_db
def test_tab_lists_the_items_requests_newest_first_with_signers(client, portal_a, memory_account, deal):
    from datetime import timedelta

    from django.utils import timezone

    db = portal_a.db
    old = make_request(db, memory_account, title="Old NDA", status="completed", entity=(2, deal),
                       created_at=timezone.now() - timedelta(days=3))
    new = make_request(db, memory_account, title="New contract", entity=(2, deal), signers=("anna@customer.test",
                                                                                             "boris@customer.test"))
    make_request(db, memory_account, title="Someone else's deal", entity=(2, deal + 100))
    page = follow(client, open_placement(client, portal_a.emu, "CRM_DEAL_DETAIL_TAB", {"ID": str(deal)}))
    html = page.content.decode()
    assert page.status_code == 200
    assert html.index("New contract") < html.index("Old NDA")
    assert "Someone else" not in html
    assert 'data-signer="boris@customer.test"' in html and "In-memory test provider" in html
    assert str(new.public_id) in html and str(old.public_id) in html
    assert 'id="new-request"' in html


@pytest.mark.django_db
def test_tab_refuses_a_forged_auth_and_an_item_bitrix24_does_not_show(client, portal_a, deal):
    forged = open_placement(client, portal_a.emu, "CRM_DEAL_DETAIL_TAB", {"ID": str(deal)},
                            overrides={"AUTH_ID": "forged"})
    assert forged.status_code == 403
    missing = open_placement(client, portal_a.emu, "CRM_DEAL_DETAIL_TAB", {"ID": "99999"})
    assert missing.status_code == 403
    assert open_placement(client, portal_a.emu, "CRM_DEAL_DETAIL_TAB", {}).status_code == 400


@pytest.mark.django_db
def test_another_portals_request_cannot_be_acted_on_through_the_tab(client, portal_a, portal_b, memory_account,
                                                                    memory_provider, deal):
    from signing.models import ProviderAccount

    b_account = ProviderAccount.objects.create(portal=portal_b.db, provider="memory", is_default=True)
    b_req = make_request(portal_b.db, b_account, entity=(2, deal))
    r = open_placement(client, portal_a.emu, "CRM_DEAL_DETAIL_TAB", {"ID": str(deal)})
    tok = tokens(r)
    assert "Supply contract" not in follow(client, r).content.decode()
    assert client.post(f"/card/item/{b_req.public_id}/remind/", tok).status_code == 404
    assert client.post(f"/card/item/{b_req.public_id}/cancel/", tok).status_code == 404


@pytest.mark.django_db
def test_a_manager_may_remind_but_only_the_responsible_or_an_admin_cancels(client, portal_a, memory_account,
                                                                          memory_provider, deal):
    req = make_request(portal_a.db, memory_account, entity=(2, deal))
    memory_provider.documents["mem-x"] = {"status": "sent", "signers": {}, "reminders": 0}
    tok = tokens(open_placement(client, portal_a.emu, "CRM_DEAL_DETAIL_TAB", {"ID": str(deal)}, user_id=MANAGER_ID))
    assert client.post(f"/card/item/{req.public_id}/cancel/", tok).status_code == 403
    assert client.post(f"/card/item/{req.public_id}/remind/", tok).status_code == 200
    assert memory_provider.documents["mem-x"]["reminders"] == 1
    portal_a.emu.crm.get(2, deal)["assignedById"] = MANAGER_ID  # now it is the manager's deal
    tok = tokens(open_placement(client, portal_a.emu, "CRM_DEAL_DETAIL_TAB", {"ID": str(deal)}, user_id=MANAGER_ID))
    assert client.post(f"/card/item/{req.public_id}/cancel/", tok).status_code == 200
    req.refresh_from_db()
    assert req.status == "cancelled"


@pytest.mark.django_db
def test_send_form_from_the_timeline_menu_goes_through_the_robot_pipeline(client, portal_a, memory_account,
                                                                          memory_provider, deal):
    r = open_placement(client, portal_a.emu, "CRM_DEAL_ACTIVITY_TIMELINE_MENU", {"ENTITY_ID": str(deal)},
                       path="/card/send/")
    assert r.status_code == 200
    html = r.content.decode()
    assert "anna@customer.test" in html and "boris@customer.test" in html  # prefilled from the contacts
    assert 'value="ufCrmContract" selected' in html
    form = {"t": html.split('name="t" value="')[1].split('"')[0],
            "c": html.split('name="c" value="')[1].split('"')[0], "provider": "default", "document_source": "field",
            "document_field": "ufCrmContract", "signer_emails": "anna@customer.test", "signer_contacts": "none",
            "signing_order": "sequential", "subject": "Please sign", "message": "", "expiry_days": "",
            "reminder_days": "", "cc_emails": "", "document_id": "", "document_url": ""}
    sent = client.post("/card/send/form/", form)
    assert sent.status_code == 303
    call = RobotCall.objects.get()
    assert call.code == "b24sign_send" and not call.use_subscription and call.auth_user_id == ADMIN_ID
    assert call.document_id == ["crm", "CCrmDocumentDeal", f"DEAL_{deal}"]
    run_worker()
    req = SignatureRequest.objects.get()
    assert req.status == "sent" and memory_provider.sends == 1
    assert [s.email for s in req.signers.all()] == ["anna@customer.test"]
    assert str(req.public_id) in client.get(sent["Location"]).content.decode()


@pytest.mark.django_db
def test_send_form_refuses_a_request_without_signers(client, portal_a, memory_account, deal):
    r = open_placement(client, portal_a.emu, "CRM_DEAL_DETAIL_TAB", {"ID": str(deal)})
    tok = tokens(r)
    page = client.post("/card/send/form/", {**tok, "provider": "default", "document_source": "field",
                                             "document_field": "ufCrmContract", "signer_contacts": "none"})
    assert page.status_code == 400 and "Add at least one signer" in page.content.decode()
    assert not RobotCall.objects.exists()


@pytest.mark.django_db
def test_sign_this_document_preselects_the_items_generated_document(client, portal_a, memory_account, deal,
                                                                    pdf_bytes):
    doc = portal_a.emu.crm.add_generated_document(2, deal, pdf_bytes, title="Offer")
    r = open_placement(client, portal_a.emu, "CRM_DEAL_DOCUMENTGENERATOR_BUTTON", {"ENTITY_ID": str(deal)},
                       path="/card/send/?document=generated")
    html = r.content.decode()
    assert r.status_code == 200
    assert f'value="{doc}" selected' in html and 'value="docgen" selected' in html


@pytest.mark.django_db
def test_send_form_offers_templates_role_mapping_and_prefill_and_sends_with_them(client, portal_a, memory_account,
                                                                                 memory_provider, deal):
    """Issue 13: the card's form has the robot's template, role-mapping and prefill controls."""
    from tests.emulators.bitrix24.docgen import add_template

    tid = add_template(portal_a.emu, "Sales contract", entity_type_ids=("2_category_0",))
    add_template(portal_a.emu, "Lead form", entity_type_ids=(1,))
    r = open_placement(client, portal_a.emu, "CRM_DEAL_ACTIVITY_TIMELINE_MENU", {"ENTITY_ID": str(deal)},
                       path="/card/send/")
    html = r.content.decode()
    templates = html.split('id="p-template_id"')[1].split("</select>")[0]
    assert "Sales contract" in templates and "Lead form" not in templates
    for key in ("template_roles", "prefill_fields", "provider_template_id", "if_open_exists", "delivery"):
        assert f'id="p-{key}"' in html
    form = {"t": html.split('name="t" value="')[1].split('"')[0],
            "c": html.split('name="c" value="')[1].split('"')[0], "provider": "default",
            "document_source": "template", "template_id": str(tid), "template_values": "DocumentNumber=7",
            "signer_emails": "anna@customer.test", "signer_contacts": "none", "signing_order": "sequential",
            "if_open_exists": "return", "delivery": "email"}
    assert client.post("/card/send/form/", form).status_code == 303
    run_worker()
    req = SignatureRequest.objects.get()
    assert req.status == "sent" and req.options["generated"]["template_id"] == tid
    assert portal_a.emu.crm.document_adds[0]["values"] == {"DocumentNumber": "7"}


@pytest.mark.django_db
def test_the_timeline_cards_open_button_lands_on_that_request_in_the_tab(client, portal_a, memory_account, deal):
    req = make_request(portal_a.db, memory_account, entity=(2, deal))
    opts = {"entityTypeId": 2, "entityId": deal, "activityId": 7, "view": "remind", "request": str(req.public_id)}
    r = open_placement(client, portal_a.emu, "DEFAULT", opts, path="/app/")
    page = follow(client, r).content.decode()
    assert f'id="r-{req.public_id}"' in page and "card-focus" in page
    forged = {**opts, "entityId": 99999}
    assert open_placement(client, portal_a.emu, "DEFAULT", forged, path="/app/").status_code == 403


@pytest.mark.django_db
def test_the_responsible_replaces_a_pending_signer_where_the_provider_can(client, portal_a, memory_account,
                                                                          memory_provider, deal, monkeypatch):
    from tests.support import memory_provider as mp

    replaced = []
    monkeypatch.setattr(mp.MemoryProvider, "capabilities", frozenset({"remind", "cancel", "replace_signer"}))
    monkeypatch.setattr(mp.MemoryProvider, "replace_signer", lambda self, req, old, new: replaced.append((old, new)),
                        raising=False)
    req = make_request(portal_a.db, memory_account, entity=(2, deal))
    r = open_placement(client, portal_a.emu, "CRM_DEAL_DETAIL_TAB", {"ID": str(deal)})
    tok = tokens(r)
    assert "replace-form" in follow(client, r).content.decode()
    page = client.post(f"/card/item/{req.public_id}/replace/", {**tok, "old_email": "anna@customer.test",
                                                                "new_email": "anna.new@customer.test"})
    assert page.status_code == 200 and replaced == [("anna@customer.test", "anna.new@customer.test")]
    assert [s.email for s in req.signers.all()] == ["anna.new@customer.test"]
    again = client.post(f"/card/item/{req.public_id}/replace/", {**tok, "old_email": "nobody@x.test",
                                                                 "new_email": "y@x.test"})
    assert again.status_code == 400
    manager = tokens(open_placement(client, portal_a.emu, "CRM_DEAL_DETAIL_TAB", {"ID": str(deal)},
                                    user_id=MANAGER_ID))
    assert client.post(f"/card/item/{req.public_id}/replace/", {**manager, "old_email": "anna.new@customer.test",
                                                                "new_email": "z@x.test"}).status_code == 403


@pytest.mark.django_db
def test_the_send_form_preselects_send_another_since_a_manager_means_a_new_request(client, portal_a, memory_account,
                                                                                   deal):
    r = open_placement(client, portal_a.emu, "CRM_DEAL_ACTIVITY_TIMELINE_MENU", {"ENTITY_ID": str(deal)},
                       path="/card/send/")
    option = r.content.decode().split('id="p-if_open_exists"')[1].split("</select>")[0]
    assert 'value="another" selected' in option


def _send_form(client, emu, user_id=MANAGER_ID, deal=None, **fields):
    r = open_placement(client, emu, "CRM_DEAL_ACTIVITY_TIMELINE_MENU", {"ENTITY_ID": str(deal)}, user_id=user_id,
                       path="/card/send/")
    assert r.status_code == 200
    html = r.content.decode()
    form = {"t": html.split('name="t" value="')[1].split('"')[0],
            "c": html.split('name="c" value="')[1].split('"')[0], "provider": "default", "document_field": "",
            "signer_contacts": "none", "signing_order": "sequential", "subject": "", "message": "",
            "expiry_days": "", "reminder_days": "", "cc_emails": "", "document_url": "", **fields}
    return html, client.post("/card/send/form/", form)


@pytest.mark.django_db
def test_a_manager_cannot_send_a_drive_file_they_cannot_open_from_the_card(client, portal_a, memory_account,
                                                                          memory_provider, deal, pdf_bytes):
    """The form asks Bitrix24 with the manager's own token: the admin's rights are never lent to them."""
    secret = portal_a.emu.crm.add_disk_file("salaries.pdf", pdf_bytes, owner=ADMIN_ID)
    html, page = _send_form(client, portal_a.emu, deal=deal, document_source="disk", drive_file_id=str(secret),
                            signer_emails="attacker@evil.test")
    assert 'id="p-drive_file_id"' in html
    assert page.status_code == 400
    assert f"You cannot open the Drive file {secret}, so you cannot send it." in page.content.decode()
    assert not RobotCall.objects.exists()
    assert portal_a.emu.stats.downloads == 0 and memory_provider.sends == 0


@pytest.mark.django_db
def test_a_drive_file_the_manager_can_open_goes_through_the_robot_pipeline(client, portal_a, memory_account,
                                                                          memory_provider, deal, pdf_bytes):
    shared = portal_a.emu.crm.add_disk_file("offer.pdf", pdf_bytes, owner=ADMIN_ID, shared_with=[MANAGER_ID])
    _html, page = _send_form(client, portal_a.emu, deal=deal, document_source="disk", drive_file_id=str(shared),
                             signer_emails="anna@customer.test")
    assert page.status_code == 303
    call = RobotCall.objects.get()
    assert call.properties["document_id"] == str(shared) and call.auth_user_id == MANAGER_ID
    run_worker()
    req = SignatureRequest.objects.get()
    assert req.status == "sent" and memory_provider.sends == 1
    assert req.options["source_key"] == f"disk:{shared}" and portal_a.emu.stats.downloads == 1


@pytest.mark.django_db
def test_a_drive_file_unshared_after_the_form_is_still_refused_by_the_worker(client, portal_a, memory_account,
                                                                            memory_provider, deal, pdf_bytes):
    """The worker reads with the manager's token again (the form's check is for the manager, not the guarantee)."""
    emu = portal_a.emu
    fid = emu.crm.add_disk_file("offer.pdf", pdf_bytes, owner=ADMIN_ID, shared_with=[MANAGER_ID])
    _html, page = _send_form(client, emu, deal=deal, document_source="disk", drive_file_id=str(fid),
                             signer_emails="anna@customer.test")
    assert page.status_code == 303
    emu.crm.disk[fid]["readers"] = {ADMIN_ID}  # the owner stopped sharing it before the worker ran
    run_worker()
    call = RobotCall.objects.get()
    assert "cannot read the Drive file" in call.last_error or "cannot read the Drive file" in str(call.answer)
    assert emu.stats.downloads == 0 and memory_provider.sends == 0
    assert not SignatureRequest.objects.exists()


@pytest.mark.django_db
def test_the_card_form_and_the_slider_offer_the_same_template_choices(client, portal_a, memory_account, deal):
    """One form: the card lists the docgen templates the robot's slider lists, with the same control."""
    from tests.emulators.bitrix24.docgen import add_template
    from tests.ui.test_robot_settings_sources import control, open_slider

    add_template(portal_a.emu, "Sales contract", entity_type_ids=(2,))
    html, _page = _send_form(client, portal_a.emu, deal=deal, document_source="template")
    slider = open_slider(portal_a, client)
    def select(page, key):
        return control(page, key).split("</select>")[0]

    assert "Sales contract" in select(html, "template_id")
    assert select(html, "template_id") == select(slider, "template_id")
    assert select(html, "provider") == select(slider, "provider")


@pytest.mark.django_db
def test_the_drive_control_speaks_russian(client, portal_a, memory_account, deal):
    r = open_placement(client, portal_a.emu, "CRM_DEAL_ACTIVITY_TIMELINE_MENU", {"ENTITY_ID": str(deal)},
                       path="/card/send/", lang="ru")
    assert "Файл на Диске Битрикс24 (ID)" in r.content.decode()
