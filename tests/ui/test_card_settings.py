"""Settings → CRM card: placements with their live state, "bind again", status fields on/off and mapped."""
import pytest

from crmcard.models import CardSetup


@pytest.mark.django_db
def test_settings_show_a_placement_bitrix24_lost_and_bind_again_restores_it(client, portal_a, admin_token):
    emu = portal_a.emu
    emu.placements = [b for b in emu.placements if b["placement"] != "CRM_DEAL_DETAIL_TAB"]
    page = client.get("/app/settings/crm/", {"t": admin_token}).content.decode()
    assert 'data-code="CRM_DEAL_DETAIL_TAB" data-state="missing"' in page
    assert 'data-code="CRM_LEAD_DETAIL_TAB" data-state="bound"' in page
    r = client.post("/app/settings/crm/bind/", {"t": admin_token})
    assert r.status_code == 200
    assert 'data-code="CRM_DEAL_DETAIL_TAB" data-state="bound"' in r.content.decode()
    codes = [b["placement"] for b in emu.placements]
    assert codes.count("CRM_DEAL_DETAIL_TAB") == 1 and codes.count("CRM_LEAD_DETAIL_TAB") == 1  # never twice


@pytest.mark.django_db
def test_a_new_smart_process_gets_its_tab_on_bind_again(client, portal_a, admin_token):
    portal_a.emu.add_smart_type(177, "Contracts")
    client.post("/app/settings/crm/bind/", {"t": admin_token})
    assert "CRM_DYNAMIC_177_DETAIL_TAB" in {b["placement"] for b in portal_a.emu.placements}
    assert "UF_CRM_1_B24SIGN_STATE" in portal_a.emu.userfields["CRM_1"]  # userfieldconfig.add for the smart process


@pytest.mark.django_db
def test_a_manager_cannot_bind_or_change_fields(client, portal_a, manager_token):
    assert client.post("/app/settings/crm/bind/", {"t": manager_token}).status_code == 403
    assert client.post("/app/settings/crm/fields/", {"t": manager_token}).status_code == 403


@pytest.mark.django_db
def test_admin_maps_deals_to_existing_fields_and_turns_leads_off(client, portal_a, admin_token):
    form = {"t": admin_token, "e2_enabled": "on", "e2_status": "UF_CRM_OLD_STATUS", "e2_date": "UF_CRM_OLD_DATE",
            "e2_file": "UF_CRM_OLD_LINK", "e31_enabled": "on"}
    assert client.post("/app/settings/crm/fields/", form).status_code == 200
    setup = CardSetup.objects.get(portal=portal_a.db)
    assert setup.fields["2"]["mapped"] and setup.fields["2"]["status"] == "UF_CRM_OLD_STATUS"
    assert setup.fields["1"]["enabled"] is False
    bad = client.post("/app/settings/crm/fields/", {**form, "e2_date": "not a field"})
    assert bad.status_code == 400


@pytest.mark.django_db
def test_admin_removes_b24sign_from_the_card_with_placement_unbind_and_trigger_delete(client, portal_a, admin_token):
    emu = portal_a.emu
    emu.placements.append({"placement": "CRM_DEAL_DETAIL_TAB", "handler": "https://other.app/tab/", "userId": 0})
    r = client.post("/app/settings/crm/remove/", {"t": admin_token})
    assert r.status_code == 200
    assert emu.placements == [{"placement": "CRM_DEAL_DETAIL_TAB", "handler": "https://other.app/tab/", "userId": 0}]
    assert emu.triggers == {}
    assert emu.stats.by_method["placement.unbind"] > 0 and emu.stats.by_method["crm.automation.trigger.delete"] == 4
