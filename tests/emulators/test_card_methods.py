"""Self-tests of the emulated CRM-card methods against their documented rules and errors (b24restdocs):
placement.*, crm.automation.trigger.*, crm.activity.configurable.*, crm.timeline.logmessage.add,
crm.deal.userfield.*, userfieldconfig.*, crm.item.update with user fields, im.notify.system.add."""
from __future__ import annotations

import pytest

from tests.emulators.test_bitrix24_emulator import admin_token, app, call, cloud, portal  # noqa: F401  (fixtures)


def ok(resp):
    assert resp.status_code == 200, resp.text
    return resp.json()["result"]


def err(resp, status=400):
    assert resp.status_code == status, resp.text
    return resp.json()


@pytest.fixture()
def tokens(portal):  # noqa: F811
    portal.add_user(2, "manager@alpha.test", name="Maria")
    admin, _ = admin_token(portal)
    return admin, portal.issue_tokens(2)["access_token"]


def test_placement_bind_get_unbind(portal, tokens):  # noqa: F811
    admin, manager = tokens
    assert err(call(portal, "placement.bind", admin, HANDLER="https://app/x"))["argument"] == "PLACEMENT"
    assert err(call(portal, "placement.bind", admin, PLACEMENT="CRM_DEAL_DETAIL_TAB"))["argument"] == "HANDLER"
    assert err(call(portal, "placement.bind", admin, PLACEMENT="NO_SUCH", HANDLER="https://a/"))["error"] == \
        "ERROR_PLACEMENT_NOT_FOUND"
    assert err(call(portal, "placement.bind", manager, PLACEMENT="CRM_DEAL_DETAIL_TAB", HANDLER="https://a/"),
               403)["error"] == "ACCESS_DENIED"
    assert err(call(portal, "placement.bind", admin, PLACEMENT="CRM_DEAL_DETAIL_TAB", HANDLER="https://a/",
                    USER_ID=2))["error"] == "ERROR_PLACEMENT_USER_MODE"
    assert ok(call(portal, "placement.bind", admin, PLACEMENT="CRM_DYNAMIC_177_DETAIL_TAB", HANDLER="https://a/",
                   TITLE="E-signatures")) is True
    assert err(call(portal, "placement.bind", admin, PLACEMENT="CRM_DYNAMIC_177_DETAIL_TAB",
                    HANDLER="https://a/"))["error"] == "ERROR_PLACEMENT_HANDLER_ALREADY_BINDED"
    [row] = ok(call(portal, "placement.get", admin))
    assert row["placement"] == "CRM_DYNAMIC_177_DETAIL_TAB" and row["title"] == "E-signatures"
    assert err(call(portal, "placement.unbind", admin))["error"] == "ERROR_ARGUMENT"
    assert ok(call(portal, "placement.unbind", admin, PLACEMENT="CRM_DYNAMIC_177_DETAIL_TAB")) == {"count": 2}
    assert ok(call(portal, "placement.get", admin)) == []


def test_triggers(portal, tokens):  # noqa: F811
    admin, manager = tokens
    deal = portal.crm.add_deal("D")
    assert err(call(portal, "crm.automation.trigger.add", admin, NAME="x"))["error_description"] == "Empty trigger code!"
    assert err(call(portal, "crm.automation.trigger.add", admin, CODE="a b", NAME="x"))["error_description"] == \
        "Wrong trigger code!"
    assert err(call(portal, "crm.automation.trigger.add", admin, CODE="done"))["error_description"] == \
        "Empty trigger name!"
    assert err(call(portal, "crm.automation.trigger.add", manager, CODE="done", NAME="Done"), 403)["error"] == \
        "ACCESS_DENIED"
    assert ok(call(portal, "crm.automation.trigger.add", admin, CODE="done", NAME="Done")) is True
    assert err(call(portal, "crm.automation.trigger.execute", admin, CODE="other", OWNER_TYPE_ID=2,
                    OWNER_ID=deal))["error_description"] == "Trigger with code other is not registered."
    assert err(call(portal, "crm.automation.trigger.execute", admin, CODE="done", OWNER_TYPE_ID=99,
                    OWNER_ID=deal))["error_description"] == "Incorrect parameter OWNER_TYPE_ID."
    assert err(call(portal, "crm.automation.trigger.execute", admin, CODE="done", OWNER_TYPE_ID=2,
                    OWNER_ID=0))["error_description"] == "Incorrect parameter OWNER_ID."
    assert ok(call(portal, "crm.automation.trigger.execute", admin, CODE="done", OWNER_TYPE_ID=2, OWNER_ID=deal))
    assert ok(call(portal, "crm.automation.trigger.list", admin)) == [{"NAME": "Done", "CODE": "done"}]
    assert ok(call(portal, "crm.automation.trigger.delete", admin, CODE="done")) is True
    assert portal.triggers == {} and len(portal.trigger_runs) == 1


LAYOUT = {"icon": {"code": "info"}, "header": {"title": "E-signature", "tags": {"s": {"type": "primary",
                                                                                       "title": "Sent"}}},
          "body": {"blocks": {"p": {"type": "text", "properties": {"value": "signNow"}}}},
          "footer": {"buttons": {"open": {"title": "Open", "type": "primary", "action": {"type": "openRestApp"}}}}}


def test_configurable_activity_layout_rules(portal, tokens):  # noqa: F811
    admin, _ = tokens
    deal = portal.crm.add_deal("D")
    base = {"ownerTypeId": 2, "ownerId": deal, "fields": {"completed": "N"}}
    assert err(call(portal, "crm.activity.configurable.add", admin, **base))["error"] == "ERROR_EMPTY_LAYOUT"
    assert err(call(portal, "crm.activity.configurable.add", admin, ownerTypeId=2, ownerId=999, fields={},
                    layout=LAYOUT))["error"] == "NOT_FOUND"
    three = {**LAYOUT, "header": {"title": "x", "tags": {k: {"type": "primary", "title": k} for k in "abc"}}}
    assert err(call(portal, "crm.activity.configurable.add", admin, **base, layout=three))["error"] == "TOO_MANY_ITEMS"
    lavender = {**LAYOUT, "header": {"title": "x", "tags": {"a": {"type": "lavender", "title": "a"}}}}
    assert err(call(portal, "crm.activity.configurable.add", admin, **base, layout=lavender))["error"] == "ENUM_FIELD"
    extra = {**LAYOUT, "header": {"title": "x", "scope": "web"}}
    assert err(call(portal, "crm.activity.configurable.add", admin, **base, layout=extra))["error"] == \
        "FIELD_IS_REDUNDANT"
    no_body = {k: v for k, v in LAYOUT.items() if k != "body"}
    assert err(call(portal, "crm.activity.configurable.add", admin, **base, layout=no_body))["error"] == \
        "FIELD_IS_REQUIRED"
    bad_key = {**LAYOUT, "body": {"blocks": {"a b": {"type": "text", "properties": {"value": "v"}}}}}
    assert err(call(portal, "crm.activity.configurable.add", admin, **base, layout=bad_key))["error"] == \
        "KEY_CONTAIN_WRONG_SYMBOLS"
    incoming = {**base, "fields": {"isIncomingChannel": "Y", "deadline": "2026-01-01T00:00:00"}}
    assert err(call(portal, "crm.activity.configurable.add", admin, **incoming, layout=LAYOUT))["error"] == \
        "INCOMING_ACTIVITY_CAN_NOT_BE_WITH_DEADLINE"
    aid = ok(call(portal, "crm.activity.configurable.add", admin, **base, layout=LAYOUT))["activity"]["id"]
    assert ok(call(portal, "crm.activity.configurable.update", admin, id=aid, fields={"completed": "Y"},
                   layout=LAYOUT)) == {"activity": {"id": aid}}
    assert err(call(portal, "crm.activity.configurable.update", admin, id=aid + 1, fields={},
                    layout=LAYOUT))["error"] == "NOT_FOUND"
    portal.activities[aid]["app"] = "another.app"
    assert err(call(portal, "crm.activity.configurable.update", admin, id=aid, fields={},
                    layout=LAYOUT))["error"] == "ERROR_WRONG_APPLICATION"


def test_logmessage_add(portal, tokens):  # noqa: F811
    admin, _ = tokens
    deal = portal.crm.add_deal("D")
    f = {"entityTypeId": 2, "entityId": deal, "title": "Signed", "text": "Anna signed", "iconCode": "info"}
    assert err(call(portal, "crm.timeline.logmessage.add", admin, fields={**f, "title": ""}))["error"] == "100"
    assert err(call(portal, "crm.timeline.logmessage.add", admin, fields={**f, "entityId": 999}))["error"] == \
        "OWNER_NOT_FOUND"
    msg = ok(call(portal, "crm.timeline.logmessage.add", admin, fields=f))["logMessage"]
    assert msg["title"] == "Signed" and msg["authorId"] == 1


def test_user_fields_and_item_update(portal, tokens):  # noqa: F811
    admin, manager = tokens
    deal = portal.crm.add_deal("D")
    assert err(call(portal, "crm.deal.userfield.add", admin, fields={"USER_TYPE_ID": "string"}))[
        "error_description"] == "The 'FIELD_NAME' field is not found"
    assert err(call(portal, "crm.deal.userfield.add", admin, fields={"FIELD_NAME": "X"}))["error_description"] == \
        "The 'USER_TYPE_ID' field is not found"
    assert "invalid characters" in err(call(portal, "crm.deal.userfield.add", admin, fields={
        "FIELD_NAME": "bad-name", "USER_TYPE_ID": "string"}))["error_description"]
    assert err(call(portal, "crm.deal.userfield.add", admin, fields={"FIELD_NAME": "X", "USER_TYPE_ID": "nope"}))[
        "error_description"] == "Invalid custom type specified"
    fid = ok(call(portal, "crm.deal.userfield.add", admin, fields={"FIELD_NAME": "B24SIGN_STATE",
                                                                   "USER_TYPE_ID": "string"}))
    assert isinstance(fid, int)
    assert [f["FIELD_NAME"] for f in ok(call(portal, "crm.deal.userfield.list", admin))] == ["UF_CRM_B24SIGN_STATE"]
    item = ok(call(portal, "crm.item.update", admin, entityTypeId=2, id=deal,
                   fields={"ufCrm_B24SIGN_STATE": "Sent", "ufCrm_NO_SUCH": "x"}))["item"]
    assert item["ufCrm_B24SIGN_STATE"] == "Sent" and "ufCrm_NO_SUCH" not in item  # unknown fields are ignored
    assert ok(call(portal, "crm.deal.userfield.delete", admin, id=fid)) is True
    item = ok(call(portal, "crm.item.update", admin, entityTypeId=2, id=deal, fields={"ufCrm_B24SIGN_STATE": "x"}))
    assert "ufCrm_B24SIGN_STATE" not in item["item"]
    portal.add_smart_type(177, "Contracts")
    field = {"entityId": "CRM_1", "fieldName": "UF_CRM_1_B24SIGN_STATE", "userTypeId": "string"}
    assert err(call(portal, "userfieldconfig.add", admin, moduleId="crm", field={**field, "fieldName":
                                                                                 "UF_CRM_9_X"}))[
        "error_description"] == "You cannot create custom fields"
    assert err(call(portal, "userfieldconfig.add", admin, moduleId="crm", field={**field, "userTypeId": ""}))[
        "error_description"] == "The 'USER_TYPE_ID' field is not found"
    added = ok(call(portal, "userfieldconfig.add", admin, moduleId="crm", field=field))["field"]
    assert added["fieldName"] == "UF_CRM_1_B24SIGN_STATE"
    assert "already exists" in err(call(portal, "userfieldconfig.add", admin, moduleId="crm", field=field))[
        "error_description"]
    spa = portal.crm.add_smart_item(177, "C")
    item = ok(call(portal, "crm.item.update", admin, entityTypeId=177, id=spa, fields={"ufCrm1_B24SIGN_STATE": "Sent"}))
    assert item["item"]["ufCrm1_B24SIGN_STATE"] == "Sent"
    assert err(call(portal, "crm.deal.userfield.add", manager, fields={"FIELD_NAME": "Y", "USER_TYPE_ID": "string"}))[
        "error_description"] == "Access denied."


def test_notify_system_add(portal, tokens):  # noqa: F811
    admin, _ = tokens
    assert err(call(portal, "im.notify.system.add", admin, MESSAGE="x"))["error"] == "USER_ID_EMPTY"
    assert err(call(portal, "im.notify.system.add", admin, USER_ID=2, MESSAGE="  "))["error"] == "MESSAGE_EMPTY"
    assert err(call(portal, "im.notify.system.add", admin, USER_ID=2, MESSAGE="x", ATTACH="a" * 40000))["error"] == \
        "ATTACH_OVERSIZE"
    first = ok(call(portal, "im.notify.system.add", admin, USER_ID=2, MESSAGE="Signed", TAG="t1"))
    second = ok(call(portal, "im.notify.system.add", admin, USER_ID=2, MESSAGE="Signed", TAG="t1"))
    assert second > first and len(portal.notifications) == 1  # the same TAG replaces the earlier one
    assert portal.notify_sends == 2
