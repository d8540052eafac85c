"""Self-tests of the Bitrix24 cloud emulator (plain requests; no Django)."""
from __future__ import annotations

import base64
import threading
import time

import pytest
import requests

from tests.emulators.base import EmulatorServer, Response
from tests.emulators.bitrix24 import Bitrix24Cloud
from tests.emulators.bitrix24.core import start_server
from tests.emulators.pdf import is_pdf, make_pdf

BROWSER = {"User-Agent": "b24sign/1.0", "Accept": "*/*", "Accept-Language": "en"}


class FakeApp:
    """A stand-in for our Django app: records every POST it gets and answers 200."""

    def __init__(self):
        self.calls: list[dict] = []
        self.status = 200
        self.server = EmulatorServer("fake-app")
        self.server.add_route("*", r"^/.*$", self._any)
        start_server(self.server)
        self.url = self.server.base_url

    def _any(self, req):
        self.calls.append({"path": req.path, "headers": req.headers, "body": req.body, "form": req.form()
                           if req.content_type == "application/x-www-form-urlencoded" else None})
        return Response(self.status, "Ok")


@pytest.fixture()
def app():
    a = FakeApp()
    yield a
    a.server.stop()


@pytest.fixture()
def cloud(app):
    c = Bitrix24Cloud(client_id="local.b24sign", client_secret="s3cret", app_url=app.url)
    c.start()
    yield c
    c.stop()


@pytest.fixture()
def portal(cloud):
    return cloud.add_portal("alpha", rate=(50, 20))


def admin_token(portal, user_id=1):
    _, body = portal.install_request(user_id=user_id)
    return body["AUTH_ID"], body["REFRESH_ID"]


def call(portal, method, token, http="POST", **params):
    url = portal.client_endpoint + method
    if http == "GET":
        return requests.get(url, params={"auth": token, **params}, timeout=5)
    return requests.post(url, json={"auth": token, **params}, timeout=5)


def robot_fields(app, **over):
    f = {"CODE": "send_for_signature", "HANDLER": f"{app.url}/robot/", "NAME": {"en": "Send for signature"},
         "USE_SUBSCRIPTION": "Y", "AUTH_USER_ID": 1,
         "PROPERTIES": {"signer_email": {"Name": "Signer email", "Type": "string", "Required": "Y"},
                        "cc": {"Name": "CC", "Type": "string", "Multiple": "Y"}},
         "RETURN_PROPERTIES": {"status": {"Name": "Status", "Type": "string"},
                               "ok": {"Name": "OK", "Type": "bool"},
                               "count": {"Name": "Count", "Type": "int"}}}
    f.update(over)
    return f


# ---------------------------------------------------------------------------- OAuth
def test_install_request_shape(portal, cloud):
    q, b = portal.install_request(user_id=1, lang="de")
    assert q["DOMAIN"] == portal.domain and q["PROTOCOL"] == "0" and q["LANG"] == "de" and q["APP_SID"]
    for k in ("AUTH_ID", "AUTH_EXPIRES", "REFRESH_ID", "SERVER_ENDPOINT", "APPLICATION_TOKEN", "APPLICATION_SCOPE",
              "member_id", "status"):
        assert b[k], k
    assert b["PLACEMENT"] == "DEFAULT" and b["member_id"] == portal.member_id and len(portal.member_id) == 32
    assert b["SERVER_ENDPOINT"] == cloud.server_endpoint
    _, b2 = portal.app_page_request(2 if portal.add_user(2, "u@x.io") else 1, placement="X", options={"code": "r"})
    assert b2["PLACEMENT"] == "X" and b2["PLACEMENT_OPTIONS"] == '{"code": "r"}'


def test_frame_post_in_the_app_layout_shape_omits_the_application_token(portal, cloud):
    _, cloud_body = portal.app_page_request(1)
    assert cloud_body["APPLICATION_TOKEN"] == portal.application_token and cloud_body["SERVER_ENDPOINT"]
    _, layout = portal.app_page_request(1, layout=True)
    assert not {"APPLICATION_TOKEN", "SERVER_ENDPOINT", "PLACEMENT_OPTIONS"} & set(layout)
    assert layout["AUTH_ID"] and layout["member_id"] == portal.member_id
    _, with_options = portal.app_page_request(1, placement="X", options={"code": "r"}, layout=True)
    assert with_options["PLACEMENT_OPTIONS"] == '{"code": "r"}'
    portal.frame_layout = True
    assert "APPLICATION_TOKEN" not in portal.install_request()[1]


def test_a_real_uninstall_revokes_every_token_of_the_portal(portal, cloud):
    access, refresh = admin_token(portal)
    portal.finish_install()
    assert requests.post(f"{cloud.server_endpoint}app.info", data={"auth": access}, timeout=5).status_code == 200
    portal.fire_event("ONAPPUNINSTALL")
    info = requests.post(f"{cloud.server_endpoint}app.info", data={"auth": access}, timeout=5)
    assert info.status_code == 401 and info.json()["error"] == "invalid_token"
    grant = requests.get(cloud.oauth_url, params={"grant_type": "refresh_token", "client_id": "local.b24sign",
                                                  "client_secret": "s3cret", "refresh_token": refresh}, timeout=5)
    assert grant.json()["error"] == "invalid_client"
    assert call(portal, "user.current", access).status_code == 401


def test_crm_item_get_honours_the_users_read_rights(portal):
    portal.add_user(2, "m@x.io")
    deal = portal.crm.add_deal("D", assigned_by_id=1)
    mine = portal.crm.add_deal("Mine", assigned_by_id=2)
    _, body = portal.app_page_request(2)
    token = body["AUTH_ID"]
    assert call(portal, "crm.item.get", token, entityTypeId=2, id=deal).status_code == 200
    portal.crm.read_scope[2] = "own"
    denied = call(portal, "crm.item.get", token, entityTypeId=2, id=deal)
    assert denied.status_code == 400 and denied.json()["error"] == "ACCESS_DENIED"
    assert call(portal, "crm.item.get", token, entityTypeId=2, id=mine).status_code == 200


def test_refresh_rotates_and_old_token_is_invalid_grant(portal, cloud):
    _, rt = admin_token(portal)
    base = {"grant_type": "refresh_token", "client_id": "local.b24sign", "client_secret": "s3cret"}
    r = requests.get(cloud.oauth_url, params={**base, "refresh_token": rt}, timeout=5)
    assert r.status_code == 200
    j = r.json()
    for k in ("access_token", "refresh_token", "expires", "expires_in", "client_endpoint", "server_endpoint", "domain",
              "member_id", "scope", "status", "user_id"):
        assert k in j, k
    assert j["expires_in"] == 3600 and j["refresh_token"] != rt and j["member_id"] == portal.member_id
    assert j["client_endpoint"] == portal.client_endpoint
    again = requests.get(cloud.oauth_url, params={**base, "refresh_token": rt}, timeout=5)
    assert again.json()["error"] == "invalid_grant"
    bad = requests.get(cloud.oauth_url, params={**base, "client_secret": "nope", "refresh_token": j["refresh_token"]},
                       timeout=5)
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    ok = requests.post(cloud.oauth_url, data={**base, "refresh_token": j["refresh_token"]}, timeout=5)
    assert ok.status_code == 200
    assert cloud.refresh_calls == 4
    cloud.payment_required = True
    pr = requests.get(cloud.oauth_url, params={**base, "refresh_token": ok.json()["refresh_token"]}, timeout=5)
    assert pr.json()["error"] == "PAYMENT_REQUIRED"


def test_parallel_refresh_only_one_wins(portal, cloud):
    _, rt = admin_token(portal)
    cloud.oauth_delay = 0.1
    base = {"grant_type": "refresh_token", "client_id": "local.b24sign", "client_secret": "s3cret", "refresh_token": rt}
    out = []
    ts = [threading.Thread(target=lambda: out.append(requests.get(cloud.oauth_url, params=base, timeout=5)))
          for _ in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert sorted(r.status_code for r in out) == [200, 400, 400, 400]


def test_authorization_code(portal, cloud):
    code = portal.authorize(user_id=1)
    p = {"grant_type": "authorization_code", "client_id": "local.b24sign", "client_secret": "s3cret", "code": code}
    assert requests.get(cloud.oauth_url, params=p, timeout=5).status_code == 200
    assert requests.get(cloud.oauth_url, params=p, timeout=5).json()["error"] == "invalid_grant"


def test_expiry_and_auth_errors(portal, cloud):
    at, rt = admin_token(portal)
    assert call(portal, "profile", at).status_code == 200
    r = call(portal, "profile", "nope")
    assert r.status_code == 401 and r.json()["error"] == "NO_AUTH_FOUND"
    assert requests.get(portal.client_endpoint + "profile.json", timeout=5).json()["error"] == "NO_AUTH_FOUND"
    portal.expire_access_tokens()
    r = call(portal, "profile", at, http="GET")
    assert r.status_code == 401 and r.json() == {"error": "expired_token",
                                                 "error_description": "The access token provided has expired"}
    srv = requests.get(cloud.server_endpoint + "app.info", params={"auth": "bogus"}, timeout=5)
    assert srv.status_code == 401 and srv.json()["error"] == "invalid_token"
    j = requests.get(cloud.oauth_url, params={"grant_type": "refresh_token", "client_id": "local.b24sign",
                                              "client_secret": "s3cret", "refresh_token": rt}, timeout=5).json()
    r = call(portal, "user.current", j["access_token"])
    assert r.status_code == 200 and r.json()["result"]["ID"] == "1"
    t = r.json()["time"]
    assert {"start", "finish", "duration", "processing", "date_start", "date_finish", "operating",
            "operating_reset_at"} <= set(t)
    info = requests.get(cloud.server_endpoint + "app.info", params={"auth": j["access_token"]}, timeout=5).json()
    assert info["result"]["client_id"] == "local.b24sign"
    assert info["result"]["install"]["member_id"] == portal.member_id


def test_form_encoded_and_user_methods(portal):
    at, _ = admin_token(portal)
    portal.add_user(5, "e@x.io", "Eve", "Smith")
    portal.add_user(6, "f@x.io", "Fred", active=False)
    r = requests.post(portal.client_endpoint + "user.get.json", data={"auth": at, "filter[ID][0]": "5",
                                                                      "filter[ID][1]": "6", "filter[ACTIVE]": "Y"})
    assert [u["EMAIL"] for u in r.json()["result"]] == ["e@x.io"]
    assert call(portal, "user.admin", at).json()["result"] is True
    _, b = portal.app_page_request(5)
    assert call(portal, "user.admin", b["AUTH_ID"]).json()["result"] is False


# ---------------------------------------------------------------------------- limits and faults
def test_leaky_bucket_503(cloud):
    p = cloud.add_portal("busy", rate=(5, 1))
    at, _ = admin_token(p)
    codes = [call(p, "profile", at).status_code for _ in range(8)]
    assert codes[:5] == [200] * 5 and 503 in codes[5:]
    r = call(p, "profile", at)
    assert r.status_code == 503
    assert r.json() == {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
    assert p.stats.rejected_503 >= 3 and p.stats.max_bucket_level <= 5 + 1e-6
    time.sleep(1.1)
    assert call(p, "profile", at).status_code == 200


def test_plan_defaults(cloud):
    assert (cloud.add_portal("b").bucket.burst, cloud.add_portal("b2").bucket.drain) == (50, 2)
    e = cloud.add_portal("e", plan="enterprise")
    assert (e.bucket.burst, e.bucket.drain) == (250, 5)


def test_operating_limit_429_and_faults(portal):
    at, _ = admin_token(portal)
    portal.operating.limit, portal.operating.cost = 2.0, 1.0
    assert call(portal, "profile", at).json()["time"]["operating"] == 1.0
    assert call(portal, "profile", at).status_code == 200
    r = call(portal, "profile", at)
    assert r.status_code == 429 and r.json()["error"] == "OPERATION_TIME_LIMIT"
    assert r.json()["operating_reset_at"] > time.time()
    assert call(portal, "user.admin", at).status_code == 200  # other methods still work
    portal.operating.limit = None
    portal.fail_next(2, status=500, error="INTERNAL_SERVER_ERROR")
    assert [call(portal, "profile", at).status_code for _ in range(3)] == [500, 500, 200]
    portal.outage(0.3)
    assert call(portal, "profile", at).status_code == 503
    time.sleep(0.35)
    assert call(portal, "profile", at).status_code == 200


# ---------------------------------------------------------------------------- robots
@pytest.mark.parametrize("over,code,msg", [
    ({"CODE": ""}, "ERROR_ACTIVITY_VALIDATION_FAILURE", "Empty activity code!"),
    ({"CODE": "bad code!"}, "ERROR_ACTIVITY_VALIDATION_FAILURE", "Wrong activity code!"),
    ({"NAME": ""}, "ERROR_ACTIVITY_VALIDATION_FAILURE", "Empty activity NAME!"),
    ({"HANDLER": "https://evil.example.com/robot/"}, "ERROR_WRONG_HANDLER_URL", "Wrong handler URL"),
    ({"HANDLER": "ftp://127.0.0.1/robot/"}, "ERROR_UNSUPPORTED_PROTOCOL", "Unsupported handler protocol"),
    ({"PROPERTIES": {}}, "ERROR_ACTIVITY_VALIDATION_FAILURE", "Wrong property key (0)!"),
    ({"PROPERTIES": "x"}, "ERROR_ACTIVITY_VALIDATION_FAILURE", "Wrong properties array!"),
    ({"PROPERTIES": {"1abc": {"Name": "x"}}}, "ERROR_ACTIVITY_VALIDATION_FAILURE", "Wrong property key (1abc)!"),
    ({"RETURN_PROPERTIES": {"ok": {"Type": "bool"}}}, "ERROR_ACTIVITY_VALIDATION_FAILURE", "Empty property NAME (ok)!"),
    ({"DOCUMENT_TYPE": ["crm", "CCrmDocumentDeal"]}, "ERROR_ACTIVITY_VALIDATION_FAILURE",
     "Wrong activity DOCUMENT_TYPE!"),
    ({"FILTER": "b24"}, "ERROR_ACTIVITY_VALIDATION_FAILURE", "Wrong activity FILTER!"),
    ({"USE_PLACEMENT": "Y"}, "ERROR_WRONG_HANDLER_URL", "Wrong handler URL"),
])
def test_robot_add_validation(portal, app, over, code, msg):
    at, _ = admin_token(portal)
    r = call(portal, "bizproc.robot.add", at, **robot_fields(app, **over))
    assert r.status_code == 400
    assert r.json() == {"error": code, "error_description": msg}


def test_robot_lifecycle(portal, app):
    at, _ = admin_token(portal)
    f = robot_fields(app)
    f = {k.lower() if k != "PROPERTIES" else k: v for k, v in f.items()}  # keys are case-insensitive
    assert call(portal, "bizproc.robot.add", at, **f).json()["result"] is True
    assert portal.robots["send_for_signature"]["PROPERTIES"]["signer_email"]["NAME"] == "Signer email"
    r = call(portal, "bizproc.robot.add", at, **robot_fields(app))
    assert r.json()["error"] == "ERROR_ACTIVITY_ALREADY_INSTALLED"
    assert call(portal, "bizproc.robot.list", at).json()["result"] == ["send_for_signature"]
    r = call(portal, "bizproc.robot.update", at, CODE="send_for_signature", FIELDS={})
    assert r.json()["error_description"] == "No fields to update"
    r = call(portal, "bizproc.robot.update", at, CODE="nope", FIELDS={"NAME": "x"})
    assert r.json()["error"] == "ERROR_ACTIVITY_NOT_FOUND"
    placement = {"NAME": "Renamed", "USE_PLACEMENT": "Y", "PLACEMENT_HANDLER": f"{app.url}/settings/"}
    r = call(portal, "bizproc.robot.update", at, CODE="send_for_signature", FIELDS=placement)
    assert r.json()["error"] == "ERROR_WRONG_HANDLER_URL"  # this core reads the top-level PLACEMENT_HANDLER
    assert call(portal, "bizproc.robot.update", at, CODE="send_for_signature", FIELDS=placement,
                PLACEMENT_HANDLER=placement["PLACEMENT_HANDLER"]).json()["result"] is True
    portal.add_user(7, "user@x.io")
    _, b = portal.app_page_request(7)
    for method in ("bizproc.robot.delete", "bizproc.robot.list"):
        r = call(portal, method, b["AUTH_ID"], CODE="send_for_signature")
        assert r.status_code == 403 and r.json() == {"error": "ACCESS_DENIED", "error_description": "Access denied!"}
    assert call(portal, "bizproc.robot.delete", at, CODE="send_for_signature").json()["result"] is True
    assert call(portal, "bizproc.robot.delete", at, CODE="send_for_signature").json()["error"] == \
        "ERROR_ACTIVITY_NOT_FOUND"


def _register(portal, app, **over):
    at, _ = admin_token(portal)
    assert call(portal, "bizproc.robot.add", at, **robot_fields(app, **over)).status_code == 200
    return at


def test_queue_server_payload(portal, app):
    _register(portal, app)
    wf = portal.start_robot("send_for_signature", document_id=("crm", "CCrmDocumentDeal", "DEAL_42"),
                            properties={"signer_email": "a@b.c", "cc": ["x@y.z", "w@y.z"]}, timeout_duration=600)
    assert wf.response_status == 200 and len(app.calls) == 1
    c = app.calls[0]
    assert c["headers"]["user-agent"] == "Bitrix24 Webhook Engine"
    assert c["headers"]["content-type"].startswith("application/x-www-form-urlencoded")
    raw = c["body"].decode()
    assert "auth%5Bmember_id%5D=" in raw and "properties%5Bcc%5D%5B1%5D=w%40y.z" in raw
    f = c["form"]
    assert set(f) == {"workflow_id", "code", "document_id", "document_type", "event_token", "properties",
                      "use_subscription", "timeout_duration", "ts", "auth"}
    assert f["document_id"] == ["crm", "CCrmDocumentDeal", "DEAL_42"]
    assert f["document_type"] == ["crm", "CCrmDocumentDeal", "DEAL"]
    assert f["code"] == "send_for_signature" and f["use_subscription"] == "Y" and f["timeout_duration"] == "600"
    assert f["properties"] == {"signer_email": "a@b.c", "cc": ["x@y.z", "w@y.z"]}
    wfid, act, rest = f["event_token"].split("|")
    assert wfid == f["workflow_id"] and act.startswith("A") and len(rest.split(".")[0]) == 32
    assert set(f["auth"]) == {"access_token", "expires", "expires_in", "scope", "domain", "server_endpoint", "status",
                              "client_endpoint", "member_id", "user_id", "refresh_token", "application_token"}
    assert f["auth"]["application_token"] == portal.application_token
    # no retry on failure; duplicates are re-posted only on request
    app.status = 500
    wf2 = portal.start_robot("send_for_signature", send_refresh_token=False, document_type=False)
    assert wf2.response_status == 500 and len(app.calls) == 2
    assert "refresh_token" not in app.calls[1]["form"]["auth"] and "document_type" not in app.calls[1]["form"]
    portal.post_robot_call(wf)
    assert app.calls[2]["body"] == app.calls[0]["body"]


def test_event_send_single_use_and_access_denied(portal, app, cloud):
    at = _register(portal, app)
    wf = portal.start_robot("send_for_signature", properties={"signer_email": "a@b.c"})
    r = call(portal, "bizproc.event.send", at, event_token=wf.event_token[:-2] + "00", return_values={"status": "x"})
    assert r.status_code == 403 and r.json() == {"error": "ACCESS_DENIED", "error_description": "Access denied!"}
    r = call(portal, "bizproc.event.send", at, RETURN_VALUES={"status": "x"})
    assert r.status_code == 403
    r = call(portal, "bizproc.activity.log", at, EVENT_TOKEN=wf.event_token, LOG_MESSAGE="")
    assert r.json() == {"error": "ERROR_EMPTY_LOG_MESSAGE", "error_description": "Empty log message!"}
    assert call(portal, "bizproc.activity.log", at, event_token=wf.event_token, log_message="queued").json()["result"]
    assert not wf.closed and wf.log == ["queued"]
    r = call(portal, "bizproc.event.send", at, event_token=wf.event_token,
             return_values={"STATUS": "completed", "Ok": "Y", "count": "3", "unknown": "z"}, log_message="done")
    assert r.status_code == 200 and r.json()["result"] is True
    assert wf.closed and wf.return_values == {"status": "completed", "ok": True, "count": 3}
    r = call(portal, "bizproc.event.send", at, event_token=wf.event_token, return_values={"status": "again"})
    assert r.status_code == 400 and r.json() == {"error": "404", "error_description": "Бизнес-процесс не найден"}
    assert wf.return_values["status"] == "completed" and len(wf.answers) == 1
    # a log line to the closed activity is accepted and goes nowhere, as in the core
    late = call(portal, "bizproc.activity.log", at, event_token=wf.event_token, log_message="late")
    assert late.status_code == 200 and late.json()["result"] is True and "late" not in wf.log
    cloud.second_event_send = "ignore"
    assert call(portal, "bizproc.event.send", at, event_token=wf.event_token).json()["result"] is True
    assert len(wf.answers) == 1 and len(wf.ignored_sends) == 2
    assert portal.stats.event_send_calls == 5


# ---------------------------------------------------------------------------- batch
def test_batch_limit_substitution_and_errors(portal):
    at, _ = admin_token(portal)
    cid = portal.crm.add_contact("Ann", "Lee", emails=["ann@x.io"])
    did = portal.crm.add_deal("Deal", contact_ids=[cid])
    r = call(portal, "batch", at, cmd={f"c{i}": "profile" for i in range(52)})
    assert r.status_code == 200  # the first 50 run; each extra one fails on its own
    body = r.json()["result"]
    assert len(body["result"]) == 50 and set(body["result_error"]) == {"c50", "c51"}
    assert body["result_error"]["c50"]["error"] == "ERROR_BATCH_LENGTH_EXCEEDED"
    ok = call(portal, "batch", at, cmd={"a": "profile"}).json()["result"]
    assert ok["result_error"] == []  # an empty PHP array
    before = portal.bucket.current()
    r = call(portal, "batch", at, halt=0, cmd={
        "deal": f"crm.deal.get?id={did}",
        "links": "crm.deal.contact.items.get?id=$result[deal][ID]",
        "contact": "crm.contact.get?id=$result[links][0][CONTACT_ID]",
        "bad": "crm.deal.get?id=999",
        "nested": "batch?cmd[a]=profile",
    })
    assert r.status_code == 200
    res = r.json()["result"]
    assert res["result"]["contact"]["EMAIL"][0]["VALUE"] == "ann@x.io"
    assert set(res["result_error"]) == {"bad", "nested"}
    assert res["result_error"]["nested"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"
    assert set(res["result_time"]) == {"deal", "links", "contact"}
    assert portal.bucket.current() <= before + 1  # a batch counts once
    r = call(portal, "batch", at, halt=1, cmd=["crm.deal.get?id=999", "profile"])
    assert r.json()["result"]["result"] == [] and r.json()["result"]["result_error"][0]["error_description"] == "Not found"
    r = call(portal, "batch", at, cmd=["profile", "user.admin"])
    assert r.json()["result"]["result"][1] is True and r.json()["result"]["result_error"] == []


# ---------------------------------------------------------------------------- rename, events
def test_rename_answers_302(portal):
    at, _ = admin_token(portal)
    old = portal.client_endpoint
    new_domain = portal.rename()
    assert new_domain != old and portal.client_endpoint != old
    r = requests.post(old + "profile", json={"auth": at}, allow_redirects=False, timeout=5)
    assert r.status_code == 302 and r.headers["Location"].startswith(portal.client_endpoint + "profile")
    r = requests.get(old + "profile.json", params={"auth": at}, allow_redirects=False, timeout=5)
    assert r.headers["Location"] == f"{portal.client_endpoint}profile.json?auth={at}"
    assert call(portal, "profile", at).status_code == 200


def test_events_lifecycle(portal, app):
    at, _ = admin_token(portal)
    for ev in ("ONAPPINSTALL", "ONAPPUPDATE", "ONAPPUNINSTALL"):
        assert call(portal, "event.bind", at, event=ev.lower(), handler=f"{app.url}/events/").json()["result"]
    r = call(portal, "event.bind", at, event="ONAPPINSTALL", handler="https://evil.example.com/x")
    assert r.status_code == 400
    assert len(call(portal, "event.get", at).json()["result"]) == 3
    assert portal.fire_event("ONAPPINSTALL") == []  # not before installFinish
    portal.finish_install()
    assert call(portal, "app.info", at).json()["result"]["INSTALLED"] is True
    [resp] = portal.fire_event("ONAPPINSTALL")
    assert resp.status_code == 200
    f = app.calls[-1]["form"]
    assert f["event"] == "ONAPPINSTALL" and f["event_handler_id"] and f["ts"]
    assert set(f["data"]) == {"VERSION", "ACTIVE", "INSTALLED", "LANGUAGE_ID"}
    assert f["auth"]["refresh_token"] and f["auth"]["application_token"] == portal.application_token
    _register(portal, app, HANDLER=f"{app.url}/robot/")
    old_token = portal.application_token
    portal.fire_event("ONAPPUPDATE")
    f = app.calls[-1]["form"]
    assert portal.application_token != old_token and f["auth"]["application_token"] == portal.application_token
    assert set(f["data"]) == {"VERSION", "PREVIOUS_VERSION", "LANGUAGE_ID"} and portal.robots == {}
    portal.fire_event("ONAPPUNINSTALL", clean=True)
    f = app.calls[-1]["form"]
    assert f["data"] == {"LANGUAGE_ID": "en", "CLEAN": "1"}
    assert set(f["auth"]) == {"domain", "server_endpoint", "client_endpoint", "member_id", "application_token"}
    assert call(portal, "profile", at).status_code == 401


# ---------------------------------------------------------------------------- CRM, files, sign.b2e
def test_crm_files_and_download_headers(portal):
    at, _ = admin_token(portal)
    pdf = make_pdf("contract")
    did = portal.crm.add_deal("D", files={"ufCrm_contract": ("contract.pdf", pdf)})
    item = call(portal, "crm.item.get", at, entityTypeId=2, id=did).json()["result"]["item"]
    url = item["ufCrm_contract"]["urlMachine"]
    assert set(item["ufCrm_contract"]) == {"id", "url", "urlMachine"}
    bare = requests.get(url, timeout=5)  # python-requests default headers
    assert bare.status_code == 404 and "nginx" in bare.text and "Content-Disposition" in bare.headers
    good = requests.get(url, headers=BROWSER, timeout=5)
    assert good.status_code == 200 and good.content == pdf
    assert call(portal, "crm.item.get", at, entityTypeId=2, id=999).json()["error"] == "NOT_FOUND"
    sid = portal.crm.add_smart_item(177, "SP item")
    assert call(portal, "crm.item.get", at, entityTypeId=177, id=sid).status_code == 200
    # Bitrix24 ignores a user field that does not exist: create it first, as the app does
    assert call(portal, "crm.deal.userfield.add", at, fields={"FIELD_NAME": "SIGNED", "USER_TYPE_ID": "file"}
                ).status_code == 200
    r = call(portal, "crm.item.update", at, entityTypeId=2, id=did,
             fields={"ufCrm_signed": ["signed.pdf", base64.b64encode(pdf).decode()]})
    assert portal.crm.file_bytes(2, did, "ufCrm_signed") == pdf and "urlMachine" in r.json()["result"]["item"][
        "ufCrm_signed"]
    r = call(portal, "crm.timeline.comment.add", at, FIELDS={"ENTITY_ID": did, "ENTITY_TYPE": "deal", "COMMENT": "x"})
    assert r.status_code == 400
    r = call(portal, "crm.timeline.comment.add", at, fields={"ENTITY_ID": did, "ENTITY_TYPE": "deal", "COMMENT": "Signed",
                                                            "FILES": [["s.pdf", base64.b64encode(pdf).decode()]]})
    assert isinstance(r.json()["result"], int)
    [c] = portal.crm.comments_for("deal", did)
    assert c["files"] == [("s.pdf", pdf)]
    fid = portal.crm.add_disk_file("a.pdf", pdf)
    dl = call(portal, "disk.file.get", at, id=fid).json()["result"]["DOWNLOAD_URL"]
    assert requests.get(dl, headers=BROWSER, timeout=5).content == pdf
    doc = portal.crm.add_generated_document(2, did, pdf, pdf_ready=False)
    d = call(portal, "crm.documentgenerator.document.get", at, id=doc).json()["result"]["document"]
    assert d["pdfUrlMachine"] == "" and d["downloadUrlMachine"]
    portal.crm.set_document_pdf_ready(doc)
    d = call(portal, "crm.documentgenerator.document.get", at, id=doc).json()["result"]["document"]
    assert requests.get(d["pdfUrlMachine"], headers=BROWSER, timeout=5).content == pdf


def _sign_fields(portal, **over):
    f = {"company": {"crmId": 1}, "members": [{"userId": 2, "role": "signer"}, {"userId": 1, "role": "assignee"}],
         "responsible": {"userId": 1}, "companyProviderUid": portal.sign.providers[0]["uid"],
         "files": [{"fileName": "contract.pdf", "fileType": "application/pdf",
                    "fileContent": base64.b64encode(make_pdf("x")).decode()}],
         "regionDocumentType": "12.999",
         "externalSettings": {"externalId": "EXT-1", "externalDateCreate": "2025-02-18T09:19:34+01:00"}}
    f.update(over)
    return f


@pytest.mark.parametrize("over,msg", [
    ({"companyProviderUid": ""}, "[companyProviderUid] field is required"),
    ({"responsible": None}, "The responsible field is required"),
    ({"members": [{"userId": 1, "role": "assignee"}]}, "At least one signing party with role signer is required"),
    ({"members": [{"userId": 2, "role": "signer"}]}, "At least one signing party with role assignee is required"),
    ({"members": [{"userId": 2, "role": "boss"}]}, "Invalid role boss"),
    ({"members": [{"role": "signer"}, {"userId": 1, "role": "assignee"}]}, "Employee ID is required"),
    ({"members": [{"userId": 99, "role": "signer"}, {"userId": 1, "role": "assignee"}]},
     "Could not find employee for specified User ID"),
    ({"files": []}, "At least one file is required to sign the document"),
    ({"files": [{"fileName": "a.pdf", "fileType": "application/pdf", "fileContent": "JVBE"}] * 2},
     "Signing multiple files is currently not supported"),
    ({"files": [{"fileName": "a.docx", "fileType": "application/pdf", "fileContent": "JVBE"}]},
     "The specified file extension is not supported"),
    ({"files": [{"fileName": "a", "fileType": "application/pdf", "fileContent": "JVBE"}]},
     "Invalid file name. File extension is not specified"),
    ({"files": [{"fileName": "a.pdf", "fileType": "image/png", "fileContent": "JVBE"}]},
     "The specified file type is not supported"),
    ({"regionDocumentType": ""}, "Region document type is required. Use value '12.999' as a default value"),
    ({"regionDocumentType": "1.1"}, "Region document type is not valid. Use value '12.999' as a default value"),
    ({"companyProviderUid": "nope"}, "Signing provider is not available"),
    ({"externalSettings": {"externalDateCreate": "2025-02-18T09:19:34+01:00"}}, "External ID field is required"),
    ({"externalSettings": {"externalId": "x" * 256, "externalDateCreate": "2025-02-18"}},
     "External ID maximum length of 255 is exceeded"),
    ({"externalSettings": {"externalId": "x", "externalDateCreate": "18.02.2025"}},
     "External date create invalid field value"),
])
def test_sign_send_validation(portal, over, msg):
    at, _ = admin_token(portal)
    portal.add_user(2, "emp@x.io", "Emp")
    r = call(portal, "sign.b2e.document.send", at, fields=_sign_fields(portal, **over))
    assert r.status_code == 400 and r.json() == {"error": "BAD_REQUEST", "error_description": msg}


@pytest.mark.parametrize("name", ["Deal #42.pdf", "O'Brien.pdf", "A & B.pdf", "a;b.pdf", "~x.pdf", "a/b.pdf",
                                  "a\\b.pdf", "a:b.pdf", "a\x01.pdf", "x\u202efdp.pdf", "   "])
def test_sign_send_refuses_file_names_the_core_refuses(portal, name):
    at, _ = admin_token(portal)
    portal.add_user(2, "emp@x.io", "Emp")
    files = [{"fileName": name, "fileType": "application/pdf", "fileContent": base64.b64encode(make_pdf("x")).decode()}]
    r = call(portal, "sign.b2e.document.send", at, fields=_sign_fields(portal, files=files))
    assert r.status_code == 400 and r.json() == {"error": "BAD_REQUEST", "error_description": "[files] Invalid file name."}


def test_sign_flow_with_events(portal, app):
    at, _ = admin_token(portal)
    portal.add_user(2, "emp@x.io", "Emp")
    assert call(portal, "sign.b2e.company.provider.list", at, companyCrmId=1).json()["result"][0]["uid"]
    for ev in ("ONSIGNB2EDOCUMENTSTATUSCHANGED", "ONSIGNB2EMEMBERSTATUSCHANGED"):
        call(portal, "event.bind", at, event=ev, handler=f"{app.url}/sign-events/")
    portal.finish_install()
    res = call(portal, "sign.b2e.document.send", at, fields=_sign_fields(portal)).json()["result"]
    assert res["state"]["code"] == "new" and {m["state"]["code"] for m in res["members"]} <= {"wait", "ready"}
    uid = res["uid"]
    portal.sign_b2e_member_signs(uid, 2)
    assert call(portal, "sign.b2e.document.get", at, uid=uid).json()["result"]["state"]["code"] == "signing"
    portal.sign_b2e_member_signs(uid, 1)
    got = call(portal, "sign.b2e.document.get", at, uid=uid).json()["result"]
    assert got["state"]["code"] == "done"
    codes = [(c["form"]["event"], c["form"]["data"]["statusCode"]) for c in app.calls]
    assert ("ONSIGNB2EMEMBERSTATUSCHANGED", "done") in codes and ("ONSIGNB2EDOCUMENTSTATUSCHANGED", "done") in codes
    assert all(c["form"]["auth"]["application_token"] == portal.application_token for c in app.calls)
    [row] = call(portal, "sign.b2e.mysafe.tail", at).json()["result"]
    assert row["title"] == "contract"
    assert is_pdf(requests.get(row["file_url"], headers=BROWSER, timeout=5).content)
    missing = call(portal, "sign.b2e.document.get", at, uid="nope")
    assert missing.status_code == 400 and missing.json() == {"error": "", "error_description": "Document not found."}


def test_batch_over_get_and_form(portal):
    at, _ = admin_token(portal)
    did = portal.crm.add_deal("Deal")
    r = requests.get(portal.client_endpoint + "batch", params={"auth": at, "cmd[d]": f"crm.deal.get?id={did}",
                                                               "cmd[i]": "crm.item.get?entityTypeId=2&id=$result[d][ID]"},
                     timeout=5)
    assert r.json()["result"]["result"]["i"]["item"]["title"] == "Deal"
    r = requests.post(portal.client_endpoint + "batch.json",
                      data={"auth": at, "cmd[0]": "user.get?filter%5BID%5D%5B0%5D=1", "halt": "0"}, timeout=5)
    assert r.json()["result"]["result"][0][0]["ID"] == "1"


def test_robot_update_placement_and_uninstall_refresh(portal, app, cloud):
    at = _register(portal, app, USE_PLACEMENT="Y", PLACEMENT_HANDLER=f"{app.url}/settings/")
    assert call(portal, "bizproc.robot.update", at, CODE="send_for_signature",
                FIELDS={"use_subscription": "N"}).json()["result"] is True
    r = call(portal, "bizproc.robot.update", at, CODE="send_for_signature",
             FIELDS={"PLACEMENT_HANDLER": "https://evil.example.com/s"})
    assert r.json()["error"] == "ERROR_WRONG_HANDLER_URL"
    call(portal, "bizproc.robot.update", at, CODE="send_for_signature", FIELDS={"USE_PLACEMENT": "N"})
    assert "PLACEMENT_HANDLER" not in portal.robots["send_for_signature"]
    wf = portal.start_robot("send_for_signature", document_id=("crm", "Bitrix\\Crm\\Integration\\BizProc\\Document\\"
                                                               "Dynamic", "DYNAMIC_177_5"),
                            properties={"flag": True, "cc": ["a", "b"]})
    f = app.calls[-1]["form"]
    assert f["use_subscription"] == "N" and wf.closed and f["document_type"][2] == "DYNAMIC_177"
    assert f["properties"] == {"flag": "Y", "cc": ["a", "b"]}
    _, rt = admin_token(portal)
    portal.finish_install()
    portal.fire_event("ONAPPUNINSTALL")
    r = requests.get(cloud.oauth_url, params={"grant_type": "refresh_token", "client_id": "local.b24sign",
                                              "client_secret": "s3cret", "refresh_token": rt}, timeout=5)
    assert r.json()["error"] == "invalid_client"


@pytest.mark.parametrize("method,params", [
    ("sign.b2e.document.send", {"fields": {}}), ("sign.b2e.document.get", {"uid": "x"}),
    ("sign.b2e.company.provider.list", {"companyCrmId": 1}),
])
def test_sign_b2e_needs_the_hcmlink_scope_too(cloud, method, params):
    cloud.scope = "bizproc,crm,user_basic,sign.b2e"
    portal = cloud.add_portal("noscope")
    at, _ = admin_token(portal)
    r = call(portal, method, at, **params)
    assert r.status_code == 403 and r.json() == {"error": "ACCESS_DENIED", "error_description": "Access denied!"}


def test_a_missing_method_scope_is_http_401(cloud):
    cloud.scope = "crm"
    portal = cloud.add_portal("noscope")
    at, _ = admin_token(portal)
    r = call(portal, "bizproc.robot.list", at)
    assert r.status_code == 401 and r.json()["error"] == "insufficient_scope"


def test_sign_send_keeps_one_reviewer_editor_and_assignee_the_last_one(portal):
    at, _ = admin_token(portal)
    for uid in (2, 3, 4, 5, 6):
        portal.add_user(uid, f"u{uid}@x.io", f"U{uid}")
    members = [{"userId": 2, "role": "signer"}, {"userId": 1, "role": "assignee"}, {"userId": 3, "role": "assignee"},
               {"userId": 4, "role": "reviewer"}, {"userId": 5, "role": "reviewer"}, {"userId": 6, "role": "editor"},
               {"userId": 2, "role": "editor"}]
    r = call(portal, "sign.b2e.document.send", at, fields=_sign_fields(portal, members=members))
    assert r.status_code == 200, r.json()
    got = [(m["user"]["userId"], m["role"]) for m in r.json()["result"]["members"]]
    assert got == [(2, "signer"), (3, "assignee"), (5, "reviewer"), (2, "editor")]


def test_activity_log_is_for_administrators(portal, app):
    at = _register(portal, app)
    wf = portal.start_robot("send_for_signature", properties={"signer_email": "a@b.c"})
    portal.add_user(7, "user@x.io")
    _, b = portal.app_page_request(7)
    r = call(portal, "bizproc.activity.log", b["AUTH_ID"], event_token=wf.event_token, log_message="x")
    assert r.status_code == 403 and r.json()["error"] == "ACCESS_DENIED"
    assert call(portal, "bizproc.activity.log", at, event_token=wf.event_token, log_message="x").json()["result"]
