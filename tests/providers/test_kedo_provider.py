"""Bitrix24 Sign for HR documents (KEDO) against the Bitrix24 cloud emulator (tests/emulators/bitrix24).

Personas: portal A (its admin installed the app); dave is the employee who signs, erin the HR manager who
signs for the company (assignee), frank reviews.
"""
from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.utils import timezone

from b24app.models import Portal
from signing import states
from signing.base import DocumentFile, ProviderError, SendSpec, Signer
from signing.models import ProviderAccount, SignatureRequest
from signing.providers.b24kedo.client import encode_file_b64
from signing.providers.b24kedo.provider import KedoProvider, title_marker
from tests.emulators.bitrix24 import Bitrix24Cloud
from tests.emulators.pdf import is_pdf, make_pdf

DAVE, ERIN, FRANK = 25, 42, 51


@pytest.fixture
def cloud(settings):
    c = Bitrix24Cloud(client_id=settings.B24_CLIENT_ID, client_secret=settings.B24_CLIENT_SECRET,
                      app_url=settings.APP_BASE_URL).start()
    yield c
    c.stop()


@pytest.fixture
def bx(cloud):
    """Portal A as Bitrix24 sees it: three employees and its one "my company" (every portal has one)."""
    p = cloud.add_portal("alpha", rate=(200, 50))
    p.add_user(DAVE, "dave@alpha.test", name="Dave")
    p.add_user(ERIN, "erin@alpha.test", name="Erin")
    p.add_user(FRANK, "frank@alpha.test", name="Frank")
    [p.company_id] = [iid for (etid, iid), item in p.crm.items.items() if etid == 4 and item.get("isMyCompany") == "Y"]
    return p


@pytest.fixture
def portal_a(db, bx, cloud):
    _, body = bx.install_request(user_id=1)
    row = Portal(member_id=bx.member_id, domain=bx.domain, client_endpoint=bx.client_endpoint,
                 server_endpoint=cloud.server_endpoint, status="L", scope=cloud.scope)
    row.set_application_token(bx.application_token)
    row.access_token = body["AUTH_ID"]
    row.refresh_token = body["REFRESH_ID"]
    row.token_expires_at = timezone.now() + timedelta(seconds=int(body["AUTH_EXPIRES"]))
    row.token_user_id = 1
    row.save()
    return row


@pytest.fixture
def account(portal_a):
    return ProviderAccount.objects.create(portal=portal_a, provider="b24kedo", credentials={})


@pytest.fixture
def provider(account):
    return KedoProvider(account)


@pytest.fixture
def pdf_file(tmp_path):
    path = tmp_path / "offer-letter.pdf"
    path.write_bytes(make_pdf(["Offer letter", "Dave, welcome aboard"]))
    return DocumentFile(name="offer-letter.pdf", path=path, size=path.stat().st_size)


def members(*pairs):
    return [Signer(f"user{uid}@alpha.test", f"User {uid}", user_id=uid, kedo_role=role) for uid, role in pairs]


def make_spec(request_id, pdf_file, signers=None, **kw) -> SendSpec:
    return SendSpec(request_id=str(request_id), title=kw.pop("title", "Offer letter"), document=pdf_file,
                    signers=signers if signers is not None else members((DAVE, "signer"), (ERIN, "assignee")), **kw)


def request_row(account, **kw):
    return SignatureRequest.objects.create(portal=account.portal, account=account, provider="b24kedo",
                                           title="Offer letter", **kw)


def rest_calls(bx, method=None):
    return bx.stats.by_method[method] if method else bx.stats.requests


# -- account ---------------------------------------------------------------------------------------------------
def test_test_connection_reports_the_companys_providers(bx, provider):
    verdict = provider.test_connection()
    assert "1 signing provider(s)" in verdict and "ses-com" in verdict and str(bx.company_id) in verdict
    assert rest_calls(bx, "sign.b2e.company.provider.list") == 1


def test_list_company_providers_marks_expired_ones(bx, provider):
    bx.sign.add_provider("Old one", expired=True)
    listed = provider.list_company_providers(bx.company_id)
    assert [(p["code"], p["expired"]) for p in listed] == [("ses-com", False), ("ses-ru", True)]
    assert all(p["uid"] and p["name"] for p in listed)


def test_test_connection_needs_a_company_when_the_portal_has_several(bx, provider, account):
    bx.crm.add_company("Alpha Holding", my=True)
    with pytest.raises(ProviderError, match="choose the company"):
        provider.test_connection()
    account.credentials = {"company_id": bx.company_id}
    account.save()
    assert "signing provider" in KedoProvider(account).test_connection()


def test_connect_checks_the_chosen_provider(bx, provider):
    uid = bx.sign.providers[0]["uid"]
    assert provider.connect({"company_id": str(bx.company_id), "provider_uid": uid}) == {
        "company_id": bx.company_id, "provider_uid": uid}
    with pytest.raises(ProviderError, match="not available"):
        provider.connect({"company_id": bx.company_id, "provider_uid": "nope"})


# -- validation --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change,message", [
    (lambda s: setattr(s.document, "name", "offer.docx"), "named \\*.pdf"),
    (lambda s: setattr(s, "signers", members((ERIN, "assignee"))), "role signer"),
    (lambda s: setattr(s, "signers", members((DAVE, "signer"))), "role assignee"),
    (lambda s: setattr(s, "signers", members((DAVE, "signer"), (ERIN, "boss"))), "invalid role 'boss'"),
    (lambda s: setattr(s, "signers", [Signer("x@client.test", "Client", kedo_role="signer"),
                                      *members((ERIN, "assignee"))]), "not a Bitrix24 employee"),
    (lambda s: setattr(s, "signers", members((DAVE, "signer"), (ERIN, "assignee"), (FRANK, "reviewer"),
                                             (7, "reviewer"))), "one reviewer per document"),
    (lambda s: setattr(s, "signers", members((DAVE, "signer"), (ERIN, "assignee"), (FRANK, "assignee"))),
     "one assignee per document"),
    (lambda s: setattr(s, "request_id", "x" * 256), "external ID"),
    (lambda s: s.options.update(external_date_create="18.02.2025"), "not ISO 8601"),
    (lambda s: s.options.update(region_document_type="12 999!"), "document type code"),
    (lambda s: s.options.update(member_key="email"), "member_key"),
    (lambda s: s.options.update(member_key="employeeCode"), "no employee code"),
    (lambda s: setattr(s, "cc", ["boss@alpha.test"]), "copies"),
    (lambda s: setattr(s, "auth", "sms"), "signing provider"),
])
def test_it_refuses_unsendable_documents_before_any_call(bx, provider, pdf_file, change, message):
    spec = make_spec("req-1", pdf_file)
    change(spec)
    before = rest_calls(bx)
    with pytest.raises(ProviderError, match=message) as exc:
        provider.send(spec)
    assert exc.value.permanent and rest_calls(bx) == before


def test_it_refuses_a_file_that_is_not_a_pdf(bx, provider, tmp_path):
    path = tmp_path / "fake.pdf"
    path.write_bytes(b"PK\x03\x04 not a pdf")
    spec = make_spec("req-1", DocumentFile("fake.pdf", path, path.stat().st_size))
    with pytest.raises(ProviderError, match="not a PDF"):
        provider.validate(spec)


def test_a_portal_without_the_hcmlink_scope_is_told_before_any_call(bx, account, provider, pdf_file):
    """sign.b2e.document.send checks sign.b2e, crm and humanresources.hcmlink (403 "Access denied!" without)."""
    account.portal.scope = "bizproc,crm,user_basic,sign.b2e"
    account.portal.save(update_fields=["scope"])
    before = rest_calls(bx)
    with pytest.raises(ProviderError, match="humanresources.hcmlink") as exc:
        provider.send(make_spec("req-1", pdf_file))
    assert exc.value.permanent and rest_calls(bx) == before


# -- file names the core accepts (Path::validateFilename) ---------------------------------------------------------
@pytest.mark.parametrize("title", ["Deal #42", "O'Brien NDA", "Smith & Sons", "Terms; v2", "~draft",
                                   "Offer\u202eFDP.exe", "Tab\there"])
def test_titles_with_characters_bitrix24_refuses_in_file_names_still_send(bx, account, provider, pdf_file, title):
    row = request_row(account)
    result = provider.send(make_spec(row.public_id, pdf_file, title=title))
    name = bx.sign.documents[result.external_id]["file_name"]
    assert name.endswith(f"{title_marker(row.public_id)}.pdf")
    assert not any(ch in name for ch in "\\/:*?\"'<>|~#&;\u202e\t")


# -- send, sign, complete --------------------------------------------------------------------------------------
def test_send_member_signs_and_completes(bx, account, provider, pdf_file):
    row = request_row(account)
    saved = {}
    spec = make_spec(row.public_id, pdf_file, checkpoint=saved.update,
                     signers=members((DAVE, "signer"), (ERIN, "assignee"), (FRANK, "reviewer")))
    result = provider.send(spec)

    doc = bx.sign.documents[result.external_id]
    assert doc["external_id"] == str(row.public_id)
    assert doc["file_name"] == f"Offer letter {title_marker(row.public_id)}.pdf"
    assert doc["company_crm_id"] == bx.company_id and doc["responsible"] == ERIN
    assert doc["provider_uid"] == bx.sign.providers[0]["uid"]
    assert [(m["userId"], m["role"]) for m in doc["members"]] == [(DAVE, "signer"), (ERIN, "assignee"),
                                                                  (FRANK, "reviewer")]
    assert [(s.email, s.status) for s in result.signers] == [
        (f"user{DAVE}@alpha.test", "pending"), (f"user{ERIN}@alpha.test", "pending"),
        (f"user{FRANK}@alpha.test", "pending")]
    assert all(s.external_id for s in result.signers)
    assert result.raw["uid"] == result.external_id and "fileContent" not in str(result.raw)
    assert saved["document_uid"] == result.external_id

    row.external_id = result.external_id
    row.status = states.SENT
    row.provider_state = result.raw
    row.save()
    for signer, state in zip(spec.signers, result.signers):
        row.signers.create(email=state.email, external_id=state.external_id, user_id=signer.user_id)
    assert provider.status(row).status == states.SENT

    bx.sign_b2e_member_signs(result.external_id, DAVE)
    snap = provider.status(row)
    assert snap.status == states.PARTIALLY_SIGNED
    assert [(s.email, s.status) for s in snap.signers][:2] == [(f"user{DAVE}@alpha.test", "signed"),
                                                               (f"user{ERIN}@alpha.test", "pending")]

    bx.sign_b2e_member_signs(result.external_id, ERIN)
    assert provider.status(row).status == states.COMPLETED
    files = provider.signed_document(row)
    assert is_pdf(files.pdf) and b"Signed electronically" in files.pdf
    assert files.pdf_name.endswith(".pdf") and str(row.public_id) in files.pdf_name
    assert bx.stats.downloads == 1 and bx.stats.downloads_refused == 0


def test_signed_document_is_matched_by_our_marker_among_others(bx, account, provider, pdf_file):
    rows = [request_row(account) for _ in range(2)]
    uids = [provider.send(make_spec(r.public_id, pdf_file)).external_id for r in rows]
    for uid in uids:
        bx.sign_b2e_member_signs(uid, DAVE)
        bx.sign_b2e_member_signs(uid, ERIN)
    for r, uid in zip(rows, uids):
        r.external_id = uid
        assert str(r.public_id) in provider.signed_document(r).pdf_name


def test_signed_document_is_not_ready_before_completion(bx, account, provider, pdf_file):
    row = request_row(account)
    row.external_id = provider.send(make_spec(row.public_id, pdf_file)).external_id
    with pytest.raises(ProviderError) as exc:
        provider.signed_document(row)
    assert not exc.value.permanent and exc.value.code == "not_ready"


def test_a_refusal_declines_and_a_stop_cancels(bx, account, provider, pdf_file):
    refused, stopped = request_row(account, status=states.SENT), request_row(account, status=states.SENT)
    refused.external_id = provider.send(make_spec(refused.public_id, pdf_file)).external_id
    stopped.external_id = provider.send(make_spec(stopped.public_id, pdf_file)).external_id
    bx.sign_b2e_member_refuses(refused.external_id, DAVE)
    bx.sign_b2e_stop(stopped.external_id)
    assert provider.status(refused).status == states.DECLINED
    assert provider.status(stopped).status == states.CANCELLED


def test_cancel_and_remind_are_explained(account, provider):
    row = request_row(account, external_id="uid-1", status=states.SENT)
    for action in (provider.cancel, provider.remind):
        with pytest.raises(ProviderError, match="no REST method") as exc:
            action(row)
        assert exc.value.permanent and exc.value.code == "unsupported"


def test_unknown_state_codes_keep_the_current_state(bx, account, provider, pdf_file):
    row = request_row(account, status=states.PARTIALLY_SIGNED)
    row.external_id = provider.send(make_spec(row.public_id, pdf_file)).external_id
    bx.sign.documents[row.external_id]["state"] = "archived_somehow"
    assert provider.status(row).status == states.PARTIALLY_SIGNED


# -- provider uid -----------------------------------------------------------------------------------------------
def test_the_only_usable_provider_is_picked(bx, provider, pdf_file):
    bx.sign.add_provider("Expired", expired=True)
    result = provider.send(make_spec("req-1", pdf_file))
    assert bx.sign.documents[result.external_id]["provider_uid"] == bx.sign.providers[0]["uid"]


def test_several_providers_need_a_choice(bx, account, provider, pdf_file):
    extra = bx.sign.add_provider("Qualified")
    with pytest.raises(ProviderError, match="2 signing providers; choose one") as exc:
        provider.send(make_spec("req-1", pdf_file))
    assert exc.value.permanent and rest_calls(bx, "sign.b2e.document.send") == 0
    result = provider.send(make_spec("req-2", pdf_file, options={"provider_uid": extra["uid"]}))
    assert bx.sign.documents[result.external_id]["provider_uid"] == extra["uid"]
    account.credentials = {"provider_uid": extra["uid"], "company_id": bx.company_id}
    account.save()
    result = KedoProvider(account).send(make_spec("req-3", pdf_file))
    assert bx.sign.documents[result.external_id]["provider_uid"] == extra["uid"]


def test_no_usable_provider_is_a_clear_error(bx, provider, pdf_file):
    bx.sign.providers[0]["expires"] = "2000-01-01T00:00:00+00:00"
    with pytest.raises(ProviderError, match="no usable signing provider"):
        provider.send(make_spec("req-1", pdf_file))


# -- Bitrix24's own refusals and resume --------------------------------------------------------------------------
def test_bitrix24_refusals_are_permanent_and_safe_to_retry(bx, provider, pdf_file):
    saved = {}
    spec = make_spec("req-1", pdf_file, checkpoint=saved.update, options={"region_document_type": "77.001"})
    with pytest.raises(ProviderError, match="Region document type is not valid") as exc:
        provider.send(spec)
    assert exc.value.permanent and exc.value.code == "BAD_REQUEST"
    assert saved["send_started"] is False  # Bitrix24 refused: nothing was created, a resend is safe


def test_a_resumed_send_returns_the_recorded_document(bx, provider, pdf_file):
    saved = {}
    first = provider.send(make_spec("req-1", pdf_file, checkpoint=saved.update))
    calls = rest_calls(bx)
    again = provider.send(make_spec("req-1", pdf_file, resume=dict(saved)))
    assert again.external_id == first.external_id and rest_calls(bx) == calls
    assert [s.external_id for s in again.signers] == [s.external_id for s in first.signers]


def test_an_interrupted_send_is_not_repeated_blindly(bx, provider, pdf_file):
    spec = make_spec("req-1", pdf_file, resume={"send_started": True, "file_name": "x.pdf"})
    with pytest.raises(ProviderError, match="interrupted") as exc:
        provider.send(spec)
    assert exc.value.permanent and rest_calls(bx, "sign.b2e.document.send") == 0


def test_the_file_is_base64_encoded_in_chunks(tmp_path):
    data = bytes(range(256)) * 4099  # not a multiple of the chunk size
    path = tmp_path / "blob.pdf"
    path.write_bytes(data)
    assert encode_file_b64(path, chunk=3 * 1000) == base64.b64encode(data).decode()
