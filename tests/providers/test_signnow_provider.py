"""The signNow provider against the signNow emulator (tests/emulators/signnow.py).

Personas: portal A's signNow account (owner@acme.test); signers alice, bob and carol; dave replaces bob.
"""
from __future__ import annotations

import base64
import json
import time

import pytest

from b24app.models import Portal
from bizproc_ext.pipeline import request_options
from signing import states
from signing.base import DocumentFile, ProviderError, SendSpec, Signer, WebhookRejected
from signing.models import ProviderAccount, SignatureRequest
from signing.providers.signnow import errors
from signing.providers.signnow.provider import SignNowProvider
from tests.emulators.pdf import is_pdf, make_pdf, page_count
from tests.emulators.signnow import SignNowEmulator

BASIC = base64.b64encode(b"client:secret").decode()
OWNER = "owner@acme.test"
ALICE, BOB, CAROL, DAVE = "alice@client.test", "bob@client.test", "carol@client.test", "dave@client.test"
CREDENTIALS = {"basic_token": BASIC, "username": OWNER, "password": "pw"}


@pytest.fixture
def emu(settings):
    emulator = SignNowEmulator(basic_token=BASIC, users={OWNER: "pw"}).start()
    emulator.deliveries = []
    emulator.webhook_sender = lambda url, body, headers: emulator.deliveries.append((url, body, headers)) or 200
    settings.SIGNNOW_API_BASE = emulator.base_url
    settings.SIGNNOW_RATE_PER_S = 0  # the client-side limiter has its own test
    yield emulator
    emulator.stop()


@pytest.fixture
def account(emu, db):
    portal = Portal.objects.create(member_id="portal-a", domain="a.bitrix24.test",
                                   client_endpoint="http://127.0.0.1:1/rest/",
                                   server_endpoint="http://127.0.0.1:1/rest/", app_token_digest="x")
    acc = ProviderAccount.objects.create(portal=portal, provider="signnow")
    acc.credentials = SignNowProvider(acc).connect(dict(CREDENTIALS))
    acc.save()
    return acc


@pytest.fixture
def pdf_file(tmp_path):
    path = tmp_path / "contract.pdf"
    path.write_bytes(make_pdf(["Contract page 1", "Contract page 2"]))
    return DocumentFile(name="contract.pdf", path=path, size=path.stat().st_size)


def make_spec(pdf_file, signers, **kw) -> SendSpec:
    spec = SendSpec(request_id="req-1", title="Supply contract", document=pdf_file, signers=signers, **kw)
    spec.saved = {}

    def checkpoint(state):
        spec.saved.update(state)
    spec.checkpoint = checkpoint
    return spec


def send(account, spec, **request_fields):
    """Send like services.send_request does, and return the SignatureRequest row, its options built the way
    the send robot builds them (``pipeline.request_options``: the auth setting, never the secret)."""
    result = SignNowProvider(account).send(spec)
    props = {"signer_auth": spec.auth, "signer_auth_secret": spec.auth_secret, "expiry_days": spec.expiry_days,
             "reminder_days": spec.reminder_days, "subject": spec.subject}
    req = SignatureRequest.objects.create(
        portal=account.portal, account=account, provider="signnow", title=spec.title,
        external_id=result.external_id, provider_state={**spec.saved, "send": result.raw},
        options=request_options(props, kedo=False), **request_fields)
    return result, req


def invite_calls(emu):
    return emu.calls_to("POST", r"^/document/[0-9a-f]+/invite$")


def provider(account):
    account.refresh_from_db()
    return SignNowProvider(account)


# --- account ---------------------------------------------------------------------------------------------
def test_it_connects_with_the_password_grant(account, emu):
    creds = account.credentials
    assert creds["access_token"] in emu.tokens and creds["refresh_token"] in emu.refresh_tokens
    assert creds["expires_at"] > time.time() + 29 * 86400
    assert creds["sender_email"] == OWNER and creds["user_id"] == emu.user_ids[OWNER]
    token_call = emu.calls_to("POST", "^/oauth2/token$")[0]
    assert token_call["headers"]["authorization"] == f"Basic {BASIC}"
    assert "Connected to signNow as owner@acme.test" in provider(account).test_connection()


def test_it_refreshes_an_expired_token_once(account, emu):
    old = dict(account.credentials)
    emu.expire_tokens()
    assert "owner@acme.test" in provider(account).test_connection()
    account.refresh_from_db()
    assert account.credentials["access_token"] != old["access_token"]
    grants = [c for c in emu.calls_to("POST", "^/oauth2/token$")]
    assert len(grants) == 2  # connect + one refresh
    assert old["refresh_token"] not in emu.refresh_tokens  # rotated


def test_it_refreshes_ahead_when_a_day_or_less_remains(account, emu):
    account.credentials = {**account.credentials, "expires_at": time.time() + 3600}
    account.save()
    provider(account).test_connection()
    assert [c["status"] for c in emu.calls_to("GET", "^/user$")][-1] == 200
    assert not [c for c in emu.calls if c["status"] == 401]  # refreshed before, not after, a 401
    account.refresh_from_db()
    assert account.credentials["expires_at"] > time.time() + 29 * 86400


def test_it_falls_back_to_the_password_grant_when_the_refresh_token_is_dead(account, emu):
    account.credentials = {**account.credentials, "refresh_token": "dead"}
    account.save()
    emu.expire_tokens()
    provider(account).test_connection()
    grants = [c["status"] for c in emu.calls_to("POST", "^/oauth2/token$")]
    assert grants == [200, 400, 200]  # connect, refresh refused (invalid_grant), password grant


def test_it_handles_bad_credentials(emu, db):
    acc = ProviderAccount(provider="signnow")
    with pytest.raises(ProviderError) as exc:
        SignNowProvider(acc).connect({**CREDENTIALS, "password": "wrong"})
    assert exc.value.permanent and exc.value.code == "826"
    assert "username or password was rejected" in exc.value.message
    with pytest.raises(ProviderError) as exc:
        SignNowProvider(acc).connect({**CREDENTIALS, "basic_token": "bm9wZQ=="})
    assert exc.value.permanent and exc.value.code == "invalid_client"


def test_it_subscribes_to_callbacks_with_a_secret_and_a_header(account, emu):
    url = account.webhook_url()
    provider(account).on_connected(url)
    account.refresh_from_db()
    creds = account.credentials
    subs = list(emu.subscriptions.values())
    assert sorted(s["event"] for s in subs) == sorted([
        "user.document.complete", "user.document.fieldinvite.decline", "user.document.fieldinvite.signed",
        "user.document.freeform.signed", "user.document.open"])
    for s in subs:
        assert s["entity_id"] == creds["user_id"]
        ja = s["json_attributes"]
        assert ja["callback_url"] == url and ja["secret_key"] == creds["webhook_hmac_secret"]
        assert ja["headers"] == {"X-B24Sign-Token": creds["webhook_header_token"]}
    # Connecting again replaces our subscriptions instead of doubling them.
    provider(account).on_connected(url)
    assert len(emu.subscriptions) == 5
    assert sorted(account.credentials["subscribed_events"]) == sorted(s["event"] for s in emu.subscriptions.values())


# --- sending -----------------------------------------------------------------------------------------------
def test_freeform_send_sign_completed(account, emu, pdf_file):
    spec = make_spec(pdf_file, [Signer(email=ALICE, name="Alice")], subject="Please sign", message="Hi")
    result, req = send(account, spec)
    call = invite_calls(emu)[0]
    assert call["json"]["to"] == ALICE and call["json"]["from"] == OWNER
    assert spec.saved["mode"] == "freeform" and spec.saved["document_id"] == result.external_id
    assert [(s.email, s.status) for s in result.signers] == [(ALICE, "pending")]
    assert result.signers[0].external_id == spec.saved["freeform_invite_ids"][0]
    uploaded = emu.documents[result.external_id]
    assert uploaded["pdf"] == pdf_file.path.read_bytes()
    assert provider(account).status(req).status == states.SENT

    emu.sign(result.external_id, ALICE)
    snap = provider(account).status(req)
    assert snap.status == states.COMPLETED
    assert [(s.email, s.status) for s in snap.signers] == [(ALICE, "signed")]


def test_role_based_send_with_order_auth_expiry_reminder_and_cc(account, emu, pdf_file):
    spec = make_spec(pdf_file, [Signer(email=ALICE, order=1), Signer(email=BOB, order=2)], cc=[CAROL],
                     auth="password", auth_secret="s3cret", expiry_days=10, reminder_days=3,
                     subject="Contract", message="Please sign")
    result, req = send(account, spec)
    body = invite_calls(emu)[0]["json"]
    doc = emu.documents[result.external_id]
    roles = {r["name"]: r["unique_id"] for r in emu.document_json(doc)["roles"]}
    # Our own roles are named in the invite (spec §1.5: role and/or role_id), saving a read of the document.
    assert [(t["email"], t["role"], t["order"]) for t in body["to"]] == [(ALICE, "Signer 1", 1), (BOB, "Signer 2", 2)]
    assert set(roles) == {"Signer 1", "Signer 2"}
    assert {fi["role_id"] for fi in doc["field_invites"]} == set(roles.values())
    first = body["to"][0]
    assert first["expiration_days"] == 10 and first["reminder"] == 3  # integer days, the documented form
    assert first["authentication_type"] == "password" and first["password"] == "s3cret"
    assert body["cc"] == [CAROL] and body["cc_step"] == [{"name": "CC 1", "email": CAROL, "step": 1}]
    assert {f["role"] for f in doc["fields"]} == {"Signer 1", "Signer 2"}
    fi_ids = {fi["email"]: fi["id"] for fi in doc["field_invites"]}
    assert {s.email: s.external_id for s in result.signers} == fi_ids

    assert provider(account).status(req).status == states.SENT
    emu.sign(result.external_id, ALICE)
    snap = provider(account).status(req)
    assert snap.status == states.PARTIALLY_SIGNED
    assert {s.email: s.status for s in snap.signers} == {ALICE: "signed", BOB: "pending"}
    emu.sign(result.external_id, BOB)
    assert provider(account).status(req).status == states.COMPLETED


def sent_calls(emu, since: int) -> list[tuple[str, str]]:
    return [(c["method"], c["path"].replace(c["path"].split("/")[2], "{id}") if c["path"].count("/") > 1 else c["path"])
            for c in emu.calls[since:]]


def test_a_freeform_send_makes_two_signnow_calls(account, emu, pdf_file):
    since = len(emu.calls)
    result, req = send(account, make_spec(pdf_file, [Signer(email=ALICE)]))
    assert sent_calls(emu, since) == [("POST", "/document"), ("POST", "/document/{id}/invite")]  # 4 before
    assert result.signers[0].external_id and provider(account).status(req).status == states.SENT


def test_a_field_send_makes_four_signnow_calls(account, emu, pdf_file):
    since = len(emu.calls)
    spec = make_spec(pdf_file, [Signer(email=ALICE), Signer(email=BOB)], expiry_days=10)
    result, req = send(account, spec)
    assert sent_calls(emu, since) == [("POST", "/document"), ("PUT", "/document/{id}"),
                                      ("POST", "/document/{id}/invite"), ("GET", "/document/{id}")]  # 6 before
    doc = emu.documents[result.external_id]
    assert spec.saved["page_count"] == 2 and {f["page_number"] for f in doc["fields"]} == {1}  # the last page
    assert {s.email: s.external_id for s in result.signers} == {fi["email"]: fi["id"] for fi in doc["field_invites"]}


def test_the_page_count_is_read_from_the_file_in_chunks(tmp_path):
    from signing.providers.signnow.documents import file_page_count
    path = tmp_path / "long.pdf"
    pdf = make_pdf([f"page {i}" for i in range(7)])
    path.write_bytes(pdf)
    assert file_page_count(path, chunk=13) == file_page_count(path) == page_count(pdf) == 7


def test_parallel_signers_share_order_one_and_sms_auth(account, emu, pdf_file):
    spec = make_spec(pdf_file, [Signer(email=ALICE, order=5, phone="+15550001111"),
                                Signer(email=BOB, order=5, phone="+15550002222")], auth="sms")
    result, _ = send(account, spec)
    to = invite_calls(emu)[0]["json"]["to"]
    assert [t["order"] for t in to] == [1, 1]
    assert to[1]["authentication_type"] == "phone" and to[1]["phone"] == "+15550002222"
    assert "method" not in to[1]  # undocumented: a strict server refuses it
    assert {fi["status"] for fi in emu.documents[result.external_id]["field_invites"]} == {"pending"}


def test_the_reminder_goes_out_as_integer_days_in_one_call(account, emu, pdf_file):
    spec = make_spec(pdf_file, [Signer(email=ALICE)], expiry_days=20, reminder_days=4)
    send(account, spec)
    calls = invite_calls(emu)
    assert [c["status"] for c in calls] == [200]
    assert calls[0]["json"]["to"][0]["reminder"] == 4


def test_decline(account, emu, pdf_file):
    result, req = send(account, make_spec(pdf_file, [Signer(email=ALICE), Signer(email=BOB)]))
    emu.decline(result.external_id, BOB, reason="wrong price")
    snap = provider(account).status(req)
    assert snap.status == states.DECLINED and "wrong price" in snap.reason and BOB in snap.reason
    assert {s.email: s.status for s in snap.signers}[BOB] == "declined"


def test_expire(account, emu, pdf_file):
    result, req = send(account, make_spec(pdf_file, [Signer(email=ALICE)], expiry_days=3))
    emu.expire(result.external_id)
    assert provider(account).status(req).status == states.EXPIRED
    emu.expired_invite_status = "expired"  # the other reading: the status itself says so
    assert provider(account).status(req).status == states.EXPIRED


def test_cancel_field_invite_and_again(account, emu, pdf_file):
    result, req = send(account, make_spec(pdf_file, [Signer(email=ALICE), Signer(email=BOB)]))
    provider(account).cancel(req, "deal lost")
    assert emu.calls_to("PUT", "fieldinvitecancel$")[0]["json"] == {"reason": "deal lost"}
    assert emu.documents[result.external_id]["cancelled_invites"]
    assert provider(account).status(req).status == states.CANCELLED
    provider(account).cancel(req)  # a retried cancel re-reads the document and finds nothing to cancel
    assert len(emu.calls_to("PUT", "fieldinvitecancel$")) == 1


def test_a_refused_cancel_with_invites_still_open_is_not_taken_for_done(account, emu, pdf_file):
    """65615 is documented for replace only: the cancel re-reads the document instead of guessing."""
    result, req = send(account, make_spec(pdf_file, [Signer(email=ALICE), Signer(email=BOB)]))
    emu.cancel_refusal = (65615, "Field invite missing on this document.")
    with pytest.raises(ProviderError):
        provider(account).cancel(req, "deal lost")
    assert provider(account).status(req).status == states.SENT  # still out for signature, and we say so


def test_cancel_freeform(account, emu, pdf_file):
    result, req = send(account, make_spec(pdf_file, [Signer(email=ALICE)]))
    provider(account).cancel(req, "")
    call = emu.calls_to("PUT", r"^/invite/[0-9a-f]+/cancel$")[0]
    assert call["json"] == {"reason": "Cancelled from Bitrix24"}
    snap = provider(account).status(req)
    assert snap.status == states.CANCELLED and snap.signers[0].status == "cancelled"


def test_remind_field_invites_resends_to_whoever_is_pending(account, emu, pdf_file):
    result, req = send(account, make_spec(pdf_file, [Signer(email=ALICE, order=1), Signer(email=BOB, order=2)]))
    provider(account).remind(req)
    resent = [e["to"] for e in emu.sent_emails if e["kind"] == "resend"]
    assert resent == [ALICE]  # bob's turn has not come (routing order)
    emu.sign(result.external_id, ALICE)
    provider(account).remind(req)
    assert [e["to"] for e in emu.sent_emails if e["kind"] == "resend"] == [ALICE, BOB]


def test_remind_freeform_uses_email2(account, emu, pdf_file):
    result, req = send(account, make_spec(pdf_file, [Signer(email=ALICE)]))
    provider(account).remind(req)
    assert emu.calls_to("POST", "email2$")[0]["json"]["emails"] == [ALICE]
    emu.sign(result.external_id, ALICE)
    with pytest.raises(ProviderError) as exc:
        provider(account).remind(req)
    assert exc.value.permanent and exc.value.code == "nothing_to_do"


def test_replace_signer(account, emu, pdf_file):
    result, req = send(account, make_spec(pdf_file, [Signer(email=ALICE), Signer(email=BOB)]))
    old_role = emu.field_invite(result.external_id, BOB)["role_id"]
    provider(account).replace_signer(req, BOB, DAVE)
    new = emu.field_invite(result.external_id, DAVE)
    assert new["role_id"] == old_role and new["status"] == "pending"
    assert all(fi["email"] != BOB for fi in emu.documents[result.external_id]["field_invites"])
    body = emu.calls_to("POST", "^/field_invite$")[0]["json"]
    assert body["is_replace"] is True and body["expiration_days"] <= 30
    provider(account).replace_signer(req, BOB, DAVE)  # again: already done, no calls that fail
    emu.sign(result.external_id, ALICE)
    emu.sign(result.external_id, DAVE)
    assert provider(account).status(req).status == states.COMPLETED


@pytest.mark.parametrize("auth,secret,phone", [("password", "pw1", ""), ("sms", "", "+15550001111")])
def test_replace_signer_never_drops_the_signers_authentication(account, emu, pdf_file, auth, secret, phone):
    """The request keeps the robot's setting, not the password: a protected signer is not replaced by an
    unprotected invite; the manager is told to cancel and send again."""
    signers = [Signer(email=ALICE, phone=phone), Signer(email=BOB, phone=phone)]
    result, req = send(account, make_spec(pdf_file, signers, auth=auth, auth_secret=secret))
    assert "pw1" not in str(req.options)  # never kept in clear
    with pytest.raises(ProviderError, match="cancel and send again") as exc:
        provider(account).replace_signer(req, BOB, DAVE)
    assert exc.value.permanent
    assert emu.field_invite(result.external_id, BOB)["status"] == "pending"  # untouched
    assert not emu.calls_to("DELETE", "^/field_invite/") and not emu.calls_to("POST", "^/field_invite$")


def test_replace_signer_resumes_after_step_one(account, emu, pdf_file):
    result, req = send(account, make_spec(pdf_file, [Signer(email=ALICE), Signer(email=BOB)]))
    fi = emu.field_invite(result.external_id, BOB)
    provider(account).client.json("DELETE", f"/field_invite/{fi['id']}")  # a worker died after step 1
    provider(account).replace_signer(req, BOB, DAVE)
    assert emu.field_invite(result.external_id, DAVE)["role_id"] == fi["role_id"]


def test_resume_after_a_crash_between_upload_and_invite(account, emu, pdf_file):
    spec = make_spec(pdf_file, [Signer(email=ALICE), Signer(email=BOB)])

    def crash_after_upload(state):
        spec.saved.update(state)
        if "document_id" in state and "invite_started" not in state:
            raise SystemExit("worker killed")
    spec.checkpoint = crash_after_upload
    with pytest.raises(SystemExit):
        SignNowProvider(account).send(spec)
    assert len(emu.documents) == 1 and not invite_calls(emu)

    retry = make_spec(pdf_file, spec.signers)
    retry.resume = dict(spec.saved)
    result = SignNowProvider(account).send(retry)
    assert len(emu.calls_to("POST", "^/document$")) == 1  # not uploaded again
    assert result.external_id == spec.saved["document_id"] and len(invite_calls(emu)) == 1


def test_resume_after_a_crash_right_after_the_invite_never_invites_twice(account, emu, pdf_file):
    for signers in ([Signer(email=ALICE), Signer(email=BOB)], [Signer(email=CAROL)]):  # field, then freeform
        before = len(invite_calls(emu))
        spec = make_spec(pdf_file, signers)

        def crash_after_invite(state, spec=spec):
            spec.saved.update(state)
            if state.get("invite_sent"):
                raise SystemExit("worker killed")
        spec.checkpoint = crash_after_invite
        with pytest.raises(SystemExit):
            SignNowProvider(account).send(spec)
        retry = make_spec(pdf_file, signers)
        retry.resume = {k: v for k, v in spec.saved.items() if k != "invite_sent"}
        result = SignNowProvider(account).send(retry)
        assert len(invite_calls(emu)) == before + 1
        assert {s.email for s in result.signers} == {s.email for s in signers}


# --- signed copy -------------------------------------------------------------------------------------------
def test_signed_pdf_has_history_and_an_audit_trail(account, emu, pdf_file):
    result, req = send(account, make_spec(pdf_file, [Signer(email=ALICE)]))
    emu.sign(result.external_id, ALICE)
    files = provider(account).signed_document(req)
    assert is_pdf(files.pdf) and page_count(files.pdf) == 3  # 2 pages + the history page
    assert b"Signed by alice@client.test" in files.pdf
    assert files.pdf_name == "Supply contract.pdf" and files.audit_name == "Supply contract audit trail.json"
    audit = json.loads(files.audit)
    assert "document_signing_session_completed" in {e["event"] for e in audit["document_history"]}
    assert [c["query"]["with_history"] for c in emu.calls_to("GET", "download$")] == ["1"]


def test_signed_pdf_retries_with_yes_when_history_is_missing(account, emu, pdf_file):
    emu.with_history_values = ("yes",)
    emu.history_shape = "object"
    result, req = send(account, make_spec(pdf_file, [Signer(email=ALICE)]))
    emu.sign(result.external_id, ALICE)
    files = provider(account).signed_document(req)
    assert page_count(files.pdf) == 3
    assert [c["query"]["with_history"] for c in emu.calls_to("GET", "download$")] == ["1", "yes"]
    assert json.loads(files.audit)["email_history_events"]


# --- callbacks ---------------------------------------------------------------------------------------------
def _deliveries_after_signing(account, emu, pdf_file, encoding="hex"):
    emu.webhook_secret_encoding = encoding
    provider(account).on_connected(account.webhook_url())
    result, _ = send(account, make_spec(pdf_file, [Signer(email=ALICE), Signer(email=BOB)]))
    emu.sign(result.external_id, ALICE)
    emu.sign(result.external_id, BOB)
    return result, [(body, {k.lower(): v for k, v in headers.items()}) for _, body, headers in emu.deliveries]


@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_webhook_signatures_are_accepted_in_hex_and_base64(account, emu, pdf_file, encoding):
    result, deliveries = _deliveries_after_signing(account, emu, pdf_file, encoding)
    p = provider(account)
    events = [e for body, headers in deliveries for e in p.parse_webhook(body, headers)]
    assert {e.kind for e in events} == {"user.document.fieldinvite.signed", "user.document.complete"}
    assert {e.external_id for e in events} == {result.external_id}
    assert all(e.status_hint == "" for e in events)
    keys = {e.kind: e.dedupe_key for e in events}
    assert len(set(keys.values())) == 2  # one key per event kind (both signatures may share a second)
    assert "access_token" not in events[0].raw["meta"]
    body, headers = deliveries[0]
    assert p.parse_webhook(body, headers)[0].dedupe_key == events[0].dedupe_key  # same delivery, same key


def test_forged_webhooks_are_rejected(account, emu, pdf_file):
    _, deliveries = _deliveries_after_signing(account, emu, pdf_file)
    p = provider(account)
    body, headers = deliveries[0]
    forged = body.replace(b"fieldinvite.signed", b"complete")
    with pytest.raises(WebhookRejected):
        p.parse_webhook(forged, headers)
    with pytest.raises(WebhookRejected):
        p.parse_webhook(body, {**headers, "x-signnow-signature": "0" * 64})
    no_sig = {k: v for k, v in headers.items() if k != "x-signnow-signature"}
    assert p.parse_webhook(body, no_sig)  # our registered header stands in for a missing signature
    with pytest.raises(WebhookRejected):
        p.parse_webhook(body, {**no_sig, "x-b24sign-token": "guess"})
    with pytest.raises(WebhookRejected):
        p.parse_webhook(body, {"content-type": "application/json"})


# --- errors ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status,body,code,text,permanent", [
    (400, {"errors": [{"code": 65629, "message": "Could not create duplicate field invite"}]}, "65629",
     "the document already has an invite (65629)", True),
    (400, {"errors": [{"code": "65536", "message": "To must be a valid email."}]}, "65536",
     "the request was rejected: To must be a valid email (65536)", True),
    (400, {"errors": [{"code": 65594, "message": "Cannot send a field invite"}]}, "65594",
     "the document has no fields; send it as a freeform invite or add text tags (65594)", True),
    (404, {"errors": [{"code": 65582, "message": "Document not found"}]}, "65582",
     "not found: Document not found (65582)", True),
    (400, {"errors": [{"code": 65615, "message": "Invite already exists."}]}, "65615",
     "Invite already exists (65615)", True),
    (404, {"errors": [{"code": 66502, "message": "Field invite not found."}]}, "66502",
     "the field invite was not found (66502)", True),
    (400, {"errors": [{"code": 22200, "message": "Unverified sender email"}]}, "22200",
     "the sender email is not verified in signNow (22200)", True),
    (401, {"error": "invalid_token", "code": 1537}, "1537",
     "the access token is invalid or expired; reconnect the signNow account (1537)", True),
    (400, {"error": "Invalid credentials.", "code": 826}, "826",
     "the username or password was rejected; reconnect the signNow account (826)", True),
    (400, {"error": "invalid_client"}, "invalid_client",
     "the app's Basic authorization token was rejected; check it in the API dashboard (invalid_client)", True),
    (404, {"error": "Document not found"}, "404", "Document not found (404)", True),
    (403, {"code": 403, "message": "Subscription to event is not allowed"}, "403",
     "Subscription to event is not allowed (403)", True),
    (404, {"404": "Unable to find a route to match the URI"}, "404",
     "Unable to find a route to match the URI (404)", True),
    (409, {"errors": [{"code": 12345, "message": "Locked"}]}, "12345", "Locked (12345)", False),
    (400, "not json", "400", "not json (400)", True),
])
def test_error_bodies_map_to_clear_messages(status, body, code, text, permanent):
    err = errors.describe(status, body if isinstance(body, str) else json.dumps(body))
    assert (err.code, err.message, err.permanent) == (code, text, permanent)


def test_a_400_with_code_1537_counts_as_an_expired_token():
    assert errors.is_token_error(400, json.dumps({"error": "invalid_token", "code": 1537}))
    assert errors.is_token_error(400, json.dumps({"error": "invalid_token"}))
    assert not errors.is_token_error(400, json.dumps({"errors": [{"code": 65536, "message": "x"}]}))


def test_api_errors_reach_the_workflow_log_readably(account, emu, pdf_file):
    req = SignatureRequest.objects.create(portal=account.portal, account=account, provider="signnow",
                                          external_id="ab" * 20)
    with pytest.raises(ProviderError) as exc:
        provider(account).status(req)
    assert exc.value.permanent and exc.value.message == "signNow: not found: Document not found (65582)"
    emu.fail_next(1, status=503)
    with pytest.raises(ProviderError) as exc:
        provider(account).test_connection()
    assert not exc.value.permanent
    emu.rate_limit_per_s = 1
    p = provider(account)
    with pytest.raises(ProviderError) as exc:
        for _ in range(3):
            p.test_connection()
    assert not exc.value.permanent and exc.value.retry_after == 1.0


def test_the_client_side_limiter_spaces_calls(account, emu, settings):
    settings.SIGNNOW_RATE_PER_S = 20
    settings.SIGNNOW_RATE_BURST = 2
    p = provider(account)
    started = time.monotonic()
    for _ in range(6):
        p.test_connection()
    assert time.monotonic() - started >= 0.15  # 4 calls beyond the burst at 20/s


def test_provider_pacing_overrides_the_signnow_defaults(account, emu, settings):
    settings.PROVIDER_PACING = {"signnow": (20.0, 2.0)}
    p = provider(account)
    started = time.monotonic()
    for _ in range(6):
        p.test_connection()
    assert time.monotonic() - started >= 0.15  # 4 calls beyond the burst at 20/s, with SIGNNOW_RATE_PER_S=0


def test_a_429_pauses_the_account_for_every_worker_until_its_retry_after(account, emu):
    emu.rate_limit_per_s = 1
    provider(account).test_connection()
    with pytest.raises(ProviderError) as exc:
        provider(account).test_connection()
    assert exc.value.code == "429" and exc.value.retry_after == 1.0
    started = time.monotonic()
    assert "owner@acme.test" in provider(account).test_connection()  # another worker: waits, then succeeds
    assert time.monotonic() - started >= 0.5
    assert [status for _, path, status in emu.requests_log if path == "/user"].count(429) == 1


# --- validation --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("signers,kw,needle", [
    ([], {}, "at least one signer"),
    ([Signer(email="not-an-email")], {}, "not a valid email"),
    ([Signer(email=ALICE)], {"cc": ["bad@"]}, "CC bad@"),
    ([Signer(email=ALICE), Signer(email=ALICE.upper())], {}, "twice"),
    ([Signer(email=ALICE)], {"auth": "password"}, "needs a password"),
    ([Signer(email=ALICE)], {"auth": "sms"}, "phone number"),
    ([Signer(email=ALICE, phone="555-1234")], {"auth": "sms"}, "phone number"),
    ([Signer(email=ALICE)], {"auth": "email_otp"}, "not available"),
    ([Signer(email=ALICE)], {"expiry_days": 2}, "between 3 and 180"),
    ([Signer(email=ALICE)], {"expiry_days": 181}, "between 3 and 180"),
    ([Signer(email=ALICE)], {"expiry_days": 5, "reminder_days": 5}, "before the invite expires"),
])
def test_validation_fails_before_any_call(account, emu, pdf_file, signers, kw, needle):
    calls = len(emu.calls)
    with pytest.raises(ProviderError) as exc:
        provider(account).validate(make_spec(pdf_file, signers, **kw))
    assert exc.value.permanent and needle in exc.value.message
    assert len(emu.calls) == calls


def test_a_valid_spec_passes_validation(account, pdf_file):
    provider(account).validate(make_spec(pdf_file, [Signer(email=ALICE, phone="+15550001111")], auth="sms",
                                         expiry_days=180, reminder_days=7, cc=[CAROL]))


def test_an_upload_retried_after_a_token_refresh_sends_the_whole_file(account, emu, pdf_file):
    emu.expire_tokens()
    result, _ = send(account, make_spec(pdf_file, [Signer(email=ALICE)]))
    assert [c["status"] for c in emu.calls_to("POST", "^/document$")] == [401, 200]
    assert emu.documents[result.external_id]["pdf"] == pdf_file.path.read_bytes()
