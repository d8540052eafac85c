"""signNow embedded invites (providers spec §1.7): signing links instead of invitation e-mails.

* ``POST /v2/documents/{id}/embedded-invites`` ``{invites:[{email, role | role_id, order, auth_method,
  delivery_type?, link_expiration? (15–43200 min)}]}`` → ``{data:[{id, email, role_id, order, status,
  expires_at}]}``.  Preconditions: the caller owns the document; it is not a template; it has fields;
  it has no other invite (65629); signer e-mails unique and ≤150 chars; the owner is not a signer;
  every role of the document is in ``invites``.  No e-mail is sent.
* ``POST /v2/documents/{id}/embedded-invites/{invite_id}/link`` ``{auth_method, link_expiration (15–45
  min), session_expiration?}`` → ``{data:{link}}``; a signed invite gets no link (400).
* ``DELETE /v2/documents/{id}/embedded-invites`` → 204 (the invites are gone; the document can be
  invited again).

The invites show in ``GET /document`` as field invites with ``is_embedded: "1"``, so ``sign`` / ``decline``
work on them as on e-mailed ones.  Test API: ``open_link(url)`` → (document id, email), raising
ValueError for an unknown or expired link (the signer's browser).
"""
from __future__ import annotations

import secrets
import time

from ..base import Request, Response, json_response
from ..provider import as_int, is_email
from .common import _err, _not_found

AUTH_METHODS = ("password", "email", "mfa", "social", "biometric", "other", "none")


class EmbeddedInvitesMixin:
    """Mixin of ``SignNowEmulator`` (state lives there)."""

    def _embedded_routes(self):
        r = self.add_route
        base = r"^/v2/documents/(?P<doc_id>[0-9a-f]+)/embedded-invites"
        r("POST", base + "$", self.h_embedded_create)
        r("DELETE", base + "$", self.h_embedded_delete)
        r("POST", base + r"/(?P<inv_id>[0-9a-f]+)/link$", self.h_embedded_link)

    @property
    def embedded_links(self) -> dict:
        if not hasattr(self, "_embedded_links"):
            self._embedded_links = {}
        return self._embedded_links

    def open_link(self, url: str) -> tuple[str, str]:
        token = url.rstrip("/").rsplit("/", 1)[-1]
        entry = self.embedded_links.get(token)
        if entry is None:
            raise ValueError("unknown signing link")
        if entry["expires_at"] < time.time():
            raise ValueError("signing link expired")
        return entry["document_id"], entry["email"]

    def h_embedded_create(self, req: Request, doc_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        try:
            body = req.json()
        except ValueError:
            return _err(65536, "Invalid JSON.")
        invites = body.get("invites") if isinstance(body, dict) else None
        if not isinstance(invites, list) or not invites:
            return _err(65536, "invites must not be empty.")
        with self.lock:
            if doc.get("template"):
                return _err(65536, "Document is a template.")
            roles = self._roles(doc)
            if not roles:
                return _err(65594, "Cannot send a field invite: This document does not contain fields.")
            if any(fi["status"] in ("pending", "created", "fulfilled") for fi in doc["field_invites"]) \
                    or doc["requests"]:
                return _err(65629, "Could not create duplicate field invite")
            by_id, by_name = {r["unique_id"]: r for r in roles}, {r["name"]: r for r in roles}
            prepared, emails = [], set()
            for i, inv in enumerate(invites):
                w = f"invites[{i}]."
                if not isinstance(inv, dict) or not is_email(inv.get("email")) or len(inv["email"]) > 150:
                    return _err(65536, f"{w}email must be a valid email.")
                if inv["email"].lower() == doc["owner"].lower():
                    return _err(65536, f"{w}email: the document owner cannot be a signer.")
                if inv["email"].lower() in emails:
                    return _err(65536, f"{w}email must be unique.")
                emails.add(inv["email"].lower())
                role = by_id.get(inv.get("role_id")) or by_name.get(inv.get("role"))
                if role is None:
                    return _err(65536, f"Role {inv.get('role') or inv.get('role_id')} does not exist on document")
                if as_int(inv.get("order")) is None or as_int(inv["order"]) < 1:
                    return _err(65536, f"{w}order must be an integer starting from 1.")
                if inv.get("auth_method") not in AUTH_METHODS:
                    return _err(65536, f"{w}auth_method must be one of: {', '.join(AUTH_METHODS)}.")
                if inv.get("delivery_type", "email") not in ("email", "link"):
                    return _err(65536, f"{w}delivery_type must be one of: email, link.")
                exp = inv.get("link_expiration")
                if exp is not None and (as_int(exp) is None or not 15 <= as_int(exp) <= 43200):
                    return _err(65536, f"{w}link_expiration must be between 15 and 43200.")
                prepared.append((inv, role))
            missing = sorted({r["name"] for r in roles} - {role["name"] for _, role in prepared})
            if missing:
                return _err(65536, f"Every role must be invited: {', '.join(missing)} missing.")
            doc["field_invites"], out = [], []
            for inv, role in prepared:
                fi = self._new_field_invite(doc, {"email": inv["email"]}, role, as_int(inv["order"]), 30, {})
                fi["is_embedded"] = "1"
                fi["_embedded_link_expiration"] = as_int(inv.get("link_expiration") or 15)
                doc["field_invites"].append(fi)
                out.append({"id": fi["id"], "email": fi["email"], "role_id": role["unique_id"],
                            "order": fi["_order"], "status": "created", "expires_at": fi["expiration_time"]})
            self._advance(doc)  # the first step is open; no e-mail is sent for embedded invites
            self._history(doc, "embedded_invite_created", user)
        return json_response({"data": out})

    def h_embedded_link(self, req: Request, doc_id: str, inv_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        try:
            body = req.json() if req.body else {}
        except ValueError:
            return _err(65536, "Invalid JSON.")
        if (body or {}).get("auth_method") not in AUTH_METHODS:
            return _err(65536, f"auth_method must be one of: {', '.join(AUTH_METHODS)}.")
        minutes = (body or {}).get("link_expiration", 15)
        if as_int(minutes) is None or not 15 <= as_int(minutes) <= 45:
            return _err(65536, "link_expiration must be between 15 and 45.")
        with self.lock:
            fi = next((f for f in doc["field_invites"] if f["id"] == inv_id and f.get("is_embedded") == "1"), None)
            if fi is None:
                return _not_found()
            if fi["status"] == "fulfilled":
                return _err(65536, "The invite has already been signed.")
            token = secrets.token_urlsafe(24)
            self.embedded_links[token] = {"document_id": doc_id, "email": fi["email"],
                                          "expires_at": time.time() + as_int(minutes) * 60}
        return json_response({"data": {"link": f"{self.base_url}/embedded-signing/{token}"}})

    def h_embedded_delete(self, req: Request, doc_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        with self.lock:
            embedded = [f for f in doc["field_invites"] if f.get("is_embedded") == "1"]
            if not embedded:
                return _err(65536, "The document has no embedded invites.")
            doc["cancelled_invites"] += embedded
            doc["field_invites"] = [f for f in doc["field_invites"] if f.get("is_embedded") != "1"]
        return Response(204, b"", {})
