"""Evia sign requests being built: document upload, request create, signatories and stamps."""
from __future__ import annotations

import re
import time
import uuid

from ..base import Request, Response, json_response
from ..pdf import is_pdf, page_count
from ..provider import as_int, is_email, parse_multipart
from .common import (
    CALLBACK_TYPE_NAMES,
    E164_RE,
    EVENT_NAMES,
    HEX_COLOR_RE,
    OTP_FIELDS,
    SIGNATORY_FIELDS,
    STAMP_TYPES,
    _bad,
    _ci,
    _field_err,
)


class SignRequestsMixin:
    """Mixin of ``EviaEmulator`` (state lives there)."""

    # ------------------------------------------------------------------------------------------------ upload/create
    def h_upload(self, req: Request) -> Response:
        err = self._auth(req)
        if err:
            return err
        mp = parse_multipart(req)
        if mp is None or "File" not in mp[1]:
            return _field_err("File", "A file is required (multipart form field 'File')")
        filename, data, _ = mp[1]["File"]
        if not data or not is_pdf(data) or not filename.lower().endswith((".pdf", ".doc", ".docx")):
            return _field_err("File", "Allowed extensions are PDF, DOC, DOCX")
        token = str(uuid.uuid4())
        with self.lock:
            self.uploads[token] = {"name": filename, "pdf": data, "pages": page_count(data)}
        return json_response({"documentToken": token})

    def h_create(self, req: Request) -> Response:
        err = self._auth(req)
        if err:
            return err
        typ = req.query.get("type")
        if typ not in ("0", "1", "2", "3"):
            return _field_err("type", "type must be 0, 1, 2 or 3")
        if typ != "0":
            return _field_err("type", f"type={typ} is not emulated; use type=0 (skeleton)")
        body, err = self._json(req)
        if err:
            return err
        b = _ci(body)
        for k, name in (("title", "Title"), ("message", "Message")):
            if not isinstance(b.get(k), str) or not b[k].strip():
                return _field_err(name, f"The {name} field is required.")
        docs = b.get("documents")
        if not isinstance(docs, list) or not docs or not all(isinstance(d, str) for d in docs):
            return _field_err("Documents", "At least one document token is required.")
        unknown = [d for d in docs if d not in self.uploads]
        if unknown:
            return _field_err("Documents", f"Unknown document token(s): {', '.join(unknown)}")
        if not isinstance(b.get("auditdetails"), dict):
            return _field_err("AuditDetails", "The AuditDetails field is required.")
        cb = b.get("callbackurl")
        if cb not in (None, "") and not (isinstance(cb, str) and re.match(r"^https?://[^\s/]+", cb)):
            return _field_err("CallbackUrl", "CallbackUrl must be an absolute http(s) URL.")
        types = b.get("callbacktypes")
        type_ids = None
        if types not in (None, []):
            if not isinstance(types, list):
                return _field_err("CallbackTypes", "CallbackTypes must be an array.")
            type_ids = set()
            for t in types:
                if isinstance(t, int) and not isinstance(t, bool) and t in EVENT_NAMES:
                    type_ids.add(t)
                elif isinstance(t, str) and t in CALLBACK_TYPE_NAMES:
                    type_ids.add(CALLBACK_TYPE_NAMES[t])
                else:
                    return _field_err("CallbackTypes", f"Unknown callback type {t!r}.")
        attached = b.get("completeddocumentsattached", False)
        if not isinstance(attached, bool):
            return _field_err("CompletedDocumentsAttached", "must be a boolean.")
        rid = str(uuid.uuid4())
        with self.lock:
            self.requests[rid] = {
                "requestId": rid, "title": b["title"], "message": b["message"], "documents": list(docs),
                "audit_details": b["auditdetails"], "connections": b.get("connections"),
                "callback_url": cb or None, "callback_types": type_ids, "attach": attached,
                "status": "draft", "signatories": [], "created": time.time(), "events": [],
            }
        return json_response({"requestId": rid})

    # ------------------------------------------------------------------------------------------------ signatories
    def h_signatory(self, req: Request, rid: str) -> Response:
        err = self._auth(req)
        if err:
            return err
        rq, err = self._request(rid)
        if err:
            return err
        body, err = self._json(req)
        if err:
            return err
        b = _ci(body)
        if self.strict_fields:
            extra = sorted(k for k in body if str(k).lower() not in SIGNATORY_FIELDS)
            if extra:
                return _bad(f"Unknown field(s): {', '.join(extra)}", {k: ["unknown field"] for k in extra})
        if not is_email(b.get("email")):
            return _field_err("Email", "A valid Email is required.")
        if not isinstance(b.get("name"), str) or not b["name"].strip():
            return _field_err("Name", "The Name field is required.")
        order = b.get("order")
        if not isinstance(order, int) or isinstance(order, bool) or order < 1:
            return _field_err("Order", "Order is required and must be a positive integer.")
        st = b.get("signatorytype")
        if st not in (1, 2, 3) or isinstance(st, bool):
            return _field_err("SignatoryType", "SignatoryType must be 1 (Signer), 2 (Approver) or 3 (CC).")
        if b.get("privatemessage") is not None and not isinstance(b["privatemessage"], str):
            return _field_err("PrivateMessage", "must be a string.")
        color = b.get("color")
        if color not in (None, "") and not (isinstance(color, str) and HEX_COLOR_RE.match(color)):
            return _field_err("Color", "Color must be a hex colour like #7c95f4.")
        otp = b.get("otp")
        otp_state = None
        if otp is not None:
            if not isinstance(otp, dict):
                return _field_err("OTP", "OTP must be an object.")
            o = _ci(otp)
            if self.strict_fields:
                extra = sorted(k for k in otp if str(k).lower() not in OTP_FIELDS)
                if extra:
                    return _bad(f"Unknown OTP field(s): {', '.join(extra)}", {f"OTP.{k}": ["unknown field"]
                                                                             for k in extra})
            if not isinstance(o.get("isrequired"), bool):
                return _field_err("OTP.IsRequired", "OTP.IsRequired is required (boolean).")
            otype = o.get("type")
            if otype not in (1, 2, 3, 4) or isinstance(otype, bool):
                return _field_err("OTP.Type", "OTP.Type must be 1 (Email), 2 (SMS), 3 (AccessCode) or 4 (Email & SMS).")
            mobile = o.get("mobilenumber")
            if o["isrequired"] and otype in (2, 4):
                if not mobile:
                    return _field_err("OTP.MobileNumber", "MobileNumber is required for SMS OTP (Type 2 or 4).")
                if not (isinstance(mobile, str) and E164_RE.match(mobile)):
                    return _field_err("OTP.MobileNumber", "MobileNumber must be a valid number (E.164, e.g. +14155550100).")
            if o["isrequired"] and otype == 3 and not (isinstance(o.get("accesscode"), str) and o["accesscode"].strip()):
                return _field_err("OTP.AccessCode", "AccessCode is required for OTP Type 3.")
            otp_state = {"IsRequired": o["isrequired"], "Type": otype, "AccessCode": o.get("accesscode") or "",
                         "MobileNumber": mobile or ""}
        with self.lock:
            if rq["status"] != "draft":
                return _bad("Signatories can only be added before the request is sent.")
            sid = str(uuid.uuid4())
            rq["signatories"].append({
                "signatoryId": sid, "email": b["email"], "name": b["name"], "order": order, "type": st,
                "private_message": b.get("privatemessage"), "color": color, "otp": otp_state, "stamps": [],
                "status": "draft", "created": time.time(), "completed_at": None,
            })
        return json_response({"requestId": rid, "signatoryId": sid})

    def h_stamp(self, req: Request, rid: str, sid: str) -> Response:
        err = self._auth(req)
        if err:
            return err
        rq, err = self._request(rid)
        if err:
            return err
        sig = next((s for s in rq["signatories"] if s["signatoryId"] == sid), None)
        if not sig or time.time() - sig["created"] < self.stamp_propagation_delay:
            return _bad("Signatory not found", status=404)
        body, err = self._json(req)
        if err:
            return err
        b = _ci(body)
        ident = b.get("identifier")
        if not isinstance(ident, str) or not ident.strip():
            return _field_err("Identifier", "The Identifier field is required.")
        if b.get("type") not in STAMP_TYPES:
            return _field_err("Type", f"Type must be one of: {', '.join(sorted(STAMP_TYPES))}.")
        if b.get("order") is not None and as_int(b["order"]) is None:
            return _field_err("Order", "must be an integer.")
        if b.get("color") not in (None, "") and not (isinstance(b["color"], str) and HEX_COLOR_RE.match(b["color"])):
            return _field_err("Color", "Color must be a hex colour.")
        for k, name in (("offset", "Offset"), ("stampsize", "StampSize"), ("size", "Size")):
            if b.get(k) is not None and not isinstance(b[k], dict):
                return _field_err(name, "must be an object.")
        if self.require_identifier_in_document:
            texts = b"".join(self.uploads[d]["pdf"] for d in rq["documents"])
            if ident.encode() not in texts:
                return _field_err("Identifier", f"Identifier {ident!r} was not found in the documents.")
        with self.lock:
            if rq["status"] != "draft":
                return _bad("Stamps can only be added before the request is sent.")
            if sig["type"] == 3:
                return _field_err("SignatoryType", "CC signatories cannot have stamps.")
            if any(s["Identifier"] == ident for s in sig["stamps"]):
                return _field_err("Identifier", "Identifier must be unique per signatory.")
            sig["stamps"].append({"Identifier": ident, "Type": b["type"], "Order": b.get("order"),
                                  "Color": b.get("color"), "Offset": b.get("offset"),
                                  "Size": b.get("stampsize") or b.get("size")})
            count = sum(len(s["stamps"]) for s in rq["signatories"])
        return json_response({"requestId": rid, "stampsCount": count})
