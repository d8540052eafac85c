"""Self-tests of the emulator endpoints added for issue 13: signNow templates, prefill, embedded invites and
document groups; Bitrix24's document-generator templates with asynchronous PDF conversion.  Plain
``requests`` against the emulators; each documented refusal is checked."""
from __future__ import annotations

import requests

from tests.emulators.bitrix24.docgen import add_template, delete_template
from tests.emulators.test_bitrix24_emulator import BROWSER, admin_token, app, call, cloud, portal  # noqa: F401
from tests.emulators.test_provider_emulators import OWNER, H, doc_with_roles, err_code, sn, upload  # noqa: F401

FIELDS = [{"type": "signature", "role": "Buyer", "name": "b"}, {"type": "text", "role": "Buyer", "name": "Price"}]


def test_signnow_templates_copy_and_prefill(sn):  # noqa: F811
    tok = sn.issue_token()
    tid = sn.add_template("Agreement", FIELDS)
    listed = requests.get(f"{sn.base_url}/user/documentsv2", headers=H(tok)).json()
    assert [(d["id"], d["template"]) for d in listed] == [(tid, True)]
    plain = upload(sn, tok).json()["id"]
    assert err_code(requests.post(f"{sn.base_url}/template/{plain}/copy", headers=H(tok), json={})) == 65536
    copy = requests.post(f"{sn.base_url}/template/{tid}/copy", headers=H(tok), json={"document_name": "Deal 7"})
    doc_id = copy.json()["id"]
    assert copy.status_code == 200 and copy.json()["name"] == "Deal 7"
    url = f"{sn.base_url}/v2/documents/{doc_id}/prefill-texts"
    assert err_code(requests.put(url, headers=H(tok), json={"fields": []})) == 65536
    missing = requests.put(url, headers=H(tok), json={"fields": [{"field_name": "Nope", "prefilled_text": "x"}]})
    assert missing.status_code == 400 and "Nope not found" in missing.text
    assert err_code(requests.put(f"{sn.base_url}/v2/documents/{tid}/prefill-texts", headers=H(tok),
                                 json={"fields": [{"field_name": "Price", "prefilled_text": "1"}]})) == 65536
    ok = requests.put(url, headers=H(tok), json={"fields": [{"field_name": "Price", "prefilled_text": "100"}]})
    assert ok.status_code == 204
    assert b"Price: 100" in sn.signed_pdf(sn.documents[doc_id], with_history=False)
    sn.delete_template(tid)
    gone = requests.post(f"{sn.base_url}/template/{tid}/copy", headers=H(tok), json={})
    assert gone.status_code == 404 and err_code(gone) == 65582


def test_signnow_embedded_invites_and_links(sn):  # noqa: F811
    tok = sn.issue_token()
    doc_id = doc_with_roles(sn, tok)
    url = f"{sn.base_url}/v2/documents/{doc_id}/embedded-invites"
    one = {"email": "a@x.test", "role": "Signer 1", "order": 1, "auth_method": "none"}
    two = {"email": "b@x.test", "role": "Signer 2", "order": 2, "auth_method": "none"}
    assert "Every role must be invited" in requests.post(url, headers=H(tok), json={"invites": [one]}).text
    owner = requests.post(url, headers=H(tok), json={"invites": [one, {**two, "email": OWNER}]})
    assert "owner cannot be a signer" in owner.text
    assert "link_expiration" in requests.post(url, headers=H(tok), json={
        "invites": [one, {**two, "link_expiration": 5}]}).text
    made = requests.post(url, headers=H(tok), json={"invites": [one, two]})
    assert made.status_code == 200 and [i["email"] for i in made.json()["data"]] == ["a@x.test", "b@x.test"]
    assert err_code(requests.post(url, headers=H(tok), json={"invites": [one, two]})) == 65629
    assert [e for e in sn.sent_emails if e["kind"] == "invite"] == []
    inv = made.json()["data"][0]["id"]
    assert "between 15 and 45" in requests.post(f"{url}/{inv}/link", headers=H(tok), json={
        "auth_method": "none", "link_expiration": 60}).text
    link = requests.post(f"{url}/{inv}/link", headers=H(tok), json={"auth_method": "none", "link_expiration": 15})
    assert sn.open_link(link.json()["data"]["link"]) == (doc_id, "a@x.test")
    sn.sign(doc_id, "a@x.test")
    assert "already been signed" in requests.post(f"{url}/{inv}/link", headers=H(tok),
                                                  json={"auth_method": "none"}).text
    assert requests.delete(url, headers=H(tok)).status_code == 204


def test_signnow_document_groups(sn):  # noqa: F811
    tok = sn.issue_token()
    docs = [doc_with_roles(sn, tok) for _ in range(2)]
    base = f"{sn.base_url}/documentgroup"
    many = [upload(sn, tok).json()["id"] for _ in range(11)]
    assert "up to 10" in requests.post(base, headers=H(tok), json={"document_ids": many, "group_name": "g"}).text
    gid = requests.post(base, headers=H(tok), json={"document_ids": docs, "group_name": "Deal"}).json()["id"]
    assert "already in a document group" in requests.post(base, headers=H(tok), json={
        "document_ids": docs[:1], "group_name": "again"}).text
    actions = [{"email": e, "role_name": r, "action": "sign", "document_id": d}
               for d in docs for e, r in (("a@x.test", "Signer 1"), ("b@x.test", "Signer 2"))]
    half = {"invite_steps": [{"order": 1, "invite_emails": [{"email": "a@x.test"}, {"email": "b@x.test"}],
                              "invite_actions": actions[:1]}]}
    assert "has no sign action" in requests.post(f"{base}/{gid}/groupinvite", headers=H(tok), json=half).text
    steps = {"invite_steps": [{"order": 1, "invite_emails": [{"email": "a@x.test"}, {"email": "b@x.test"}],
                               "invite_actions": actions}]}
    iid = requests.post(f"{base}/{gid}/groupinvite", headers=H(tok), json=steps).json()["id"]
    assert err_code(requests.post(f"{base}/{gid}/groupinvite", headers=H(tok), json=steps)) == 65629
    for email in ("a@x.test", "b@x.test"):
        sn.sign_group(gid, email)
    status = requests.get(f"{base}/{gid}/groupinvite/{iid}", headers=H(tok)).json()["invite"]
    assert status["status"] == "fulfilled"
    pdf = requests.post(f"{base}/{gid}/downloadall", headers=H(tok), json={"type": "merged",
                                                                           "with_history": "after_merged_pdf"})
    assert pdf.content.startswith(b"%PDF-") and b"Document group history" in pdf.content
    assert "already fulfilled" in requests.post(f"{base}/{gid}/groupinvite/{iid}/cancelinvite", headers=H(tok)).text


def test_bitrix24_document_generator_templates_and_asynchronous_pdf(portal):  # noqa: F811
    at, _ = admin_token(portal)
    deal = portal.crm.add_deal("Deal")
    tid = add_template(portal, "Contract", entity_type_ids=("2_category_0",), pdf_after_gets=2)
    add_template(portal, "Lead form", entity_type_ids=(1,))
    listed = call(portal, "crm.documentgenerator.template.list", at, filter={"entityTypeId": "2"}).json()
    assert list(listed["result"]["templates"]) == [str(tid)]
    r = call(portal, "crm.documentgenerator.document.add", at, templateId=tid, entityTypeId=2)
    assert r.status_code == 400 and r.json()["error_description"] == 'Empty required parameter "value"'
    doc = call(portal, "crm.documentgenerator.document.add", at, templateId=tid, entityTypeId=2, entityId=deal,
               values={"Number": "7"}).json()["result"]["document"]
    assert doc["pdfUrl"] == "" and doc["values"] == {"Number": "7"}
    first = call(portal, "crm.documentgenerator.document.get", at, id=doc["id"]).json()["result"]["document"]
    second = call(portal, "crm.documentgenerator.document.get", at, id=doc["id"]).json()["result"]["document"]
    assert first["pdfUrlMachine"] == "" and second["pdfUrlMachine"]
    pdf = requests.get(second["pdfUrlMachine"], headers=BROWSER, timeout=5).content
    assert pdf.startswith(b"%PDF-") and b"Number: 7" in pdf
    delete_template(portal, tid)
    gone = call(portal, "crm.documentgenerator.document.add", at, templateId=tid, entityTypeId=2, entityId=deal)
    assert gone.json()["error_description"] == "Cannot create document on deleted template"
    assert call(portal, "crm.documentgenerator.template.list", at).json()["result"]["templates"].keys() \
        == {str(tid + 1)}
