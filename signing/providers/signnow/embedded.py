"""signNow embedded invites: signing links we hand out instead of signNow's invitation e-mails.

``POST /v2/documents/{id}/embedded-invites`` creates one invite per role (every role of the document must
be in it; no e-mail goes out), ``POST …/embedded-invites/{invite_id}/link`` issues a link that expires
after ``link_expiration`` minutes (15–45 as documented: we ask for the most, 45), and
``DELETE …/embedded-invites`` withdraws them (our cancel).  The invites show up in ``GET /document`` as
field invites, so status, callbacks and the signed copy work as for e-mailed ones.
"""
from __future__ import annotations

import time

from signing.base import ProviderError, SendSpec, SigningLink

from .documents import as_int
from .invites import signers_of

LINK_MINUTES = 45  # the documented maximum of link_expiration on the link call


def create(client, doc_id: str, spec: SendSpec, doc: dict) -> dict[str, str]:
    """The embedded invites, one per signer on their role; returns ``{email: invite id}``."""
    roles = sorted(doc.get("roles") or [], key=lambda r: as_int(r.get("signing_order"), 0))
    by_name = {str(r.get("name")): r for r in roles}
    signers = signers_of(spec)
    if any(s.template_role for s in signers):
        pairs = [(s, by_name.get(s.template_role)) for s in signers]
    else:
        if len(roles) != len(signers):
            raise ProviderError(f"signNow: the document has {len(roles)} signer role(s) but the request has "
                                f"{len(signers)} signer(s)", permanent=True, code="input")
        pairs = list(zip(signers, roles))
    ranks = {o: i + 1 for i, o in enumerate(sorted({s.order for s in signers}))}
    invites = []
    for signer, role in pairs:
        if role is None:
            raise ProviderError(f"signNow: the document has no role {signer.template_role}", permanent=True,
                                code="input")
        invites.append({"email": signer.email, "role_id": role.get("unique_id", ""), "role": role.get("name"),
                        "order": ranks[signer.order], "auth_method": "none", "delivery_type": "link",
                        "link_expiration": min(43200, (spec.expiry_days or 30) * 24 * 60)})
    try:
        data = client.json("POST", f"/v2/documents/{doc_id}/embedded-invites", {"invites": invites})
    except ProviderError as exc:
        if exc.code == "65629":  # an earlier attempt got through
            return {}
        raise
    return {str(i.get("email", "")).lower(): str(i.get("id")) for i in (data or {}).get("data") or []}


def links(client, doc_id: str, doc: dict) -> list[SigningLink]:
    out = []
    for fi in doc.get("field_invites") or []:
        if str(fi.get("is_embedded")) != "1" or str(fi.get("status", "")).lower() not in ("created", "pending"):
            continue
        data = client.json("POST", f"/v2/documents/{doc_id}/embedded-invites/{fi['id']}/link",
                           {"auth_method": "none", "link_expiration": LINK_MINUTES})
        link = ((data or {}).get("data") or {}).get("link")
        if link:
            out.append(SigningLink(email=str(fi.get("email", "")), url=str(link),
                                   expires_at=time.time() + LINK_MINUTES * 60))
    return out


def withdraw(client, doc_id: str) -> None:
    try:
        client.json("DELETE", f"/v2/documents/{doc_id}/embedded-invites")
    except ProviderError as exc:
        if exc.code != "65536":  # "no embedded invites": withdrawn by an earlier attempt
            raise
