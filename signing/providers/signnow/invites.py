"""signNow invites: the request bodies for ``POST /document/{id}/invite``, in both of its shapes.

One signer with no auth, expiry or reminder needs gets a freeform invite (``to`` is a string); everything
else a role-based field invite (``to[]``), which needs one signature field and role per signer first.
"""
from __future__ import annotations

import logging
import re

from signing.base import ProviderError, SendSpec, SignerState

from .documents import as_int

log = logging.getLogger("b24sign.providers.signnow")

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def choose_mode(spec: SendSpec, doc: dict) -> str:
    simple = (len(signers_of(spec)) == 1 and not doc.get("roles") and not doc.get("fields")
              and spec.auth == "none" and spec.expiry_days is None and spec.reminder_days is None)
    return "freeform" if simple else "field"


def add_signature_fields(client, doc_id: str, spec: SendSpec, pages: int) -> None:
    """One signature field per signer on the last page, two per row, each bound to its own role."""
    fields = []
    for i, signer in enumerate(signers_of(spec)):
        fields.append({
            "x": 60 + (i % 2) * 280, "y": 480 + ((i // 2) % 4) * 70, "width": 220, "height": 50,
            "page_number": max(pages, 1) - 1, "type": "signature", "required": True,
            "role": role_name(i), "name": f"signature_{i + 1}", "label": signer.name or signer.email,
        })
    client.json("PUT", f"/document/{doc_id}", {"fields": fields})


def own_roles(spec: SendSpec) -> list[dict]:
    """The roles add_signature_fields creates, as the invite needs them: ``role`` and/or ``role_id`` is
    required (spec §1.5), so the names we gave are enough and no read of the document is needed."""
    return [{"name": role_name(i), "signing_order": str(i + 1)} for i in range(len(signers_of(spec)))]


def freeform_signers(spec: SendSpec, invite_ids: list) -> list[SignerState]:
    """The one freeform signer, pending, with the id the invite answered (no read of the document)."""
    signer = signers_of(spec)[0]
    return [SignerState(email=signer.email, status="pending", external_id=str(invite_ids[0]) if invite_ids else "")]


def invite_freeform(client, doc_id: str, spec: SendSpec, sender: str) -> dict:
    body = {"to": signers_of(spec)[0].email, "from": sender, **texts(spec)}
    if cc_emails(spec):
        body["cc"] = cc_emails(spec)
    return post_invite(client, doc_id, body)


def invite_fields(client, doc_id: str, spec: SendSpec, doc: dict, sender: str) -> None:
    roles = sorted(doc.get("roles") or [], key=lambda r: as_int(r.get("signing_order"), 0))
    signers = signers_of(spec)
    if len(roles) != len(signers):
        raise ProviderError(f"signNow: the document has {len(roles)} signer role(s) but the request has "
                            f"{len(signers)} signer(s)", permanent=True, code="input")
    # signNow wants signing steps numbered 1, 2, …; our orders may have gaps.
    ranks = {o: i + 1 for i, o in enumerate(sorted({s.order for s in signers}))}
    to = []
    for signer, role in zip(signers, roles):
        item = {"email": signer.email, "role": role.get("name"), "order": ranks[signer.order],
                "decline_by_signature": "1"}
        if role.get("unique_id"):  # roles read from the document (text tags, a resumed send)
            item["role_id"] = role["unique_id"]
        if spec.expiry_days is not None:
            item["expiration_days"] = spec.expiry_days
        if spec.reminder_days is not None:
            item["reminder"] = spec.reminder_days  # documented: "in how many days to send a reminder"
        if spec.auth == "password":
            item.update(authentication_type="password", password=spec.auth_secret)
        elif spec.auth == "sms":  # documented: authentication_type "phone" with the phone; SMS is its default
            item.update(authentication_type="phone", phone=signer.phone.replace(" ", ""))
        to.append(item)
    body = {"to": to, "from": sender, **texts(spec)}
    if cc_emails(spec):
        body["cc"] = cc_emails(spec)
        body["cc_step"] = [{"name": f"CC {i + 1}", "email": e, "step": 1} for i, e in enumerate(cc_emails(spec))]
    post_invite(client, doc_id, body)


def post_invite(client, doc_id: str, body: dict) -> dict:
    try:
        return client.json("POST", f"/document/{doc_id}/invite", body)
    except ProviderError as exc:
        if exc.code == "65629":  # an earlier attempt got through: that invite is ours
            return {}
        raise


def signers_of(spec: SendSpec):
    return [s for s in spec.signers if s.role != "cc"]


def cc_emails(spec: SendSpec) -> list[str]:
    """spec.cc plus signers whose role is "cc" (signNow CCs get the completed copy)."""
    out = []
    for email in list(spec.cc) + [s.email for s in spec.signers if s.role == "cc"]:
        if email.lower() not in {e.lower() for e in out}:
            out.append(email)
    return out


def role_name(i: int) -> str:
    return f"Signer {i + 1}"


def texts(spec: SendSpec) -> dict:
    out = {}
    if spec.subject:
        out["subject"] = spec.subject[:200]
    if spec.message:
        out["message"] = spec.message[:2000]
    return out

