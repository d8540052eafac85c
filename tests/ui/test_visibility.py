"""Issue 11 part A, who sees what: admins all; others by their own CRM rights; HR documents only one's own;
the signed PDF for admins, the item's responsible user and the request's creator; page tokens for POSTs."""
from __future__ import annotations

import time

from django.core.files.base import ContentFile

from bizproc_ext.models import RobotCall
from signing.models import ProviderAccount, SignerRow
from tests.conftest import ADMIN_ID, MANAGER_ID

from .conftest import make_request, open_app, token_of

OTHER_ID = 5


def _ids(response) -> set[str]:
    html = response.content.decode()
    return {chunk.split('"', 1)[0] for chunk in html.split('class="request-row" data-id="')[1:]}


def _setup(portal_a, memory_account):
    crm = portal_a.emu.crm
    portal_a.emu.add_user(OTHER_ID, "other@alpha.test", name="Oleg")
    crm.read_scope[MANAGER_ID] = "own"  # the manager reads only the deals assigned to them
    mine = make_request(portal_a.db, memory_account, title="Mine",
                        entity=(2, crm.add_deal("Manager's deal", assigned_by_id=MANAGER_ID)))
    theirs = make_request(portal_a.db, memory_account, title="Theirs",
                          entity=(2, crm.add_deal("Someone else's deal", assigned_by_id=OTHER_ID)))
    return mine, theirs


def test_a_manager_sees_only_requests_of_crm_items_they_can_read(client, portal_a, memory_account):
    mine, theirs = _setup(portal_a, memory_account)
    manager = token_of(open_app(client, portal_a.emu, MANAGER_ID))
    admin = token_of(open_app(client, portal_a.emu, ADMIN_ID))

    assert _ids(client.get(f"/app/requests/?t={manager}")) == {str(mine.public_id)}
    assert client.get(f"/app/requests/{theirs.public_id}/?t={manager}").status_code == 404
    assert client.get(f"/app/requests/{mine.public_id}/?t={manager}").status_code == 200
    assert _ids(client.get(f"/app/requests/?t={admin}")) == {str(mine.public_id), str(theirs.public_id)}


def test_crm_read_checks_use_the_users_own_token_and_are_cached_briefly(client, portal_a, memory_account):
    mine, theirs = _setup(portal_a, memory_account)
    manager = token_of(open_app(client, portal_a.emu, MANAGER_ID))
    stats = portal_a.emu.stats
    client.get(f"/app/requests/?t={manager}")
    batches = stats.by_method.get("batch", 0)
    client.get(f"/app/requests/?t={manager}")
    assert stats.by_method.get("batch", 0) == batches  # the answers were remembered
    portal_a.emu.crm.read_scope[MANAGER_ID] = "all"
    assert _ids(client.get(f"/app/requests/?t={manager}")) == {str(mine.public_id)}  # still cached, briefly


def test_nobody_sees_another_persons_hr_documents(client, portal_a, memory_account):
    kedo = ProviderAccount.objects.create(portal=portal_a.db, provider="b24kedo")
    deal_id = portal_a.emu.crm.add_deal("Staff deal", assigned_by_id=MANAGER_ID)
    own = make_request(portal_a.db, kedo, title="My leave request", entity=(2, deal_id), signers=())
    SignerRow.objects.create(request=own, email="manager@alpha.test", user_id=MANAGER_ID, order=1, role="signer")
    other = make_request(portal_a.db, kedo, title="Oleg's contract", entity=(2, deal_id), signers=())
    SignerRow.objects.create(request=other, email="other@alpha.test", user_id=OTHER_ID, order=1, role="signer")
    manager = token_of(open_app(client, portal_a.emu, MANAGER_ID))

    assert _ids(client.get(f"/app/requests/?t={manager}")) == {str(own.public_id)}
    assert client.get(f"/app/requests/{other.public_id}/?t={manager}").status_code == 404


def test_the_signed_pdf_is_for_admins_the_responsible_user_and_the_creator(client, portal_a, memory_account,
                                                                            pdf_bytes):
    crm = portal_a.emu.crm
    portal_a.emu.add_user(OTHER_ID, "other@alpha.test", name="Oleg")
    req = make_request(portal_a.db, memory_account, status="completed", title="Lease",
                       entity=(2, crm.add_deal("Lease deal", assigned_by_id=OTHER_ID)))
    req.signed_file.save("x.pdf", ContentFile(pdf_bytes))
    url = f"/app/requests/{req.public_id}/signed.pdf"
    manager = token_of(open_app(client, portal_a.emu, MANAGER_ID))
    html = client.get(f"/app/requests/{req.public_id}/?t={manager}").content.decode()
    assert "Lease" in html and 'id="download"' not in html  # may read the deal, not the signed copy
    assert client.get(url, {"t": manager}).status_code == 404

    for user in (ADMIN_ID, OTHER_ID):  # the admin and the deal's responsible user
        assert client.get(url, {"t": token_of(open_app(client, portal_a.emu, user))}).status_code == 200
    RobotCall.objects.create(portal=portal_a.db, code="b24sign_send", event_token="x|y|1.sig", workflow_id="w",
                             signature_request=req, auth_user_id=MANAGER_ID)  # the manager's robot created it
    assert client.get(url, {"t": token_of(open_app(client, portal_a.emu, MANAGER_ID))}).status_code == 200


def test_post_actions_take_the_page_token_from_the_form_or_header_only(client, portal_a, memory_account,
                                                                       memory_provider):
    admin = token_of(open_app(client, portal_a.emu, ADMIN_ID))
    req = make_request(portal_a.db, memory_account, external_id="mem-q")
    memory_provider.documents["mem-q"] = {"status": "sent", "signers": {}, "reminders": 0}
    url = f"/app/requests/{req.public_id}/remind/"
    assert client.post(f"{url}?t={admin}").status_code == 401  # a link is never enough to act
    assert memory_provider.documents["mem-q"]["reminders"] == 0
    assert client.post(url, {"t": admin}).status_code == 200
    assert client.post(url, HTTP_X_B24SIGN_TOKEN=admin).status_code == 200
    assert memory_provider.documents["mem-q"]["reminders"] == 2


def test_admin_actions_on_an_old_page_ask_bitrix24_again(client, portal_a, memory_account, monkeypatch):
    admin = token_of(open_app(client, portal_a.emu, ADMIN_ID))
    portal_a.emu.users[ADMIN_ID]["ADMIN"] = False  # demoted after opening the app
    data = {"t": admin, "sender_name": "Acme", "expiry_days": "10", "reminder_days": "2"}
    assert client.post("/app/settings/defaults/", data).status_code == 200  # a fresh page: no re-check yet

    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 301)
    response = client.post("/app/settings/defaults/", {**data, "sender_name": "Evil"})
    assert response.status_code == 403
    from signing.models import PortalSettings

    assert PortalSettings.for_portal(portal_a.db).sender_name == "Acme"


def test_a_page_whose_user_token_is_gone_asks_to_reopen_the_app(client, portal_a, memory_account):
    import redis
    from django.conf import settings

    _setup(portal_a, memory_account)
    manager = token_of(open_app(client, portal_a.emu, MANAGER_ID))
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # the kept user token (and the cached answers) are gone
    response = client.get(f"/app/requests/?t={manager}")
    assert response.status_code == 401 and b"open the application again" in response.content


def test_the_crm_card_tab_hides_others_hr_documents_and_the_signed_copy(client, portal_a, memory_account,
                                                                        pdf_bytes):
    from tests.ui.test_card_tab import follow, open_placement, tokens

    portal_a.emu.add_user(OTHER_ID, "other@alpha.test", name="Oleg")
    deal = portal_a.emu.crm.add_deal("Staff deal", assigned_by_id=OTHER_ID)  # readable, not the manager's
    kedo = ProviderAccount.objects.create(portal=portal_a.db, provider="b24kedo")
    hr = make_request(portal_a.db, kedo, title="Oleg's HR contract", entity=(2, deal), signers=())
    SignerRow.objects.create(request=hr, email="other@alpha.test", user_id=OTHER_ID, order=1, role="signer")
    lease = make_request(portal_a.db, memory_account, title="Lease", status="completed", entity=(2, deal))
    lease.signed_file.save("x.pdf", ContentFile(pdf_bytes))

    opened = open_placement(client, portal_a.emu, "CRM_DEAL_DETAIL_TAB", {"ID": str(deal)}, user_id=MANAGER_ID)
    html = follow(client, opened).content.decode()
    assert "Lease" in html and "Oleg&#x27;s HR contract" not in html and "HR contract" not in html
    assert f"/card/item/{lease.public_id}/signed" not in html
    tok = tokens(opened)
    assert client.get(f"/card/item/{lease.public_id}/signed.pdf", tok).status_code == 404
    assert client.post(f"/card/item/{hr.public_id}/remind/", tok).status_code == 404

    responsible = tokens(open_placement(client, portal_a.emu, "CRM_DEAL_DETAIL_TAB", {"ID": str(deal)},
                                        user_id=OTHER_ID))
    assert client.get(f"/card/item/{lease.public_id}/signed.pdf", responsible).status_code == 200
