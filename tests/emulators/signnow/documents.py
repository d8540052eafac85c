"""signNow documents: upload (+ field extract), fields, document reads, download and history."""
from __future__ import annotations

import io
import json
import re
import time
import zipfile

from ..base import Request, Response, json_response
from ..pdf import is_pdf, make_pdf, page_count
from ..provider import as_int, new_id, parse_multipart
from .common import FIELD_TYPES, TAG_TYPES, _err, _not_found


class DocumentsMixin:
    """Mixin of ``SignNowEmulator`` (state lives there)."""

    # ------------------------------------------------------------------------------------------------ docs
    def _doc(self, req: Request, doc_id: str):
        """(user, doc, None) or (.., .., error response)."""
        user, err = self._user_or_401(req)
        if err:
            return None, None, err
        doc = self.documents.get(doc_id)
        if not doc or doc["owner"].lower() != user.lower():
            return user, None, _not_found()
        return user, doc, None

    def _history(self, doc: dict, event: str, email: str | None, **extra) -> None:
        doc["history"].append({
            "unique_id": new_id(), "document_id": doc["id"], "event": event, "email": email,
            "user_id": self.user_ids.get((email or "").lower(), ""), "ip_address": "127.0.0.1",
            "client_app_name": "signNow emulator", "client_timestamp": int(time.time()),
            "created": int(time.time()), **extra})

    def _email(self, doc: dict, kind: str, to: str, **extra) -> None:
        if doc.get("_emails_disabled") and kind in ("invite", "resend", "cc", "completed"):
            return
        self.sent_emails.append({"kind": kind, "to": to, "document_id": doc["id"],
                                 "document_name": doc["document_name"], "ts": time.time(), **extra})

    def h_upload(self, req: Request, extract: bool = False) -> Response:
        user, err = self._user_or_401(req)
        if err:
            return err
        mp = parse_multipart(req)
        if mp is None or "file" not in mp[1] or len([k for k in mp[1]]) != 1:
            return _err(65536, "Must upload one file")
        fields, files = mp
        filename, data, _ctype = files["file"]
        if not data:
            return _err(65536, "File is empty.")
        if not is_pdf(data):
            return _err(65536, "Invalid file type. Only PDF files are supported.")
        tags = None
        if extract and fields.get("Tags"):
            try:
                tags = json.loads(fields["Tags"])
                assert isinstance(tags, list)
            except (ValueError, AssertionError):
                return _err(65536, "Tags must be a valid JSON array.")
            for t in tags:
                missing = [k for k in ("tag_name", "role", "label", "required", "type") if k not in t]
                if missing:
                    return _err(65536, f"Tags: {', '.join(missing)} is required.")
        doc_id = new_id()
        name = fields.get("name") or re.sub(r"\.[A-Za-z0-9]+$", "", filename or "document")
        doc = {
            "id": doc_id, "document_name": name, "owner": user, "user_id": self.user_ids[user.lower()],
            "created": int(time.time()), "updated": int(time.time()), "pdf": data, "page_count": page_count(data),
            "fields": [], "role_ids": {}, "field_invites": [], "requests": [], "signatures": [],
            "cc": [], "cc_step": [], "viewers": [], "history": [], "staged_invites": [], "cancelled_invites": [],
            "deleted_invites": [], "invite_meta": {}, "completed": False,
        }
        if extract:
            doc["fields"] = self._extract_tags(data, tags or [])
        with self.lock:
            self.documents[doc_id] = doc
            self._history(doc, "created_document", user)
        return json_response({"id": doc_id})

    def _extract_tags(self, data: bytes, tags: list) -> list[dict]:
        text = data.decode("latin-1")
        fields = []
        for m in re.finditer(r"\{\{(t:[^{}]*)\}\}", text):
            attrs = {}
            for part in m.group(1).split(";"):
                k, _, v = part.partition(":")
                if k.strip():
                    attrs[k.strip()] = v.strip().strip('"')
            if not attrs.get("o"):
                continue
            fields.append({"type": TAG_TYPES.get(attrs.get("t", "s"), "text"), "role": attrs["o"],
                           "required": attrs.get("r", "y") == "y", "label": attrs.get("l", ""),
                           "name": attrs.get("l", ""), "x": 0, "y": 0, "width": int(attrs.get("w", 100) or 100),
                           "height": int(attrs.get("h", 20) or 20), "page_number": 0})
        for t in tags:
            if "{{%s}}" % t["tag_name"] in text:
                fields.append({"type": t["type"], "role": t["role"], "required": bool(t["required"]),
                               "label": t["label"], "name": t["tag_name"], "x": 0, "y": 0,
                               "width": t.get("width", 100), "height": t.get("height", 20), "page_number": 0})
        return fields

    def h_put_fields(self, req: Request, doc_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        try:
            body = req.json()
        except ValueError:
            return _err(65536, "Invalid JSON.")
        if not isinstance(body, dict):
            return _err(65536, "Invalid JSON.")
        fields = body.get("fields")
        if fields is None:
            # other document updates (texts, checks...) are accepted and ignored
            return json_response({"id": doc_id})
        if not isinstance(fields, list):
            return _err(65536, "fields must be an array.")
        out = []
        for i, f in enumerate(fields):
            if not isinstance(f, dict):
                return _err(65536, f"fields[{i}] must be an object.")
            for k in ("x", "y", "width", "height", "page_number", "type", "role", "required"):
                if k not in f:
                    return _err(65536, f"fields[{i}].{k} is required.")
            for k in ("x", "y", "width", "height", "page_number"):
                if as_int(f[k]) is None or as_int(f[k]) < 0:
                    return _err(65536, f"fields[{i}].{k} must be a non-negative integer.")
            if f["type"] not in FIELD_TYPES:
                return _err(65536, f"fields[{i}].type is invalid.")
            if as_int(f["page_number"]) >= max(doc["page_count"], 1):
                return _err(65536, f"fields[{i}].page_number is out of range.")
            if not isinstance(f["role"], str) or not f["role"].strip():
                return _err(65536, f"fields[{i}].role must not be empty.")
            out.append(dict(f))
        with self.lock:
            if any(fi["status"] in ("pending", "created") for fi in doc["field_invites"]):
                return _err(65536, "Document has a pending invite and cannot be edited.")
            doc["fields"] = out
            doc["updated"] = int(time.time())
        return json_response({"id": doc_id})

    def _roles(self, doc: dict) -> list[dict]:
        roles = []
        for f in doc["fields"]:
            name = f["role"]
            if name not in doc["role_ids"]:
                doc["role_ids"][name] = new_id()
            if all(r["name"] != name for r in roles):
                roles.append({"unique_id": doc["role_ids"][name], "signing_order": str(len(roles) + 1),
                              "name": name})
        return roles

    def _fi_public(self, fi: dict) -> dict:
        out = {k: v for k, v in fi.items() if not k.startswith("_")}
        expired = fi["status"] in ("pending", "created") and fi["expiration_time"] < time.time()
        if expired and self.expired_invite_status:
            out["status"] = self.expired_invite_status
        if fi["declined"] and self.declined_invite_status:
            out["status"] = self.declined_invite_status
        return out

    def document_json(self, doc: dict) -> dict:
        roles = self._roles(doc)
        role_by_name = {r["name"]: r for r in roles}
        return {
            "id": doc["id"], "document_name": doc["document_name"], "user_id": doc["user_id"],
            "owner": doc["owner"], "created": str(doc["created"]), "updated": str(doc["updated"]),
            "page_count": str(doc["page_count"]), "origin_document_id": None,
            "roles": roles,
            "fields": [{"id": doc["role_ids"].get(f["role"], "") + str(i), "type": f["type"],
                        "role_id": role_by_name[f["role"]]["unique_id"], "role": f["role"],
                        "json_attributes": {k: f.get(k) for k in ("x", "y", "width", "height", "page_number",
                                                                  "required", "label", "name")}}
                       for i, f in enumerate(doc["fields"])],
            "field_invites": [self._fi_public(fi) for fi in doc["field_invites"]],
            "requests": [{k: v for k, v in rq.items() if not k.startswith("_")} for rq in doc["requests"]],
            "signatures": list(doc["signatures"]),
            "routing_details": [{"cc": list(doc["cc"]), "cc_step": list(doc["cc_step"]),
                                 "viewers": list(doc["viewers"])}] if doc["invite_meta"] else [],
            "viewer_field_invites": list(doc["viewers"]),
            "document_group_info": {},
        }

    def h_get_document(self, req: Request, doc_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        with self.lock:
            return json_response(self.document_json(doc))

    # ------------------------------------------------------------------------------------------------ files
    def signed_pdf(self, doc: dict, with_history: bool) -> bytes:
        signers = [fi["email"] for fi in doc["field_invites"] if fi["status"] == "fulfilled"]
        signers += [r["signer_email"] for r in doc["requests"] if r["signature_id"]]
        n = max(doc["page_count"], 1)
        pages = [f"{doc['document_name']} - page {i + 1} of {n}" for i in range(n)]
        prefilled = [f"{f['name']}: {f['prefilled_text']}" for f in doc["fields"] if f.get("prefilled_text")]
        if prefilled:  # templates.py: prefilled text fields show in the signed copy
            pages[0] += "\n" + "\n".join(prefilled)
        pages[-1] += "\n" + "\n".join(f"Signed by {e}" for e in signers)
        if with_history:
            lines = ["Document History", f"Document ID: {doc['id']}"]
            lines += [f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(h['created']))} UTC  {h['event']}  "
                      f"{h.get('email') or ''}" for h in doc["history"]]
            pages.append("\n".join(lines))
        return make_pdf(pages, title=doc["document_name"])

    def h_download(self, req: Request, doc_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        typ = req.query.get("type", "collapsed")
        if typ not in ("collapsed", "zip", "email"):
            return _err(65536, "type must be one of: collapsed, zip, email.")
        with self.lock:
            self._history(doc, "document_downloaded", user)
            pdf = self.signed_pdf(doc, req.query.get("with_history") in self.with_history_values)
        fname = doc["document_name"]
        if typ == "zip":
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as z:
                z.writestr(f"{fname}.pdf", pdf)
            return Response(200, buf.getvalue(), {"Content-Type": "application/zip",
                                                  "Content-Disposition": f'attachment; filename="{fname}.zip"'})
        return Response(200, pdf, {"Content-Type": "application/pdf",
                                   "Content-Disposition": f'attachment; filename="{fname}.pdf"'})

    def h_history(self, req: Request, doc_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        with self.lock:
            hist = [dict(h) for h in doc["history"]]
        if self.history_shape == "object":
            emails = [e for e in self.sent_emails if e["document_id"] == doc_id]
            return json_response({"document_history": hist, "email_history_events": [
                {"email": e["to"], "event": e["kind"], "created": int(e["ts"])} for e in emails]})
        return json_response(hist)
