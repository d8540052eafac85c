"""Evia Sign provider against the Evia emulator (tests/emulators/evia.py).

Personas: portal A's admin connects Evia; alice and bob sign; carol gets a copy.
"""
from __future__ import annotations

import base64
import json

import pytest
import requests

from b24app.models import Portal
from signing import states
from signing.base import DocumentFile, ProviderError, SendSpec, Signer, WebhookRejected
from signing.models import ProviderAccount, SignatureRequest
from signing.providers.evia.provider import EviaProvider
from tests.emulators.evia import EviaEmulator
from tests.emulators.pdf import is_pdf, make_pdf

CID, CSECRET = "evia-app-id", "evia-app-key"
ALICE, BOB, CAROL = "alice@acme.test", "bob@acme.test", "carol@acme.test"
SIGN = "/_apis/sign/api/v2"
SEED_FIELDS = {"Email", "Name", "Order", "PrivateMessage", "SignatoryType", "OTP"}
SEED_OTP_FIELDS = {"IsRequired", "AccessCode", "Type", "MobileNumber"}


@pytest.fixture
def emu(settings):
    e = EviaEmulator(client_id=CID, client_secret=CSECRET).start()
    e.completion_gap = 0.0
    e.deliveries = []
    e.webhook_sender = lambda url, body, headers: e.deliveries.append((url, body, headers)) or 200
    settings.EVIA_API_BASE = e.base_url
    yield e
    e.stop()


@pytest.fixture
def portal_a(db):
    p = Portal(member_id="a" * 32, domain="alpha.bitrix24.test", client_endpoint="https://alpha.bitrix24.test/rest/",
               server_endpoint="https://oauth.bitrix.info/rest/")
    p.set_application_token("app-token-a")
    p.save()
    return p


@pytest.fixture
def account(emu, portal_a):
    acc = ProviderAccount(portal=portal_a, provider="evia")
    acc.credentials = EviaProvider(acc).connect({"client_id": CID, "client_secret": CSECRET,
                                                 "code": emu.issue_auth_code()})
    acc.save()
    return acc


@pytest.fixture
def provider(account):
    return EviaProvider(account)


@pytest.fixture
def parser():
    """Parsing needs no account data and no emulator."""
    return EviaProvider(ProviderAccount(provider="evia"))


@pytest.fixture
def pdf_file(tmp_path):
    path = tmp_path / "deal-42.pdf"
    path.write_bytes(make_pdf(["Deal 42", "signature1 signature2"]))
    return DocumentFile(name="deal-42.pdf", path=path, size=path.stat().st_size)


def make_spec(account, pdf_file, signers=None, **kw) -> SendSpec:
    kw.setdefault("callback_url", account.webhook_url())
    return SendSpec(request_id=kw.pop("request_id", "req-1"), title=kw.pop("title", "Deal 42"), document=pdf_file,
                    signers=signers or [Signer(ALICE, "Alice", order=1), Signer(BOB, "Bob", order=2)],
                    message=kw.pop("message", "Please sign"), **kw)


def calls(emu, method, path_re):
    return emu.calls_to(method, path_re)


def events_for(provider, emu):
    out = []
    for _, body, headers in emu.deliveries:
        out.extend(provider.parse_webhook(body, {k.lower(): v for k, v in headers.items()}))
    return out


# -- connect ------------------------------------------------------------------------------------------------
def test_it_connects_with_an_authorization_code(emu, account, provider):
    creds = account.credentials
    assert creds["access_token"] in emu.tokens and creds["refresh_token"] and creds["expires_at"] > 0
    assert "Connected to Evia Sign" in provider.test_connection()


def test_it_rejects_a_bad_code_and_bad_client_secret(emu, portal_a):
    acc = ProviderAccount(portal=portal_a, provider="evia")
    with pytest.raises(ProviderError) as exc:
        EviaProvider(acc).connect({"client_id": CID, "client_secret": CSECRET, "code": "nope"})
    assert exc.value.permanent
    with pytest.raises(ProviderError) as exc:
        EviaProvider(acc).connect({"client_id": CID, "client_secret": "wrong", "code": emu.issue_auth_code()})
    assert exc.value.permanent and "invalid_client" in exc.value.message
    with pytest.raises(ProviderError, match="authorization code"):
        EviaProvider(acc).connect({"client_id": CID, "client_secret": CSECRET})


def test_it_refreshes_an_expired_token_with_the_standard_form(emu, account, provider):
    old = dict(account.credentials)
    emu.expire_tokens()
    provider.test_connection()
    account.refresh_from_db()
    assert account.credentials["access_token"] != old["access_token"]
    assert account.credentials["refresh_token"] != old["refresh_token"]  # rotated


def test_it_falls_back_to_the_multipart_refresh(emu, account, provider):
    emu.refresh_token_style = "multipart"  # U-E1, the third-party reading
    emu.expire_tokens()
    provider.test_connection()
    account.refresh_from_db()
    assert account.credentials["access_token"] in emu.tokens
    assert [c["status"] for c in calls(emu, "POST", "/auth/api/v2/token$")][-2:] == [400, 200]


def test_it_refreshes_once_on_401_even_before_expiry(emu, account, provider):
    emu.tokens.pop(account.credentials["access_token"])  # revoked early: 401 "Invalid access token"
    provider.test_connection()
    account.refresh_from_db()
    assert account.credentials["access_token"] in emu.tokens


def test_it_marks_the_account_for_reconnect_when_refresh_fails(emu, account, provider):
    emu.refresh_tokens.clear()
    emu.expire_tokens()
    with pytest.raises(ProviderError) as exc:
        provider.test_connection()
    assert exc.value.permanent and "reconnect" in exc.value.message
    account.refresh_from_db()
    assert account.credentials["needs_reconnect"] is True


def test_on_connected_registers_the_account_webhook_once(emu, account, provider):
    provider.on_connected(account.webhook_url())
    provider.on_connected(account.webhook_url())
    assert [(w["url"], w["events"]) for w in emu.webhooks.values()] == [
        (account.webhook_url(), ["request.sent", "request.completed"])]


# -- validation ---------------------------------------------------------------------------------------------
def test_sms_without_a_mobile_number_fails_before_any_call(emu, account, provider, pdf_file):
    before = len(emu.calls)
    spec = make_spec(account, pdf_file, auth="sms",
                     signers=[Signer(ALICE, "Alice", phone="+14155550100"), Signer(BOB, "Bob", phone="")])
    with pytest.raises(ProviderError) as exc:
        provider.send(spec)
    assert exc.value.permanent
    assert exc.value.message.startswith(f"Evia Sign: SMS verification needs a mobile number for {BOB}")
    assert len(emu.calls) == before


@pytest.mark.parametrize("phone", ["", "4155550100", "+1 415", "call me"])
def test_email_and_sms_otp_needs_a_valid_mobile(emu, account, provider, pdf_file, phone):
    spec = make_spec(account, pdf_file, signers=[Signer(ALICE, "Alice", phone=phone)],
                     options={"evia_otp_type": 4})
    with pytest.raises(ProviderError, match=f"SMS verification needs a mobile number for {ALICE}"):
        provider.validate(spec)


@pytest.mark.parametrize("signers,kw,message", [
    ([], {}, "at least one signer"),
    ([Signer("not-an-email", "X")], {}, "not a valid email"),
    ([Signer(ALICE, "A"), Signer(ALICE.upper(), "A2")], {}, "listed twice"),
    ([Signer(ALICE, "A", role="cc")], {}, "signer role"),
    ([Signer(ALICE, "A")], {"auth": "password"}, "access-code verification needs a code"),
    ([Signer(ALICE, "A")], {"cc": ["bad@"]}, "copy recipient"),
])
def test_it_refuses_unsendable_specs_before_any_call(emu, account, provider, pdf_file, signers, kw, message):
    before = len(emu.calls)
    spec = make_spec(account, pdf_file, **kw)
    spec.signers = signers
    with pytest.raises(ProviderError, match=message) as exc:
        provider.send(spec)
    assert exc.value.permanent and len(emu.calls) == before


# -- send -----------------------------------------------------------------------------------------------------
def test_it_sends_sequentially_with_a_copy(emu, account, provider, pdf_file):
    spec = make_spec(account, pdf_file, cc=[CAROL], options={"signing_order": "sequential"},
                     signers=[Signer(ALICE, "Alice"), Signer(BOB, "Bob", role="approver")])
    result = provider.send(spec)
    rq = emu.requests[result.external_id]
    assert rq["status"] == "sent" and rq["callback_url"] == account.webhook_url() and rq["attach"] is True
    assert [(s["email"], s["order"], s["type"]) for s in rq["signatories"]] == [(ALICE, 1, 1), (BOB, 2, 2),
                                                                                (CAROL, 2, 3)]
    for call in calls(emu, "POST", r"/signatories$"):
        assert set(call["json"]) == SEED_FIELDS and set(call["json"]["OTP"]) == SEED_OTP_FIELDS
        assert call["json"]["OTP"]["IsRequired"] is False
    assert [st["Identifier"] for st in rq["signatories"][0]["stamps"]] == ["signature1"]
    assert len(calls(emu, "POST", r"/send$")) == 1
    assert [s.email for s in result.signers] == [ALICE, BOB]
    assert all(s.external_id and s.status == "pending" for s in result.signers)
    assert [e["to"] for e in emu.sent_emails if e["kind"] == "sign_request"] == [ALICE]  # bob waits his turn


@pytest.mark.parametrize("name,shown", [("", "john.smith@acme.test"), ("  ", "john.smith@acme.test"),
                                        ("John Smith", "John Smith")])
def test_the_audit_trail_shows_the_crm_name_or_the_whole_address(emu, account, provider, pdf_file, name, shown):
    """Never the e-mail's local part ("john.smith"): the audit trail would name somebody else."""
    result = provider.send(make_spec(account, pdf_file, signers=[Signer("john.smith@acme.test", name)]))
    assert [s["name"] for s in emu.requests[result.external_id]["signatories"]] == [shown]


def test_the_same_address_twice_is_not_refused_by_evia(emu, account, provider, pdf_file):
    """Evia documents no duplicate-email error; the emulator invents none (our own validation refuses it)."""
    rid = provider.send(make_spec(account, pdf_file, signers=[Signer(ALICE, "Alice")])).external_id
    token = account.credentials["access_token"]
    emu.requests[rid]["status"] = "draft"
    r = requests.post(f"{emu.base_url}{SIGN}/requests/{rid}/signatories", headers={"Authorization": f"Bearer {token}"},
                      json={"Email": ALICE, "Name": "Alice", "Order": 1, "SignatoryType": 1,
                            "OTP": {"IsRequired": False, "Type": 1}})
    assert r.status_code == 200


def test_it_sends_in_parallel(emu, account, provider, pdf_file):
    spec = make_spec(account, pdf_file, options={"signing_order": "parallel"},
                     signers=[Signer(ALICE, "Alice", order=1), Signer(BOB, "Bob", order=2)])
    result = provider.send(spec)
    rq = emu.requests[result.external_id]
    assert [s["order"] for s in rq["signatories"]] == [1, 1]
    assert sorted(e["to"] for e in emu.sent_emails if e["kind"] == "sign_request") == [ALICE, BOB]
    assert [st["Identifier"] for s in rq["signatories"] for st in s["stamps"]] == ["signature1", "signature2"]


@pytest.mark.parametrize("auth,otp_type", [("email_otp", 1), ("sms", 2), ("password", 3)])
def test_it_maps_signer_authentication_to_otp(emu, account, provider, pdf_file, auth, otp_type):
    spec = make_spec(account, pdf_file, auth=auth, auth_secret="4711",
                     signers=[Signer(ALICE, "Alice", phone="+49 170 123-4567")])
    result = provider.send(spec)
    otp = emu.requests[result.external_id]["signatories"][0]["otp"]
    assert otp["IsRequired"] is True and otp["Type"] == otp_type
    assert otp["MobileNumber"] == ("+491701234567" if otp_type == 2 else "")
    assert otp["AccessCode"] == ("4711" if otp_type == 3 else "")


def test_it_retries_stamps_while_a_new_signatory_propagates(emu, account, provider, pdf_file):
    emu.stamp_propagation_delay = 0.2
    result = provider.send(make_spec(account, pdf_file))
    assert emu.requests[result.external_id]["status"] == "sent"


# -- resume ---------------------------------------------------------------------------------------------------
class Killed(Exception):
    pass


def crash_when(predicate, saved):
    def checkpoint(state):
        saved.clear()
        saved.update(state)
        if predicate(state):
            raise Killed()
    return checkpoint


@pytest.mark.parametrize("guessed_status", [True, False])
def test_a_resumed_send_never_sends_twice(emu, account, provider, pdf_file, guessed_status):
    saved: dict = {}
    # the worker dies right after Evia accepted /send, before "sent" was recorded
    spec = make_spec(account, pdf_file, checkpoint=crash_when(lambda s: s.get("sent"), saved))
    with pytest.raises(Killed):
        provider.send(spec)
    resume = {k: v for k, v in saved.items() if k != "sent"}
    assert resume["send_started"] and resume["request_id"]
    emu.undocumented_endpoints = guessed_status
    again = make_spec(account, pdf_file, resume=resume)
    result = provider.send(again)
    assert result.external_id == resume["request_id"]
    assert len(emu.requests) == 1 and len(calls(emu, "POST", r"/requests/document$")) == 1
    accepted = [c for c in calls(emu, "POST", r"/send$") if c["status"] == 200]
    assert len(accepted) == 1
    assert [e["to"] for e in emu.sent_emails if e["kind"] == "sign_request"] == [ALICE]


def test_a_resumed_send_skips_finished_steps(emu, account, provider, pdf_file):
    saved: dict = {}
    spec = make_spec(account, pdf_file, checkpoint=crash_when(lambda s: len(s.get("signatories", {})) == 1, saved))
    with pytest.raises(Killed):
        provider.send(spec)
    result = provider.send(make_spec(account, pdf_file, resume=dict(saved)))
    assert len(calls(emu, "POST", r"/requests/document$")) == 1
    assert len(calls(emu, "POST", rf"^{SIGN}/requests$")) == 1
    assert len(calls(emu, "POST", r"/signatories$")) == 2
    assert emu.requests[result.external_id]["status"] == "sent"


def test_a_signatory_added_just_before_a_crash_is_found_again(emu, account, provider, pdf_file):
    saved: dict = {}
    spec = make_spec(account, pdf_file, checkpoint=crash_when(lambda s: s.get("request_id"), saved))
    with pytest.raises(Killed):
        provider.send(spec)
    rid = saved["request_id"]
    token = account.credentials["access_token"]
    requests.post(f"{emu.base_url}{SIGN}/requests/{rid}/signatories", headers={"Authorization": f"Bearer {token}"},
                  json={"Email": ALICE, "Name": "Alice", "Order": 1, "SignatoryType": 1}).raise_for_status()
    result = provider.send(make_spec(account, pdf_file, resume=dict(saved)))
    assert [s["email"] for s in emu.requests[rid]["signatories"]] == [ALICE, BOB]
    assert result.signers[0].external_id == emu.requests[rid]["signatories"][0]["signatoryId"]


# -- callbacks ------------------------------------------------------------------------------------------------
def test_callbacks_are_parsed_with_the_signed_pdf(emu, account, provider, pdf_file):
    emu.attach_audit_trail = True
    result = provider.send(make_spec(account, pdf_file))
    rid = result.external_id
    emu.sign(rid, ALICE)
    emu.sign(rid, BOB)
    assert {url for url, _, _ in emu.deliveries} == {account.webhook_url()}
    events = events_for(provider, emu)
    assert [(e.kind, e.status_hint, e.signer_email) for e in events] == [
        ("SignRequestReceived", states.SENT, ALICE),
        ("SignatoryCompleted", states.PARTIALLY_SIGNED, ALICE),
        ("SignRequestReceived", states.SENT, BOB),
        ("SignatoryCompleted", states.PARTIALLY_SIGNED, BOB),
        ("RequestCompleted", states.COMPLETED, BOB),
    ]
    done = events[-1]
    raw = json.loads(emu.deliveries[-1][1])
    assert done.external_id == rid
    assert done.dedupe_key == f"{rid}:3:{BOB}:{raw['EventTime']}"
    assert done.files is not None and is_pdf(done.files.pdf) and b"Signed by" in done.files.pdf
    assert done.files.pdf_name == "deal-42.pdf"
    assert done.files.audit and done.files.audit_name == "audit_trail.pdf"
    assert "DocumentContent" not in json.dumps(done.raw)
    assert all(e.files is None for e in events[:-1])
    assert len({e.dedupe_key for e in events}) == len(events)


def test_a_rejection_is_a_decline(emu, account, provider, pdf_file):
    result = provider.send(make_spec(account, pdf_file))
    emu.reject(result.external_id, ALICE, "wrong amount")
    last = events_for(provider, emu)[-1]
    assert (last.kind, last.status_hint, last.signer_email) == ("RequestRejected", states.DECLINED, ALICE)


def test_a_duplicate_delivery_has_the_same_dedupe_key(emu, account, provider, pdf_file):
    emu.duplicate_received = True
    provider.send(make_spec(account, pdf_file))
    events = events_for(provider, emu)
    assert len(events) == 2 and events[0].dedupe_key == events[1].dedupe_key


def test_unknown_event_ids_carry_no_hint(parser):
    body = json.dumps({"RequestId": "r1", "UserName": "", "Email": ALICE, "Subject": "x", "EventId": 9,
                       "EventDescription": "RequestExpired", "EventTime": "2025-01-01T00:00:00Z"}).encode()
    [event] = parser.parse_webhook(body, {})
    assert event.status_hint == "" and event.kind == "RequestExpired" and event.files is None


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'"x"', json.dumps({"EventId": 3}).encode(),
                                  json.dumps({"RequestId": "r1", "EventId": "three", "EventTime": "t"}).encode(),
                                  json.dumps({"RequestId": "r1", "EventId": 3}).encode()])
def test_unknown_shapes_are_rejected(parser, body):
    with pytest.raises(WebhookRejected):
        parser.parse_webhook(body, {})


# -- status, cancel, signed document (U-E3 guessed endpoints) -------------------------------------------------
def _request_row(account, external_id, **kw):
    return SignatureRequest.objects.create(portal=account.portal, account=account, provider="evia",
                                           external_id=external_id, status=states.SENT, title="Deal 42", **kw)


def test_status_uses_the_guessed_endpoint_when_it_answers(emu, account, provider, pdf_file):
    result = provider.send(make_spec(account, pdf_file))
    row = _request_row(account, result.external_id)
    assert provider.status(row).status == states.SENT
    emu.sign(result.external_id, ALICE)
    snap = provider.status(row)
    assert snap.status == states.PARTIALLY_SIGNED
    assert [(s.email, s.status) for s in snap.signers] == [(ALICE, "signed"), (BOB, "pending")]
    emu.sign(result.external_id, BOB)
    assert provider.status(row).status == states.COMPLETED


def test_status_explains_callbacks_when_the_endpoint_is_missing(emu, account, provider, pdf_file):
    result = provider.send(make_spec(account, pdf_file))
    emu.undocumented_endpoints = False
    row = _request_row(account, result.external_id)
    with pytest.raises(ProviderError) as exc:
        provider.status(row)
    assert exc.value.permanent and exc.value.code == "unsupported" and "callbacks" in exc.value.message
    with pytest.raises(ProviderError, match="cancel"):
        provider.cancel(row)
    with pytest.raises(ProviderError, match="Reminders"):
        provider.remind(row)


def test_cancel_uses_the_guessed_endpoint(emu, account, provider, pdf_file):
    result = provider.send(make_spec(account, pdf_file))
    provider.cancel(_request_row(account, result.external_id), "deal lost")
    assert emu.requests[result.external_id]["status"] == "cancelled"


def test_signed_document_prefers_the_stored_callback_copy(emu, account, provider):
    pdf = make_pdf("signed copy")
    row = _request_row(account, "r-stored", provider_state={
        "signed_pdf_b64": base64.b64encode(pdf).decode(), "signed_pdf_name": "deal-42.pdf"})
    before = len(emu.calls)
    files = provider.signed_document(row)
    assert files.pdf == pdf and files.pdf_name == "deal-42.pdf" and len(emu.calls) == before


def test_signed_document_falls_back_to_the_guessed_download(emu, account, provider, pdf_file):
    result = provider.send(make_spec(account, pdf_file))
    emu.sign(result.external_id, ALICE)
    emu.sign(result.external_id, BOB)
    files = provider.signed_document(_request_row(account, result.external_id))
    assert is_pdf(files.pdf) and b"Signed by" in files.pdf and files.pdf_name == "deal-42.pdf"
