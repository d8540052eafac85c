"""signNow invite lifecycle: resend, delete/replace + trigger, cancel (field and freeform), lists, email2."""
from __future__ import annotations

import time

from ..base import Request, Response, json_response
from ..provider import as_flag, as_int, is_email
from .common import _err


class InviteLifecycleMixin:
    """Mixin of ``SignNowEmulator`` (state lives there)."""

    # ------------------------------------------------------------------------------------------------ lifecycle
    def _find_fi(self, fi_id: str):
        doc = self.documents.get(self.field_invite_index.get(fi_id, ""))
        if not doc:
            return None, None
        fi = next((f for f in doc["field_invites"] if f["id"] == fi_id), None)
        return doc, fi

    def h_resend(self, req: Request, fi_id: str) -> Response:
        user, err = self._user_or_401(req)
        if err:
            return err
        with self.lock:
            doc, fi = self._find_fi(fi_id)
            if not fi or doc["owner"].lower() != user.lower():
                return _err(65536, "could not resend")
            if fi["status"] == "created":
                return _err(65536, "Could not resend: routing out of order.")
            if fi["status"] != "pending" or fi["declined"]:
                return _err(65536, "could not resend")
            if fi["expiration_time"] < time.time():
                return _err(65536, "Could not resend expired invite.")
            self._email(doc, "resend", fi["email"], field_invite_id=fi_id, subject=fi["_subject"])
            fi["email_statuses"].append({"status": "resent", "created_at": int(time.time()),
                                         "last_reaction_at": None})
        return json_response({"status": "success"})

    def h_delete_field_invite(self, req: Request, fi_id: str) -> Response:
        user, err = self._user_or_401(req)
        if err:
            return err
        with self.lock:
            doc, fi = self._find_fi(fi_id)
            if not fi or doc["owner"].lower() != user.lower():
                return _err(66502, "Field invite not found.", 404)
            if fi["status"] == "fulfilled":
                return _err(65536, "Field invite is already fulfilled.")
            doc["field_invites"].remove(fi)
            doc["deleted_invites"].append(fi)
            self._history(doc, "fieldinvite_deleted", user, role=fi["role"])
            batch = self._events(doc, ["document.fieldinvite.delete"], user)
        self._post_all(batch)
        return json_response({"status": "success"})

    def h_replace_field_invite(self, req: Request) -> Response:
        user, err = self._user_or_401(req)
        if err:
            return err
        try:
            body = req.json()
        except ValueError:
            return _err(65536, "Invalid JSON.")
        if not isinstance(body, dict):
            return _err(65536, "Invalid JSON.")
        if not is_email(body.get("email")):
            return _err(65538, "Email must be a valid email.")
        if "is_replace" not in body or body["is_replace"] not in (True, False, "true", "false", 1, 0, "1", "0"):
            return _err(65536, "is_replace is required.")
        exp = body.get("expiration_days")
        if exp is not None and (as_int(exp) is None or not 1 <= as_int(exp) <= 30):
            return _err(65536, "expiration_days must be between 1 and 30.")
        exp_days = as_int(exp) if exp is not None else 30
        bad = self._check_reminder(body.get("reminder"), exp_days if exp is not None else None, "", max_days=30) \
            or self._check_auth_fields(body, "")
        if bad:
            return bad
        if "decline_by_signature" in body and as_flag(body["decline_by_signature"]) is None:
            return _err(65536, "decline_by_signature must be 0 or 1.")
        with self.lock:
            doc = next((d for d in self.documents.values() if d["owner"].lower() == user.lower()
                        and body.get("role_id") in d["role_ids"].values()), None)
            if not doc or not body.get("role_id"):
                return _err(65582, "Role does not exist.")
            role = next(r for r in self._roles(doc) if r["unique_id"] == body["role_id"])
            if any(fi["role_id"] == role["unique_id"] for fi in doc["field_invites"] + doc["staged_invites"]):
                return _err(65615, "Invite already exists.")
            prev = next((fi for fi in reversed(doc["deleted_invites"]) if fi["role_id"] == role["unique_id"]), None)
            keep = body["is_replace"] in (True, "true", 1, "1")
            order = prev["_order"] if keep and prev else (as_int(body.get("order")) or int(role["signing_order"]))
            t = dict(body)
            if keep and prev:
                t.setdefault("subject", prev["_subject"])
                t.setdefault("message", prev["_message"])
            fi = self._new_field_invite(doc, t, role, order, exp_days, doc["invite_meta"])
            doc["staged_invites"].append(fi)
        return json_response({"id": fi["id"]})

    def h_trigger(self, req: Request, doc_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        with self.lock:
            if not doc["staged_invites"]:
                return _err(65615, "Field invite missing on this document.")
            doc["field_invites"].extend(doc["staged_invites"])
            doc["staged_invites"] = []
            for fi in self._advance(doc):
                self._email(doc, "invite", fi["email"], subject=fi["_subject"], message=fi["_message"],
                            field_invite_id=fi["id"])
            self._history(doc, "fieldinvite_replaced", user)
            batch = self._events(doc, ["document.fieldinvite.replace"], user)
        self._post_all(batch)
        return json_response({"status": "success"})

    def h_cancel_field_invites(self, req: Request, doc_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        try:
            body = req.json() if req.body else {}
        except ValueError:
            return _err(65536, "Invalid JSON.")
        reason = body.get("reason") if isinstance(body, dict) else None
        if not isinstance(reason, str) or not reason.strip():
            return _err(65536, "The reason value must not be empty string.")
        with self.lock:
            if self.cancel_refusal:  # a refusal signNow may give for other reasons (tests set it)
                code, message = self.cancel_refusal
                self.cancel_refusal = None
                return _err(code, message)
            if not doc["field_invites"] and not doc["staged_invites"]:
                return _err(65615, "Field invite missing on this document.")
            for fi in doc["field_invites"] + doc["staged_invites"]:
                fi["_cancel_reason"] = reason
            doc["cancelled_invites"].extend(doc["field_invites"] + doc["staged_invites"])
            doc["field_invites"], doc["staged_invites"] = [], []
            self._history(doc, "fieldinvite_canceled", user, reason=reason)
        return json_response({"status": "success"})

    def h_cancel_freeform(self, req: Request, inv_id: str) -> Response:
        user, err = self._user_or_401(req)
        if err:
            return err
        with self.lock:
            doc = self.documents.get(self.freeform_index.get(inv_id, ""))
            rq = next((r for r in doc["requests"] if r["id"] == inv_id), None) if doc else None
            if not rq or doc["owner"].lower() != user.lower():
                return _err(65582, "Invite not found", 404)
            if rq["signature_id"]:
                return _err(65536, "Invite is already fulfilled.")
            if rq["canceled"]:
                return _err(65536, "Invite is already canceled.")
            body = {}
            try:
                body = req.json() if req.body else {}
            except ValueError:
                pass
            rq["canceled"] = str(int(time.time()))
            rq["_cancel_reason"] = (body or {}).get("reason") if isinstance(body, dict) else None
            self._history(doc, "freeform_invite_canceled", user)
        return json_response({"status": "success"})

    def h_freeform_list(self, req: Request, doc_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        with self.lock:
            data = [{"id": r["id"], "email": r["signer_email"], "created": int(r["created"]),
                     "status": "fulfilled" if r["signature_id"] else "cancelled" if r["canceled"] else "pending"}
                    for r in doc["requests"]]
        return json_response({"data": data, "meta": {"pagination": {
            "total": len(data), "count": len(data), "per_page": 50, "current_page": 1, "total_pages": 1}}})

    def h_email2(self, req: Request, doc_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        try:
            body = req.json()
        except ValueError:
            return _err(65536, "Invalid JSON.")
        emails = body.get("emails") if isinstance(body, dict) else None
        if not isinstance(emails, list) or not emails:
            return _err(65536, "emails must not be empty.")
        if len(emails) > 5:
            return _err(65536, "emails must contain at most 5 items.")
        if not all(is_email(e) for e in emails):
            return _err(65536, "emails must contain valid emails.")
        if self.email2_unverified_sender:
            return _err(22200, "Unverified sender email")
        with self.lock:
            for e in emails:
                self._email(doc, "copy", e, subject=body.get("subject"), message=body.get("message"))
        return json_response({"status": "success"})
