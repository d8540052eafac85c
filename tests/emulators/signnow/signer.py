"""The emulated signNow signer's actions: sign, decline, expire."""
from __future__ import annotations

import time

from ..provider import new_id


class SignerActionsMixin:
    """Mixin of ``SignNowEmulator`` (state lives there)."""

    # ------------------------------------------------------------------------------------------------ hooks
    def sign(self, document_id: str, email: str) -> None:
        """The emulated signer signs.  Raises ValueError when it is not their turn, expired, declined, etc."""
        with self.lock:
            doc = self.documents[document_id]
            fis = [fi for fi in doc["field_invites"] if fi["email"].lower() == email.lower()
                   and fi["status"] in ("created", "pending")]
            events, invited = [], []
            if fis:
                fi = fis[0]
                if any(f["declined"] for f in doc["field_invites"]):
                    raise ValueError("invite was declined")
                if fi["status"] == "created":
                    raise ValueError("routing out of order: not this signer's turn yet")
                if fi["expiration_time"] < time.time():
                    raise ValueError("invite expired")
                fi["status"] = "fulfilled"
                fi["updated"] = str(int(time.time()))
                sig_id = new_id()
                doc["signatures"].append({"id": sig_id, "user_id": fi["signer_user_id"], "email": fi["email"],
                                          "role": fi["role"], "created": str(int(time.time()))})
                self._history(doc, "document_signing_session_completed", fi["email"], role=fi["role"])
                events.append("document.fieldinvite.signed")
                for nxt in self._advance(doc):
                    self._email(doc, "invite", nxt["email"], subject=nxt["_subject"], message=nxt["_message"],
                                field_invite_id=nxt["id"])
                    invited.append(nxt["email"])
                done = all(f["status"] in ("fulfilled", "skipped") for f in doc["field_invites"])
            else:
                rq = next((r for r in doc["requests"] if r["signer_email"].lower() == email.lower()
                           and not r["signature_id"] and not r["canceled"]), None)
                if not rq:
                    raise ValueError(f"no open invite for {email} on {document_id}")
                rq["signature_id"] = new_id()
                doc["signatures"].append({"id": rq["signature_id"], "email": email,
                                          "created": str(int(time.time()))})
                self._history(doc, "document_signing_session_completed", email)
                events.append("document.freeform.signed")
                done = all(r["signature_id"] or r["canceled"] for r in doc["requests"]) and not any(
                    f["status"] in ("created", "pending") for f in doc["field_invites"])
            if done and not doc["completed"]:
                doc["completed"] = True
                events.append("document.complete")
                self._history(doc, "document_completed", None)
                for e in doc["cc"] + [s["email"] for s in sorted(doc["cc_step"], key=lambda s: s.get("step", 1))]:
                    self._email(doc, "cc", e, subject=doc["invite_meta"].get("cc_subject"))
                self._email(doc, "completed", doc["owner"])
            batch = self._events(doc, events, email)
        self._post_all(batch)
        self._invited(document_id, invited)

    def view(self, document_id: str, email: str) -> None:
        """Someone opens the document: a signer from their invite (it must be open and their turn), or the
        owner.  History gets ``document_viewed`` with their e-mail; ``document.open`` subscriptions (and
        ``user.document.open`` of the owner) are called, naming the viewer only by an opaque unique id."""
        with self.lock:
            doc = self.documents[document_id]
            if email.lower() != doc["owner"].lower():
                fi = next((f for f in doc["field_invites"] if f["email"].lower() == email.lower()), None)
                rq = next((r for r in doc["requests"] if r["signer_email"].lower() == email.lower()
                           and not r["canceled"]), None)
                if fi is not None:
                    if fi["status"] == "created":
                        raise ValueError("routing out of order: this signer has no invite to open yet")
                    if fi["status"] == "pending" and fi["expiration_time"] < time.time():
                        raise ValueError("invite expired")
                elif rq is None:
                    raise ValueError(f"{email} has no invite to {document_id}")
            self._history(doc, "document_viewed", email)
            viewer = self.viewer_ids.setdefault(email.lower(), new_id())
            batch = self._events(doc, ["document.open"], email, viewer=viewer)
        self._post_all(batch)

    def decline(self, document_id: str, email: str, reason: str = "Declined by signer") -> None:
        with self.lock:
            doc = self.documents[document_id]
            fi = next((f for f in doc["field_invites"] if f["email"].lower() == email.lower()
                       and f["status"] == "pending"), None)
            if not fi:
                raise ValueError(f"no pending field invite for {email} (freeform invites cannot be declined here)")
            fi["declined"].append({"declined_text": reason, "created": str(int(time.time())), "email": email})
            fi["is_full_declined"] = True
            fi["updated"] = str(int(time.time()))
            self._history(doc, "document_declined", email, reason=reason)
            self._email(doc, "declined", doc["owner"], reason=reason, signer=email)
            batch = self._events(doc, ["document.fieldinvite.decline"], email)
        self._post_all(batch)

    def expire(self, document_id: str) -> None:
        with self.lock:
            doc = self.documents[document_id]
            for fi in doc["field_invites"]:
                if fi["status"] in ("created", "pending"):
                    fi["expiration_time"] = int(time.time()) - 1

    def field_invite(self, document_id: str, email: str) -> dict:
        """The (internal) field invite record for a signer, for assertions."""
        return next(f for f in self.documents[document_id]["field_invites"] if f["email"].lower() == email.lower())
