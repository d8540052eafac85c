"""Self-tests of the signNow and Evia Sign emulators, using plain ``requests`` (no Django).

Run: ``.venv/bin/python -m pytest tests/emulators/test_provider_emulators.py -q -p no:django``
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
import requests

from tests.emulators.base import EmulatorServer, Response
from tests.emulators.evia import EviaEmulator
from tests.emulators.pdf import is_pdf, make_pdf, page_count
from tests.emulators.signnow import SignNowEmulator

BASIC = base64.b64encode(b"client:secret").decode()
OWNER = "owner@acme.test"


class Receiver:
    """A callback endpoint that records raw bodies and headers."""

    def __init__(self):
        self.hits: list[dict] = []
        self.server = EmulatorServer("receiver")
        self.server.add_route("*", r".*", self._hit)
        self.server.start()

    def _hit(self, req):
        self.hits.append({"path": req.path, "query": dict(req.query), "headers": dict(req.headers),
                          "body": req.body, "ts": time.time()})
        return Response(200, {"ok": True})

    def url(self, path="/hook"):
        return self.server.base_url + path

    def json(self):
        return [json.loads(h["body"]) for h in self.hits]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.stop()


# ======================================================================================================
# signNow
# ======================================================================================================
@pytest.fixture
def sn():
    emu = SignNowEmulator(basic_token=BASIC, users={OWNER: "pw"}).start()
    yield emu
    emu.stop()


def sn_token(emu, user=OWNER, pw="pw"):
    r = requests.post(emu.base_url + "/oauth2/token", headers={"Authorization": f"Basic {BASIC}"},
                      data={"grant_type": "password", "username": user, "password": pw, "scope": "*"})
    return r


def H(tok):
    return {"Authorization": f"Bearer {tok}"}


def upload(emu, tok, pdf=None, path="/document", name="contract.pdf", extra=None):
    pdf = pdf if pdf is not None else make_pdf(["Contract page 1", "Contract page 2"])
    return requests.post(emu.base_url + path, headers=H(tok), files={"file": (name, pdf, "application/pdf")},
                         data=extra or {})


def tagged_pdf():
    return make_pdf(['Agreement\n{{t:s;r:y;o:"Signer 1";}}', '{{t:s;r:y;o:"Signer 2";}}\n{{t:d;r:n;o:"Signer 2";}}'])


def doc_with_roles(emu, tok):
    r = upload(emu, tok, tagged_pdf(), path="/document/fieldextract")
    assert r.status_code == 200, r.text
    return r.json()["id"]


def invite(emu, tok, doc_id, to, **extra):
    body = {"to": to, "from": OWNER, "subject": "Please sign", "message": "Hi", **extra}
    return requests.post(f"{emu.base_url}/document/{doc_id}/invite", headers=H(tok), json=body)


def err_code(r):
    return r.json()["errors"][0]["code"]


def test_signnow_token_grants_errors_rotation_and_expiry(sn):
    bad = requests.post(sn.base_url + "/oauth2/token", headers={"Authorization": "Basic nope"},
                        data={"grant_type": "password", "username": OWNER, "password": "pw"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_client"
    wrong = sn_token(sn, pw="wrong")
    assert wrong.status_code == 400 and wrong.json() == {"error": "Invalid credentials.", "code": 826}

    t = sn_token(sn).json()
    assert t["token_type"] == "bearer" and t["expires_in"] == 2592000 and t["refresh_token"]
    v = requests.get(sn.base_url + "/oauth2/token", headers=H(t["access_token"]))
    assert v.status_code == 200 and int(v.json()["expires_in"]) > 0

    # refresh rotates: new pair, the old refresh token is single-use
    r1 = requests.post(sn.base_url + "/oauth2/token", headers={"Authorization": f"Basic {BASIC}"},
                       data={"grant_type": "refresh_token", "refresh_token": t["refresh_token"]})
    assert r1.status_code == 200 and r1.json()["access_token"] != t["access_token"]
    again = requests.post(sn.base_url + "/oauth2/token", headers={"Authorization": f"Basic {BASIC}"},
                          data={"grant_type": "refresh_token", "refresh_token": t["refresh_token"]})
    assert again.status_code == 400

    new_tok = r1.json()["access_token"]
    assert requests.get(sn.base_url + "/user", headers=H(new_tok)).status_code == 200
    sn.expire_tokens()
    r = requests.get(sn.base_url + "/user", headers=H(new_tok))
    assert r.status_code == 401 and r.json() == {"error": "invalid_token", "code": 1537}
    assert requests.get(sn.base_url + "/oauth2/token", headers=H(new_tok)).json() == {"error": "invalid_token"}
    # the (rotated) refresh token still works after access-token expiry
    r2 = requests.post(sn.base_url + "/oauth2/token", headers={"Authorization": f"Basic {BASIC}"},
                       data={"grant_type": "refresh_token", "refresh_token": r1.json()["refresh_token"]})
    assert requests.get(sn.base_url + "/user", headers=H(r2.json()["access_token"])).status_code == 200


def test_signnow_upload_validation_and_unknown_document(sn):
    tok = sn.issue_token()
    assert err_code(upload(sn, tok, b"")) == 65536
    r = upload(sn, tok, b"hello, not a pdf", name="x.txt")
    assert r.status_code == 400 and err_code(r) == 65536
    assert requests.post(sn.base_url + "/document", headers=H(tok), data={"a": "b"}).status_code == 400
    doc_id = upload(sn, tok).json()["id"]
    assert requests.get(f"{sn.base_url}/document/{doc_id}", headers=H(tok)).json()["document_name"] == "contract"
    r = requests.get(f"{sn.base_url}/document/{'a' * 40}", headers=H(tok))
    assert r.status_code == 404 and err_code(r) == 65582
    assert requests.get(f"{sn.base_url}/document/{doc_id}").status_code == 401


def test_signnow_fieldextract_roles_and_put_fields(sn):
    tok = sn.issue_token()
    doc_id = doc_with_roles(sn, tok)
    doc = requests.get(f"{sn.base_url}/document/{doc_id}", headers=H(tok)).json()
    assert [r["name"] for r in doc["roles"]] == ["Signer 1", "Signer 2"]
    plain = upload(sn, tok).json()["id"]
    bad = requests.put(f"{sn.base_url}/document/{plain}", headers=H(tok), json={"fields": [{"x": 1}]})
    assert bad.status_code == 400 and err_code(bad) == 65536
    ok = requests.put(f"{sn.base_url}/document/{plain}", headers=H(tok), json={"fields": [
        {"x": 10, "y": 10, "width": 100, "height": 20, "page_number": 1, "type": "signature", "role": "Client",
         "required": True}]})
    assert ok.status_code == 200 and ok.json() == {"id": plain}
    assert requests.get(f"{sn.base_url}/document/{plain}", headers=H(tok)).json()["roles"][0]["name"] == "Client"


def test_signnow_invite_validation_codes(sn):
    tok = sn.issue_token()
    plain = upload(sn, tok).json()["id"]
    r = invite(sn, tok, plain, [{"email": "a@x.test", "role": "Signer 1", "order": 1}])
    assert r.status_code == 400 and err_code(r) == 65594
    doc_id = doc_with_roles(sn, tok)
    cases = [
        ([{"email": "not-an-email", "role": "Signer 1"}], {}, "To must be a valid email."),
        ([{"email": "a@x.test"}], {}, None),
        ([{"email": "a@x.test", "role": "Nope"}], {}, "Role Nope does not exist on document"),
        ([{"email": "a@x.test", "role": "Signer 1", "authentication_type": "password"}], {},
         "authentication type must not be empty"),
        ([{"email": "a@x.test", "role": "Signer 1", "authentication_type": "phone"}], {},
         "authentication type must not be empty"),
        ([{"email": "a@x.test", "role": "Signer 1", "expiration_days": 0}], {}, None),
        ([{"email": "a@x.test", "role": "Signer 1", "reminder": {"remind_repeat": 9}}], {},
         "to[0].reminder must be an integer."),
        ([{"email": "a@x.test", "role": "Signer 1", "reminder": {"remind_after": 2}}], {},
         "to[0].reminder must be an integer."),
        ([{"email": "a@x.test", "role": "Signer 1", "authentication_type": "phone", "phone": "+15550100200",
           "method": "sms"}], {}, "to[0].method is not allowed."),
        ([{"email": "a@x.test", "role": "Signer 1", "language": "en"}], {}, "to[0].language is not allowed."),
        ([{"email": "a@x.test", "role": "Signer 1"}], {"from": "someone@else.test"}, "Email not found"),
        ([{"email": "a@x.test", "role": "Signer 1"}], {"from": "bad"}, "From must be a valid email."),
        ([{"email": "a@x.test", "role": "Signer 1"}], {"cc": ["nope"]}, None),
    ]
    for to, extra, msg in cases:
        body_extra = dict(extra)
        r = requests.post(f"{sn.base_url}/document/{doc_id}/invite", headers=H(tok),
                          json={"to": to, "from": OWNER, **body_extra})
        assert r.status_code == 400, (to, extra, r.text)
        assert err_code(r) == 65536
        if msg:
            assert r.json()["errors"][0]["message"] == msg
    # the documented forms: integer reminder days, any positive expiry (no range is documented)
    ok = invite(sn, tok, doc_id, [
        {"email": "a@x.test", "role": "Signer 1", "order": 1, "reminder": 5, "expiration_days": 30,
         "authentication_type": "password", "password": "123456"},
        {"email": "b@x.test", "role": "Signer 2", "order": 2, "reminder": 2, "expiration_days": 500,
         "authentication_type": "phone", "phone": "+15550100200"}],
        cc=["cc@x.test"], cc_step=[{"name": "CC 1", "email": "cc@x.test", "step": 1}],
        viewers=[{"email": "v@x.test", "role": "Viewer 1", "order": 1}])
    assert ok.status_code == 200 and ok.json() == {"status": "success"}
    dup = invite(sn, tok, doc_id, [{"email": "a@x.test", "role": "Signer 1"}])
    assert dup.status_code == 400 and err_code(dup) == 65629


def test_signnow_signing_order_webhooks_and_hmac(sn, receiver):
    tok = sn.issue_token()
    doc_id = doc_with_roles(sn, tok)
    for event, path in (("document.fieldinvite.signed", "/signed"), ("document.complete", "/complete")):
        r = requests.post(sn.base_url + "/api/v2/events", headers=H(tok), json={
            "event": event, "entity_id": doc_id, "action": "callback", "secret_key": "s3cret",
            "attributes": {"callback": receiver.url(path), "use_tls_12": False, "docid_queryparam": True,
                           "headers": {"X-B24Sign-Token": "abc"}, "secret_key": "s3cret"}})
        assert r.status_code == 204, r.text
    subs = requests.get(sn.base_url + "/api/v2/events", headers=H(tok)).json()["data"]
    assert len(subs) == 2 and subs[0]["json_attributes"]["callback_url"].startswith(receiver.url(""))
    bad = requests.post(sn.base_url + "/api/v2/events", headers=H(tok),
                        json={"event": "", "entity_id": doc_id, "action": "callback", "attributes": {"callback": "x"}})
    assert bad.status_code == 400 and err_code(bad) == 65582

    assert invite(sn, tok, doc_id, [{"email": "a@x.test", "role": "Signer 1", "order": 1},
                                    {"email": "b@x.test", "role": "Signer 2", "order": 2}]).status_code == 200
    fis = requests.get(f"{sn.base_url}/document/{doc_id}", headers=H(tok)).json()["field_invites"]
    assert {f["email"]: f["status"] for f in fis} == {"a@x.test": "pending", "b@x.test": "created"}
    assert [e["to"] for e in sn.sent_emails if e["kind"] == "invite"] == ["a@x.test"]
    with pytest.raises(ValueError):
        sn.sign(doc_id, "b@x.test")  # order 2 cannot sign before order 1
    b_id = next(f["id"] for f in fis if f["email"] == "b@x.test")
    r = requests.put(f"{sn.base_url}/fieldinvite/{b_id}/resend", headers=H(tok))
    assert r.status_code == 400 and r.json()["errors"][0]["message"] == "Could not resend: routing out of order."

    sn.sign(doc_id, "a@x.test")
    fis = requests.get(f"{sn.base_url}/document/{doc_id}", headers=H(tok)).json()["field_invites"]
    assert {f["email"]: f["status"] for f in fis} == {"a@x.test": "fulfilled", "b@x.test": "pending"}
    assert requests.put(f"{sn.base_url}/fieldinvite/{b_id}/resend", headers=H(tok)).json() == {"status": "success"}
    assert len(receiver.hits) == 1 and receiver.hits[0]["path"] == "/signed"
    sn.sign(doc_id, "b@x.test")
    assert [h["path"] for h in receiver.hits] == ["/signed", "/signed", "/complete"]

    for h in receiver.hits:
        payload = json.loads(h["body"])
        assert set(payload) == {"meta", "content"}
        assert set(payload["meta"]) == {"timestamp", "event", "environment", "callback_url", "initiator_id",
                                        "access_token"}
        assert payload["content"]["document_id"] == doc_id and payload["content"]["document_name"] == "contract"
        assert h["query"]["document_id"] == doc_id
        assert h["headers"]["x-b24sign-token"] == "abc"
        expected = hmac.new(b"s3cret", h["body"], hashlib.sha256).hexdigest()
        assert hmac.compare_digest(h["headers"]["x-signnow-signature"], expected)
    # base64 reading (U-S1)
    sn.webhook_secret_encoding = "base64"
    body = b'{"x":1}'
    assert sn.sign_body(body, "k") == base64.b64encode(hmac.new(b"k", body, hashlib.sha256).digest()).decode()
    assert [e["to"] for e in sn.sent_emails if e["kind"] == "cc"] == []  # no cc on this invite
    assert any(e["kind"] == "completed" for e in sn.sent_emails)


def test_signnow_parallel_order_decline_and_expiry(sn):
    tok = sn.issue_token()
    doc_id = doc_with_roles(sn, tok)
    assert invite(sn, tok, doc_id, [{"email": "a@x.test", "role": "Signer 1", "order": 1},
                                    {"email": "b@x.test", "role": "Signer 2", "order": 1}]).status_code == 200
    fis = requests.get(f"{sn.base_url}/document/{doc_id}", headers=H(tok)).json()["field_invites"]
    assert {f["status"] for f in fis} == {"pending"}
    sn.decline(doc_id, "b@x.test", reason="wrong amount")
    fi = next(f for f in requests.get(f"{sn.base_url}/document/{doc_id}", headers=H(tok)).json()["field_invites"]
              if f["email"] == "b@x.test")
    assert fi["is_full_declined"] is True and fi["declined"][0]["declined_text"] == "wrong amount"

    d2 = doc_with_roles(sn, tok)
    invite(sn, tok, d2, [{"email": "a@x.test", "role": "Signer 1"}, {"email": "b@x.test", "role": "Signer 2"}])
    sn.expire(d2)
    fis = requests.get(f"{sn.base_url}/document/{d2}", headers=H(tok)).json()["field_invites"]
    assert all(f["expiration_time"] < time.time() for f in fis)
    a_id = next(f["id"] for f in fis if f["email"] == "a@x.test")
    r = requests.put(f"{sn.base_url}/fieldinvite/{a_id}/resend", headers=H(tok))
    assert r.json()["errors"][0]["message"] == "Could not resend expired invite."
    with pytest.raises(ValueError):
        sn.sign(d2, "a@x.test")


def test_signnow_replace_cancel_freeform_email2(sn):
    tok = sn.issue_token()
    doc_id = doc_with_roles(sn, tok)
    invite(sn, tok, doc_id, [{"email": "a@x.test", "role": "Signer 1", "order": 1},
                             {"email": "b@x.test", "role": "Signer 2", "order": 2}])
    fi = next(f for f in requests.get(f"{sn.base_url}/document/{doc_id}", headers=H(tok)).json()["field_invites"]
              if f["email"] == "a@x.test")
    assert requests.delete(f"{sn.base_url}/field_invite/{'f' * 40}", headers=H(tok)).json()["errors"][0]["code"] == 66502
    assert requests.delete(f"{sn.base_url}/field_invite/{fi['id']}", headers=H(tok)).status_code == 200
    r = requests.post(f"{sn.base_url}/field_invite", headers=H(tok), json={"email": "bad", "role_id": fi["role_id"],
                                                                           "is_replace": True})
    assert err_code(r) == 65538
    r = requests.post(f"{sn.base_url}/field_invite", headers=H(tok), json={"email": "c@x.test", "role_id": "0" * 40,
                                                                           "is_replace": True})
    assert err_code(r) == 65582
    body = {"email": "c@x.test", "role_id": fi["role_id"], "is_replace": True, "expiration_days": 30}
    r = requests.post(f"{sn.base_url}/field_invite", headers=H(tok), json=body)
    assert r.status_code == 200 and r.json()["id"]
    assert err_code(requests.post(f"{sn.base_url}/field_invite", headers=H(tok), json=body)) == 65615
    assert requests.post(f"{sn.base_url}/document/{doc_id}/trigger_fieldinvite", headers=H(tok)).json() == \
        {"status": "success"}
    r = requests.post(f"{sn.base_url}/document/{doc_id}/trigger_fieldinvite", headers=H(tok))
    assert err_code(r) == 65615
    fis = requests.get(f"{sn.base_url}/document/{doc_id}", headers=H(tok)).json()["field_invites"]
    assert {f["email"]: f["status"] for f in fis} == {"b@x.test": "created", "c@x.test": "pending"}

    r = requests.put(f"{sn.base_url}/document/{doc_id}/fieldinvitecancel", headers=H(tok), json={"reason": ""})
    assert r.json()["errors"][0]["message"] == "The reason value must not be empty string."
    assert requests.put(f"{sn.base_url}/document/{doc_id}/fieldinvitecancel", headers=H(tok),
                        json={"reason": "changed"}).json() == {"status": "success"}
    assert requests.get(f"{sn.base_url}/document/{doc_id}", headers=H(tok)).json()["field_invites"] == []

    plain = upload(sn, tok).json()["id"]
    r = requests.post(f"{sn.base_url}/document/{plain}/invite", headers=H(tok), json={"to": "x@x.test", "from": OWNER})
    assert r.json()["result"] == "success" and r.json()["id"]
    inv = r.json()["id"]
    ff = requests.get(f"{sn.base_url}/v2/documents/{plain}/free-form-invites", headers=H(tok)).json()["data"]
    assert ff == [{"id": inv, "email": "x@x.test", "created": ff[0]["created"], "status": "pending"}]
    assert requests.put(f"{sn.base_url}/invite/{inv}/cancel", headers=H(tok), json={"reason": "x"}).status_code == 200
    ff = requests.get(f"{sn.base_url}/v2/documents/{plain}/free-form-invites", headers=H(tok)).json()["data"]
    assert ff[0]["status"] == "cancelled"

    r = requests.post(f"{sn.base_url}/document/{plain}/email2", headers=H(tok),
                      json={"emails": [f"u{i}@x.test" for i in range(6)]})
    assert r.status_code == 400 and err_code(r) == 65536
    assert requests.post(f"{sn.base_url}/document/{plain}/email2", headers=H(tok),
                         json={"emails": ["x@x.test"], "subject": "Reminder"}).status_code == 200
    assert sn.sent_emails[-1]["kind"] == "copy" and sn.sent_emails[-1]["to"] == "x@x.test"


def test_signnow_download_with_history_and_historyfull(sn):
    tok = sn.issue_token()
    plain = upload(sn, tok).json()["id"]
    requests.post(f"{sn.base_url}/document/{plain}/invite", headers=H(tok), json={"to": "x@x.test", "from": OWNER})
    sn.sign(plain, "x@x.test")
    base = requests.get(f"{sn.base_url}/document/{plain}/download", headers=H(tok), params={"type": "collapsed"})
    hist = requests.get(f"{sn.base_url}/document/{plain}/download", headers=H(tok),
                        params={"type": "collapsed", "with_history": "1"})
    assert base.headers["Content-Type"] == "application/pdf" and is_pdf(base.content) and is_pdf(hist.content)
    assert page_count(base.content) == 2 and page_count(hist.content) == 3
    assert b"Document History" in hist.content and b"x@x.test" in hist.content
    # U-S2: "yes" is not the default reading
    yes = requests.get(f"{sn.base_url}/document/{plain}/download", headers=H(tok),
                       params={"type": "collapsed", "with_history": "yes"})
    assert page_count(yes.content) == 2
    events = requests.get(f"{sn.base_url}/document/{plain}/historyfull", headers=H(tok)).json()
    assert isinstance(events, list)
    assert {"created_document", "document_signing_session_completed"} <= {e["event"] for e in events}


def test_signnow_faults_rate_limit_and_basic_subscription_auth(sn):
    tok = sn.issue_token()
    sn.fail_next(2, status=502)
    assert [requests.get(sn.base_url + "/user", headers=H(tok)).status_code for _ in range(3)] == [502, 502, 200]
    sn.outage(0.3)
    assert requests.get(sn.base_url + "/user", headers=H(tok)).status_code == 503
    time.sleep(0.35)
    assert requests.get(sn.base_url + "/user", headers=H(tok)).status_code == 200
    sn.rate_limit_per_s = 2
    codes = [requests.get(sn.base_url + "/user", headers=H(tok)).status_code for _ in range(4)]
    assert codes[:2] == [200, 200] and 429 in codes
    sn.rate_limit_per_s = None
    sn.delay = 0.2
    t0 = time.time()
    requests.get(sn.base_url + "/user", headers=H(tok))
    assert time.time() - t0 >= 0.2
    sn.delay = 0
    assert requests.get(sn.base_url + "/api/v2/events", headers={"Authorization": f"Basic {BASIC}"}).status_code == 200
    assert sn.calls[-1]["path"] == "/api/v2/events"


# ======================================================================================================
# Evia Sign
# ======================================================================================================
CID, CSECRET = "app-id", "app-key"
EVIA_BASIC = base64.b64encode(f"{CID}:{CSECRET}".encode()).decode()
SIGN = "/_apis/sign/api/v2"


@pytest.fixture
def ev():
    emu = EviaEmulator(client_id=CID, client_secret=CSECRET).start()
    emu.completion_gap = 0.1
    yield emu
    emu.stop()


def ev_token(emu):
    r = requests.post(emu.base_url + "/_apis/falcon/auth/api/v2/token", headers={"Authorization": f"Basic {EVIA_BASIC}"},
                      data={"grant_type": "authorization_code", "client_id": CID, "client_secret": CSECRET,
                            "code": emu.issue_auth_code()})
    assert r.status_code == 200, r.text
    return r.json()


def ev_request(emu, tok, callback=None, attach=True, signatories=()):
    up = requests.post(emu.base_url + "/_apis/sign/thumbs/api/v2/requests/document", headers=H(tok),
                       files={"File": ("deal.pdf", make_pdf(["Deal", "signature1 signature2"]), "application/pdf")})
    assert up.status_code == 200, up.text
    body = {"Title": "Deal 42", "Message": "Please sign", "Documents": [up.json()["documentToken"]],
            "AuditDetails": {"AuthorType": 1, "AuthorIPAddress": "", "Device": "b24sign"},
            "CompletedDocumentsAttached": attach}
    if callback:
        body["CallbackUrl"] = callback
    r = requests.post(emu.base_url + SIGN + "/requests", params={"type": 0}, headers=H(tok), json=body)
    assert r.status_code == 200, r.text
    rid = r.json()["requestId"]
    for i, (email, order, stype) in enumerate(signatories, start=1):
        s = add_signatory(emu, tok, rid, Email=email, Name=email.split("@")[0], Order=order, SignatoryType=stype)
        assert s.status_code == 200, s.text
        if stype == 1:
            st = requests.post(f"{emu.base_url}{SIGN}/requests/{rid}/signatories/{s.json()['signatoryId']}/stamps",
                               headers=H(tok), json={"Identifier": f"signature{i}", "Type": "signature"})
            assert st.status_code == 200 and st.json()["requestId"] == rid, st.text
    return rid


def add_signatory(emu, tok, rid, **fields):
    body = {"Email": "s@x.test", "Name": "S", "Order": 1, "SignatoryType": 1, "PrivateMessage": "hi",
            "Color": "#7c95f4", "OTP": {"IsRequired": False, "AccessCode": "", "Type": 1, "MobileNumber": ""}}
    body.update(fields)
    return requests.post(f"{emu.base_url}{SIGN}/requests/{rid}/signatories", headers=H(tok), json=body)


def test_evia_token_code_refresh_rotation_and_expiry(ev):
    r = requests.post(ev.base_url + "/_apis/falcon/auth/api/v2/token", headers={"Authorization": "Basic eA=="},
                      data={"grant_type": "authorization_code", "code": ev.issue_auth_code()})
    assert r.status_code == 401
    t = ev_token(ev)
    assert t["expires_in"] == 3600 and t["token_type"] == "bearer"
    code = ev.issue_auth_code()
    url = ev.base_url + "/_apis/falcon/auth/api/v2/token"
    hdr = {"Authorization": f"Basic {EVIA_BASIC}"}
    assert requests.post(url, headers=hdr, data={"grant_type": "authorization_code", "code": code}).status_code == 200
    assert requests.post(url, headers=hdr, data={"grant_type": "authorization_code", "code": code}).status_code == 400

    r1 = requests.post(url, headers=hdr, data={"grant_type": "refresh_token", "refresh_token": t["refresh_token"]})
    assert r1.status_code == 200 and r1.json()["refresh_token"] != t["refresh_token"]
    assert requests.post(url, headers=hdr, data={"grant_type": "refresh_token",
                                                  "refresh_token": t["refresh_token"]}).status_code == 400
    # U-E1 third-party multipart reading is off by default, switchable
    mp = {"Grant_Type": (None, "Refresh_Token"), "Refresh_Token": (None, r1.json()["refresh_token"])}
    assert requests.post(url, headers=hdr, files=mp).status_code == 400
    ev.refresh_token_style = "multipart"
    r2 = requests.post(url, headers=hdr, files=mp)
    assert r2.status_code == 200

    tok = r2.json()["access_token"]
    up = requests.post(ev.base_url + "/_apis/sign/thumbs/api/v2/requests/document", headers=H(tok),
                       files={"File": ("a.pdf", make_pdf("x"), "application/pdf")})
    assert up.status_code == 200
    ev.expire_tokens()
    up = requests.post(ev.base_url + "/_apis/sign/thumbs/api/v2/requests/document", headers=H(tok),
                       files={"File": ("a.pdf", make_pdf("x"), "application/pdf")})
    assert up.status_code == 401 and up.json()["message"] == "Access token is expired"


def test_evia_authorize_redirect(ev):
    ev.redirect_uri = "https://app.test/evia/callback"
    r = requests.get(ev.base_url + "/_apis/falcon/auth/oauth2/authorize", allow_redirects=False, params={
        "application_state": "external", "resource": "RESOURCE_APPLICATION", "client_id": CID,
        "scope": "Sign Falcon Licensing", "response_type": "code"})
    assert r.status_code == 302 and r.headers["Location"].startswith("https://app.test/evia/callback?code=")


def test_evia_upload_and_create_validation(ev):
    tok = ev_token(ev)["access_token"]
    up = ev.base_url + "/_apis/sign/thumbs/api/v2/requests/document"
    assert requests.post(up, headers=H(tok), files={"file": ("a.pdf", make_pdf("x"))}).status_code == 400
    r = requests.post(up, headers=H(tok), files={"File": ("a.txt", b"text")})
    assert r.status_code == 400 and "Allowed extensions are PDF, DOC, DOCX" in r.json()["message"]
    r = requests.post(ev.base_url + SIGN + "/requests", params={"type": 0}, headers=H(tok),
                      json={"Title": "t", "Message": "m", "Documents": []})
    assert r.status_code == 400 and "Documents" in r.json()["errors"]
    r = requests.post(ev.base_url + SIGN + "/requests", params={"type": 0}, headers=H(tok),
                      json={"Title": "t", "Message": "m", "Documents": ["nope"], "AuditDetails": {}})
    assert r.status_code == 400
    assert requests.post(f"{ev.base_url}{SIGN}/requests/nope/signatories", headers=H(tok),
                         json={}).json()["message"] == "Request ID not found"


def test_evia_signatory_validation_otp(ev):
    tok = ev_token(ev)["access_token"]
    rid = ev_request(ev, tok)
    sms = {"IsRequired": True, "AccessCode": "", "Type": 2, "MobileNumber": ""}
    r = add_signatory(ev, tok, rid, OTP=sms)
    assert r.status_code == 400 and "OTP.MobileNumber" in r.json()["errors"]
    r = add_signatory(ev, tok, rid, OTP={**sms, "Type": 4, "MobileNumber": "12345"})
    assert r.status_code == 400
    r = add_signatory(ev, tok, rid, OTP={**sms, "Type": 3})
    assert r.status_code == 400 and "OTP.AccessCode" in r.json()["errors"]
    for bad in ({"SignatoryType": 4}, {"Order": 0}, {"Email": "x"}, {"Name": ""}, {"Color": "blue"},
                {"Mobile": "+1555"}, {"OTP": {"IsRequired": True, "Type": 9}}):
        assert add_signatory(ev, tok, rid, **bad).status_code == 400, bad
    ok = add_signatory(ev, tok, rid, OTP={**sms, "MobileNumber": "+14155550100"})
    assert ok.status_code == 200 and set(ok.json()) == {"requestId", "signatoryId"}
    # the same email twice: Evia documents no such error (here as a CC, which needs no stamp)
    assert add_signatory(ev, tok, rid, SignatoryType=3).status_code == 200
    for otp in ({"Type": 1}, {"IsRequired": False}):  # the OTP object's IsRequired and Type are both required
        assert add_signatory(ev, tok, rid, Email="d@x.test", OTP=otp).status_code == 400, otp
    # camelCase binding works too
    r = requests.post(f"{ev.base_url}{SIGN}/requests/{rid}/signatories", headers=H(tok), json={
        "email": "c@x.test", "name": "C", "order": 1, "signatoryType": 3})
    assert r.status_code == 200
    # send needs a signer with a signature stamp
    r = requests.post(f"{ev.base_url}{SIGN}/requests/{rid}/send", headers=H(tok))
    assert r.status_code == 400
    sid = ok.json()["signatoryId"]
    r = requests.post(f"{ev.base_url}{SIGN}/requests/{rid}/signatories/{sid}/stamps", headers=H(tok),
                      json={"Identifier": "signature1", "Type": "stamp"})
    assert r.status_code == 400
    requests.post(f"{ev.base_url}{SIGN}/requests/{rid}/signatories/{sid}/stamps", headers=H(tok),
                  json={"Identifier": "signature1", "Type": "signature"})
    assert requests.post(f"{ev.base_url}{SIGN}/requests/{rid}/send", headers=H(tok)).status_code == 200


def test_evia_sequential_order_callbacks_and_documents(ev, receiver):
    tok = ev_token(ev)["access_token"]
    rid = ev_request(ev, tok, callback=receiver.url("/evia"),
                     signatories=[("a@x.test", 1, 1), ("b@x.test", 2, 1), ("cc@x.test", 3, 3)])
    assert requests.post(f"{ev.base_url}{SIGN}/requests/{rid}/send", headers=H(tok)).status_code == 200
    assert [(p["EventId"], p["Email"]) for p in receiver.json()] == [(1, "a@x.test")]
    with pytest.raises(ValueError):
        ev.sign(rid, "b@x.test")  # order 2 waits for order 1
    ev.sign(rid, "a@x.test")
    assert [(p["EventId"], p["Email"]) for p in receiver.json()] == [(1, "a@x.test"), (2, "a@x.test"),
                                                                   (1, "b@x.test")]
    ev.sign(rid, "b@x.test")
    events = receiver.json()
    assert [p["EventId"] for p in events] == [1, 2, 1, 2, 3]
    for p in events:
        assert {"RequestId", "UserName", "Email", "Subject", "EventId", "EventDescription", "EventTime"} <= set(p)
        assert p["RequestId"] == rid and p["Subject"] == "Deal 42"
        assert "x-signnow-signature" not in receiver.hits[0]["headers"]
    assert events[-1]["EventDescription"] == "RequestCompleted"
    gap = receiver.hits[-1]["ts"] - receiver.hits[-2]["ts"]
    assert 0.05 <= gap < 1.0
    doc = events[-1]["Documents"][0]
    pdf = base64.b64decode(doc["DocumentContent"])
    assert doc["DocumentName"] == "deal.pdf" and is_pdf(pdf) and b"Signed by" in pdf
    assert "Documents" not in events[-2]
    assert any(e["kind"] == "completed_copy" and e["to"] == "cc@x.test" for e in ev.sent_emails)

    # U-E3 assumption endpoints
    st = requests.get(f"{ev.base_url}{SIGN}/requests/{rid}", headers=H(tok)).json()
    assert st["status"] == "completed"
    docs = requests.get(f"{ev.base_url}{SIGN}/requests/{rid}/documents", headers=H(tok)).json()
    dl = requests.get(docs[0]["downloadUrl"], headers=H(tok))
    assert dl.status_code == 200 and is_pdf(dl.content)
    ev.undocumented_endpoints = False
    assert requests.get(f"{ev.base_url}{SIGN}/requests/{rid}", headers=H(tok)).status_code == 404


def test_evia_parallel_and_reject(ev, receiver):
    tok = ev_token(ev)["access_token"]
    rid = ev_request(ev, tok, callback=receiver.url(),
                     signatories=[("a@x.test", 1, 1), ("b@x.test", 1, 2)])
    requests.post(f"{ev.base_url}{SIGN}/requests/{rid}/send", headers=H(tok))
    assert sorted(p["Email"] for p in receiver.json()) == ["a@x.test", "b@x.test"]  # equal Order = parallel
    ev.reject(rid, "b@x.test", reason="no")
    assert receiver.json()[-1]["EventId"] == 5 and receiver.json()[-1]["EventDescription"] == "RequestRejected"
    assert ev.requests[rid]["status"] == "rejected"
    with pytest.raises(ValueError):
        ev.sign(rid, "a@x.test")


def test_evia_faults(ev):
    tok = ev_token(ev)["access_token"]
    ev.fail_next(1, status=500)
    assert requests.get(f"{ev.base_url}{SIGN}/webhooks", headers=H(tok)).status_code == 500
    assert requests.get(f"{ev.base_url}{SIGN}/webhooks", headers=H(tok)).status_code == 200
    ev.outage(0.2, status=502)
    assert requests.get(f"{ev.base_url}{SIGN}/webhooks", headers=H(tok)).status_code == 502


def test_signnow_user_scope_subscription_and_webhook_sender_hook(sn):
    tok = sn.issue_token()
    user_id = requests.get(sn.base_url + "/user", headers=H(tok)).json()["id"]
    got = []
    sn.webhook_sender = lambda url, body, headers: got.append((url, json.loads(body), headers)) or 200
    r = requests.post(sn.base_url + "/api/v2/events", headers=H(tok), json={
        "event": "user.document.complete", "entity_id": user_id, "action": "callback",
        "attributes": {"callback": "https://b24sign.test/hooks/signnow/tok123", "delete_access_token": True}})
    assert r.status_code == 204
    r = requests.post(sn.base_url + "/api/v2/events", headers=H(tok), json={
        "event": "user.document.complete", "entity_id": "someone-else", "action": "callback",
        "attributes": {"callback": "https://b24sign.test/x"}})
    assert r.status_code == 403
    doc_id = doc_with_roles(sn, tok)
    invite(sn, tok, doc_id, [{"email": "a@x.test", "role": "Signer 1"}, {"email": "b@x.test", "role": "Signer 2"}])
    sn.sign(doc_id, "a@x.test")
    sn.sign(doc_id, "b@x.test")
    assert len(got) == 1
    url, payload, headers = got[0]
    assert payload["meta"]["event"] == "user.document.complete" and "access_token" not in payload["meta"]
    assert "X-SignNow-Signature" not in headers  # no secret_key registered
    sub_id = requests.get(sn.base_url + "/api/v2/events", headers=H(tok)).json()["data"][0]["id"]
    cbs = requests.get(f"{sn.base_url}/v2/event-subscriptions/{sub_id}/callbacks", headers=H(tok)).json()["data"]
    assert len(cbs) == 1 and cbs[0]["event_name"] == "user.document.complete"
    assert requests.delete(f"{sn.base_url}/api/v2/events/{sub_id}", headers=H(tok)).status_code == 204
    assert requests.get(sn.base_url + "/api/v2/events", headers=H(tok)).json()["data"] == []


def test_evia_async_race_and_stamp_propagation(ev, receiver):
    tok = ev_token(ev)["access_token"]
    ev.stamp_propagation_delay = 0.3
    up = requests.post(ev.base_url + "/_apis/sign/thumbs/api/v2/requests/document", headers=H(tok),
                       files={"File": ("d.pdf", make_pdf("signature1"), "application/pdf")})
    rid = requests.post(ev.base_url + SIGN + "/requests?type=0", headers=H(tok), json={
        "Title": "T", "Message": "M", "Documents": [up.json()["documentToken"]], "AuditDetails": {},
        "CallbackUrl": receiver.url(), "CallbackTypes": ["request.completed"]}).json()["requestId"]
    sid = add_signatory(ev, tok, rid, Email="a@x.test").json()["signatoryId"]
    stamp = f"{ev.base_url}{SIGN}/requests/{rid}/signatories/{sid}/stamps"
    assert requests.post(stamp, headers=H(tok), json={"Identifier": "signature1", "Type": "signature"}).status_code == 404
    time.sleep(0.35)
    assert requests.post(stamp, headers=H(tok), json={"Identifier": "signature1", "Type": "signature"}).json() == \
        {"requestId": rid, "stampsCount": 1}
    requests.post(f"{ev.base_url}{SIGN}/requests/{rid}/send", headers=H(tok))
    ev.async_webhooks = True
    ev.sign(rid, "a@x.test")
    deadline = time.time() + 3
    while not receiver.hits and time.time() < deadline:
        time.sleep(0.02)
    # CallbackTypes filter: only RequestCompleted reaches the URL, without documents (not attached)
    assert [p["EventId"] for p in receiver.json()] == [3] and "Documents" not in receiver.json()[0]


def test_signnow_view_is_in_the_history_and_calls_open_subscriptions(sn, receiver):
    tok = sn.issue_token()
    doc_id = doc_with_roles(sn, tok)
    r = requests.post(sn.base_url + "/api/v2/events", headers=H(tok), json={
        "event": "document.open", "entity_id": doc_id, "action": "callback",
        "attributes": {"callback": receiver.url("/open")}})
    assert r.status_code == 204
    assert invite(sn, tok, doc_id, [{"email": "a@x.test", "role": "Signer 1", "order": 1},
                                    {"email": "b@x.test", "role": "Signer 2", "order": 2}]).status_code == 200
    with pytest.raises(ValueError):
        sn.view(doc_id, "b@x.test")  # no invite to open before their turn
    sn.view(doc_id, "a@x.test")
    history = requests.get(f"{sn.base_url}/document/{doc_id}/historyfull", headers=H(tok)).json()
    assert [h["email"] for h in history if h["event"] == "document_viewed"] == ["a@x.test"]
    [hit] = receiver.hits
    body = json.loads(hit["body"])
    assert body["meta"]["event"] == "document.open" and body["content"]["viewer_user_unique_id"]
    assert b"a@x.test" not in hit["body"]  # the callback names the viewer only by an opaque id


def test_signnow_lost_subscriptions_are_gone_from_the_list_and_listing_needs_auth(sn):
    tok = sn.issue_token()
    user_id = requests.get(sn.base_url + "/user", headers=H(tok)).json()["id"]
    for event in ("user.document.open", "user.document.complete"):
        assert requests.post(sn.base_url + "/api/v2/events", headers=H(tok), json={
            "event": event, "entity_id": user_id, "action": "callback",
            "attributes": {"callback": "https://app.test/cb"}}).status_code == 204
    assert len(sn.lose_subscription(event="user.document.open")) == 1
    subs = requests.get(sn.base_url + "/api/v2/events", headers=H(tok)).json()["data"]
    assert [s["event"] for s in subs] == ["user.document.complete"]
    assert requests.get(sn.base_url + "/api/v2/events", headers=H("forged")).status_code == 401
    assert requests.delete(f"{sn.base_url}/api/v2/events/{'0' * 40}", headers=H(tok)).status_code == 404
