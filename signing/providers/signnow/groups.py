"""signNow document groups: several documents signed in one invite, returned as one signed bundle.

Send (resumable, each id checkpointed): upload every document (``group_document_ids``), give each one
signature field per signer (roles "Signer 1", "Signer 2", …), ``POST /documentgroup`` (``group_id``),
``POST /documentgroup/{id}/groupinvite`` with one step per signing order, each signer signing every
document (``group_invite_id``).  Status: ``GET …/groupinvite/{invite_id}``; the signed bundle:
``POST /documentgroup/{id}/downloadall`` (merged, history after the merged PDF) plus every document's
``historyfull``; cancel: ``…/cancelinvite``.  The request's external id is the group id; per-document
callbacks do not name the group, so groups are followed by the poller.
"""
from __future__ import annotations

import json

from signing import states
from signing.base import ProviderError, SendResult, SendSpec, SignedFiles, SignerState, StatusSnapshot

from .documents import as_int, normalise_history, page_count, safe_name
from .invites import add_signature_fields, role_name, signers_of

MAX_DOCUMENTS = 10


def is_group(request) -> bool:
    return bool((request.provider_state or {}).get("group_id"))


def send(provider, spec: SendSpec, state: dict, save) -> SendResult:
    client = provider.client
    files = [spec.document, *spec.extra_documents]
    if len(files) > MAX_DOCUMENTS:
        raise ProviderError(f"signNow: a document group holds up to {MAX_DOCUMENTS} documents", permanent=True,
                            code="input")
    ids = list(state.get("group_document_ids") or [])
    for i, document in enumerate(files[len(ids):], start=len(ids)):
        uploaded = client.upload(document.path, document.name or f"document {i + 1}.pdf",
                                 fields={"name": f"{spec.title} ({i + 1})"[:200]})
        if not uploaded.get("id"):
            raise ProviderError("signNow: the upload returned no document id", code="bad_response")
        ids.append(str(uploaded["id"]))
        save(group_document_ids=list(ids))
        doc = client.json("GET", f"/document/{ids[-1]}")
        add_signature_fields(client, ids[-1], spec, as_int(doc.get("page_count"), 1))
    if not state.get("group_id"):
        made = client.json("POST", "/documentgroup",
                           {"document_ids": ids, "group_name": spec.title[:200] or "Documents"})
        save(group_id=str(made["id"]))
    gid = state["group_id"]
    if not state.get("group_invite_id"):
        signers = signers_of(spec)
        ranks = {o: i + 1 for i, o in enumerate(sorted({s.order for s in signers}))}
        steps = []
        for order in sorted(set(ranks.values())):
            people = [(i, s) for i, s in enumerate(signers) if ranks[s.order] == order]
            email = {"subject": spec.subject[:200]} if spec.subject else {}
            if spec.message:
                email["message"] = spec.message[:2000]
            if spec.expiry_days is not None:
                email["expiration_days"] = spec.expiry_days
            steps.append({"order": order,
                          "invite_emails": [{"email": s.email, **email} for _, s in people],
                          "invite_actions": [{"email": s.email, "role_name": role_name(i), "action": "sign",
                                              "document_id": doc_id} for i, s in people for doc_id in ids]})
        try:
            made = client.json("POST", f"/documentgroup/{gid}/groupinvite", {"invite_steps": steps})
        except ProviderError as exc:
            if exc.code != "65629":
                raise
            made = {"id": state.get("group_invite_id")}
        save(group_invite_id=str(made.get("id") or ""), mode="group", invite_sent=True)
    return SendResult(external_id=gid, signers=[SignerState(email=s.email, status="pending")
                                                for s in signers_of(spec)],
                      raw={"group_id": gid, "documents": ids, "mode": "group"})


def _invite(client, request) -> dict:
    st = request.provider_state or {}
    data = client.json("GET", f"/documentgroup/{st['group_id']}/groupinvite/{st['group_invite_id']}")
    return (data or {}).get("invite") or {}


def status(client, request) -> StatusSnapshot:
    invite = _invite(client, request)
    actions = [a for s in invite.get("steps") or [] for a in s.get("actions") or [] if a.get("action") == "sign"]
    by_email: dict[str, list[str]] = {}
    for a in actions:
        by_email.setdefault(str(a.get("email", "")).lower(), []).append(str(a.get("status", "")).lower())
    signers = [SignerState(email=email, status="signed" if all(x == "fulfilled" for x in got) else
                           "declined" if "declined" in got else "pending") for email, got in by_email.items()]
    raw = {"group_invite": {"id": invite.get("id"), "status": invite.get("status")}}
    state = str(invite.get("status", "")).lower()
    if state == "fulfilled":
        return StatusSnapshot(status=states.COMPLETED, signers=signers, raw=raw)
    if state in ("cancelled", "canceled"):
        return StatusSnapshot(status=states.CANCELLED, signers=signers, raw=raw,
                              reason="the group invite was cancelled")
    if any(s.status == "declined" for s in signers):
        return StatusSnapshot(status=states.DECLINED, signers=signers, raw=raw)
    if any(s.status == "signed" for s in signers):
        return StatusSnapshot(status=states.PARTIALLY_SIGNED, signers=signers, raw=raw)
    return StatusSnapshot(status=states.SENT, signers=signers, raw=raw)


def cancel(client, request) -> None:
    st = request.provider_state or {}
    try:
        client.json("POST", f"/documentgroup/{st['group_id']}/groupinvite/{st['group_invite_id']}/cancelinvite")
    except ProviderError as exc:
        if exc.code != "65536":  # already cancelled or fulfilled
            raise


def signed_bundle(client, request) -> SignedFiles:
    st = request.provider_state or {}
    pdf = client.request("POST", f"/documentgroup/{st['group_id']}/downloadall",
                         json={"type": "merged", "with_history": "after_merged_pdf"}).content
    if not pdf.startswith(b"%PDF") or not page_count(pdf):
        raise ProviderError("signNow: the signed bundle is not a PDF", code="bad_response")
    audit = {doc_id: normalise_history(client.json("GET", f"/document/{doc_id}/historyfull"))
             for doc_id in st.get("group_document_ids") or []}
    title = safe_name(request.title or "documents")
    return SignedFiles(pdf=pdf, pdf_name=f"{title} (all documents).pdf",
                       audit=json.dumps(audit, indent=2, ensure_ascii=False).encode(),
                       audit_name=f"{title} audit trail.json")
