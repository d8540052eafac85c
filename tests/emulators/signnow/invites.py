"""signNow invites: field invites (roles, order, reminders) and freeform invites."""
from __future__ import annotations

import time

from ..base import Request, Response, json_response
from ..provider import PHONE_RE, as_flag, as_int, is_email, new_id
from .common import _err


class InvitesMixin:
    """Mixin of ``SignNowEmulator`` (state lives there)."""

    # ------------------------------------------------------------------------------------------------ invite
    # The documented ``to[]`` keys of a field invite (seed: "Send an invite to sign (document with fields)");
    # anything else is refused, as a strict server would.
    TO_KEYS = frozenset({"email", "role_id", "role", "order", "prefill_signature_name", "force_new_signature",
                         "signing_instructions", "reassign", "decline_by_signature", "reminder", "expiration_days",
                         "authentication_type", "password", "phone", "subject", "message", "redirect_uri"})

    def _check_auth_fields(self, t: dict, where: str) -> Response | None:
        at = t.get("authentication_type")
        if at in (None, ""):
            return None
        if at not in ("password", "phone"):
            return _err(65536, f"{where}authentication_type must be one of: password, phone.")
        if at == "password" and not t.get("password"):
            return _err(65536, "authentication type must not be empty")
        if at == "phone":
            if not t.get("phone"):
                return _err(65536, "authentication type must not be empty")
            if not PHONE_RE.match(str(t["phone"])):
                return _err(65536, f"{where}phone must be a valid phone number.")
        return None

    def _check_reminder(self, reminder, exp_days: int | None, where: str, max_days: int | None = None):
        """The documented form only: "in how many days to send a reminder", an integer (≤30 on replace)."""
        if reminder is None:
            return None
        v = as_int(reminder) if not isinstance(reminder, (dict, list, bool)) else None
        if v is None:
            return _err(65536, f"{where}reminder must be an integer.")
        if v < 0 or (max_days is not None and v > max_days):
            return _err(65536, f"{where}reminder is out of range.")
        return None

    def h_invite(self, req: Request, doc_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        try:
            body = req.json()
        except ValueError:
            return _err(65536, "Invalid JSON.")
        if not isinstance(body, dict):
            return _err(65536, "Invalid JSON.")
        to = body.get("to")
        frm = body.get("from")
        if to is None:
            return _err(65536, "To must be a valid email.")
        if isinstance(to, str):
            return self._freeform_invite(req, doc, body, user)
        if not isinstance(to, list) or not to:
            return _err(65536, "to must be a non-empty array or an email.")
        if not is_email(frm):
            return _err(65536, "From must be a valid email.")
        if frm.lower() != doc["owner"].lower():
            return _err(65536, "Email not found")
        for k in ("subject", "message", "cc_subject", "cc_message"):
            if k in body and not isinstance(body[k], str):
                return _err(65536, f"{k} must be a string.")
        cc = body.get("cc", [])
        if not isinstance(cc, list) or not all(is_email(e) for e in cc):
            return _err(65536, "cc must be an array of valid emails.")
        cc_step = body.get("cc_step", [])
        if not isinstance(cc_step, list):
            return _err(65536, "cc_step must be an array.")
        for i, s in enumerate(cc_step):
            if not isinstance(s, dict) or not is_email(s.get("email")):
                return _err(65536, f"cc_step[{i}].email must be a valid email.")
            if "step" in s and (as_int(s["step"]) is None or as_int(s["step"]) < 1):
                return _err(65536, f"cc_step[{i}].step must be an integer starting from 1.")
        viewers = body.get("viewers", [])
        if not isinstance(viewers, list):
            return _err(65536, "viewers must be an array.")
        for i, v in enumerate(viewers):
            if not isinstance(v, dict) or not is_email(v.get("email")):
                return _err(65536, f"viewers[{i}].email must be a valid email.")
            if "order" in v and (as_int(v["order"]) is None or as_int(v["order"]) < 1):
                return _err(65536, f"viewers[{i}].order must be an integer starting from 1.")
        with self.lock:
            roles = self._roles(doc)
            if not roles:
                return _err(65594, "Cannot send a field invite: This document does not contain fields.")
            by_id = {r["unique_id"]: r for r in roles}
            by_name = {r["name"]: r for r in roles}
            prepared, seen_roles = [], set()
            for i, t in enumerate(to):
                w = f"to[{i}]."
                if not isinstance(t, dict):
                    return _err(65536, f"{w[:-1]} must be an object.")
                if not is_email(t.get("email")):
                    return _err(65536, "To must be a valid email.")
                role = None
                if t.get("role_id"):
                    role = by_id.get(t["role_id"])
                    if not role:
                        return _err(65536, f"Role {t['role_id']} does not exist on document")
                elif t.get("role"):
                    role = by_name.get(t["role"])
                    if not role:
                        return _err(65536, f"Role {t['role']} does not exist on document")
                else:
                    return _err(65536, f"{w}role or {w}role_id is required.")
                if role["unique_id"] in seen_roles:
                    return _err(65536, f"Role {role['name']} is assigned more than once.")
                seen_roles.add(role["unique_id"])
                order = t.get("order", role["signing_order"])
                if as_int(order) is None or as_int(order) < 1:
                    return _err(65536, f"{w}order must be an integer starting from 1.")
                unknown = sorted(set(t) - self.TO_KEYS)
                if unknown:
                    return _err(65536, f"{w}{unknown[0]} is not allowed.")
                exp = t.get("expiration_days")
                if exp is not None and (as_int(exp) is None or as_int(exp) < 1):
                    return _err(65536, f"{w}expiration_days must be a positive integer.")
                exp_days = as_int(exp) if exp is not None else 30
                bad = self._check_reminder(t.get("reminder"), exp_days, w) or self._check_auth_fields(t, w)
                if bad:
                    return bad
                for k in ("decline_by_signature", "reassign", "force_new_signature"):
                    if k in t and as_flag(t[k]) is None:
                        return _err(65536, f"{w}{k} must be 0 or 1.")
                for k in ("subject", "message", "signing_instructions", "prefill_signature_name"):
                    if k in t and not isinstance(t[k], str):
                        return _err(65536, f"{w}{k} must be a string.")
                prepared.append((t, role, as_int(order), exp_days))
            if any(fi["status"] in ("pending", "created", "fulfilled") for fi in doc["field_invites"]):
                return _err(65629, "Could not create duplicate field invite")
            doc["_emails_disabled"] = req.query.get("email") == "disable"
            doc["cc"], doc["cc_step"], doc["viewers"] = list(cc), list(cc_step), list(viewers)
            doc["invite_meta"] = {k: body.get(k) for k in ("from", "subject", "message", "cc_subject",
                                                           "cc_message")}
            doc["field_invites"] = []
            for t, role, order, exp_days in prepared:
                doc["field_invites"].append(self._new_field_invite(doc, t, role, order, exp_days, body))
            newly = self._advance(doc)
            for fi in newly:
                self._email(doc, "invite", fi["email"], subject=fi["_subject"], message=fi["_message"],
                            field_invite_id=fi["id"])
            for v in viewers:
                self._email(doc, "viewer", v["email"], order=v.get("order"))
            self._history(doc, "fieldinvite_sent", user)
            batch = self._events(doc, ["document.fieldinvite.create"], user)
        self._post_all(batch)
        return json_response({"status": "success"})

    def _new_field_invite(self, doc, t, role, order, exp_days, body) -> dict:
        fi_id = new_id()
        self.field_invite_index[fi_id] = doc["id"]
        now = int(time.time())
        return {
            "id": fi_id, "status": "created", "email": t["email"], "role": role["name"],
            "role_id": role["unique_id"], "created": str(now), "updated": str(now),
            "expiration_time": now + exp_days * 86400, "reminder": t.get("reminder"),
            "declined": [], "is_full_declined": False,
            "password_protected": "1" if t.get("authentication_type") == "password" else "0",
            "id_verification_required": "0", "is_embedded": "0",
            "email_statuses": [], "signer_user_id": self.user_ids.get(t["email"].lower()),
            "order": order,
            "_order": order, "_subject": t.get("subject") or body.get("subject"),
            "_message": t.get("message") or body.get("message"),
            "_authentication_type": t.get("authentication_type"), "_password": t.get("password"),
            "_phone": t.get("phone"), "_decline_by_signature": as_flag(t.get("decline_by_signature", 0)),
            "_raw": dict(t),
        }

    def _advance(self, doc: dict) -> list[dict]:
        """Activate the lowest open signing step: order N is pending only after every order < N is done."""
        active = [fi for fi in doc["field_invites"] if fi["status"] in ("created", "pending")]
        if not active or any(fi["declined"] for fi in doc["field_invites"]):
            return []
        current = min(fi["_order"] for fi in active)
        newly = []
        for fi in active:
            if fi["_order"] == current and fi["status"] == "created":
                fi["status"] = "pending"
                fi["updated"] = str(int(time.time()))
                fi["email_statuses"].append({"status": "sent", "created_at": int(time.time()),
                                             "last_reaction_at": None})
                newly.append(fi)
        return newly

    def _freeform_invite(self, req: Request, doc: dict, body: dict, user: str) -> Response:
        to, frm = body["to"], body.get("from")
        if not is_email(to):
            return _err(65536, "To must be a valid email.")
        if not is_email(frm):
            return _err(65536, "From must be a valid email.")
        if frm.lower() != doc["owner"].lower():
            return _err(65536, "Email not found")
        cc = body.get("cc")
        if cc is not None:
            ccs = cc if isinstance(cc, list) else [cc]
            if not all(is_email(e) for e in ccs):
                return _err(65536, "CC must be a valid email.")
        for k in ("subject", "message", "cc_subject", "cc_message"):
            if k in body and not isinstance(body[k], str):
                return _err(65536, f"{k} must be a string.")
        if "language" in body and body["language"] not in ("en", "es", "fr"):
            return _err(65536, "language must be one of: en, es, fr.")
        inv_id = new_id()
        with self.lock:
            doc["_emails_disabled"] = req.query.get("email") == "disable"
            doc["requests"].append({
                "id": inv_id, "unique_id": inv_id, "user_id": doc["user_id"], "created": str(int(time.time())),
                "originator_email": frm, "signer_email": to, "signature_id": None, "canceled": None,
                "email_statuses": [{"status": "sent", "created_at": int(time.time())}],
                "_cc": cc, "_subject": body.get("subject"), "_message": body.get("message"),
            })
            self.freeform_index[inv_id] = doc["id"]
            self._email(doc, "invite", to, subject=body.get("subject"), message=body.get("message"),
                        freeform_invite_id=inv_id)
            self._history(doc, "freeform_invite_sent", user)
            batch = self._events(doc, ["document.freeform.create"], user)
        self._post_all(batch)
        return json_response({"result": "success", "id": inv_id,
                              "callback_url": body.get("callback_url") or "none"})
