"""signNow templates and prefilled text (documented endpoints):

* ``GET /user/documentsv2`` — the user's documents and templates (``template: true``), each with ``roles``
  and ``fields`` (reading chosen here for the template list: signNow has no separate list endpoint in the
  references we follow; recorded in docs/decisions.md).
* ``POST /template/{id}/copy`` ``{document_name?}`` → ``{id, name}``: a new document with the template's
  fields and roles.  Unknown or deleted template → 404 65582; a plain document → 400 65536.
* ``PUT /v2/documents/{id}/prefill-texts`` ``{fields:[{field_name, prefilled_text}]}`` → 204.  Each name
  must be a text field of the document (400 65536 "Field … not found" otherwise); not after an invite.

Test API: ``add_template(name, fields, owner=None)`` (fields ``{"type","role","name"}``), ``delete_template(id)``.
The prefilled values are printed in the signed PDF (``signed_pdf``), so a test can see them.
"""
from __future__ import annotations

import time

from ..base import Request, Response, json_response
from ..pdf import make_pdf
from ..provider import new_id
from .common import _err, _not_found


class TemplatesMixin:
    """Mixin of ``SignNowEmulator`` (state lives there)."""

    def _template_routes(self):
        r = self.add_route
        r("GET", r"^/user/documentsv2$", self.h_documents_v2)
        r("POST", r"^/template/(?P<tid>[0-9a-f]+)/copy$", self.h_template_copy)
        r("PUT", r"^/v2/documents/(?P<doc_id>[0-9a-f]+)/prefill-texts$", self.h_prefill_texts)

    # ------------------------------------------------------------------------------------------ test API
    def add_template(self, name: str, fields: list[dict], owner: str | None = None) -> str:
        owner = owner or next(iter(self.users))
        tid = new_id()
        pdf = make_pdf([f"{name}\n" + "\n".join(f"[{f['type']} for {f['role']}: {f['name']}]" for f in fields)],
                       title=name)
        doc = {"id": tid, "document_name": name, "owner": owner, "user_id": self.user_ids[owner.lower()],
               "created": int(time.time()), "updated": int(time.time()), "pdf": pdf, "page_count": 1,
               "fields": [{"x": 60, "y": 100 + 40 * i, "width": 200, "height": 30, "page_number": 0,
                           "required": True, "label": f["name"], **f} for i, f in enumerate(fields)],
               "role_ids": {}, "field_invites": [], "requests": [], "signatures": [], "cc": [], "cc_step": [],
               "viewers": [], "history": [], "staged_invites": [], "cancelled_invites": [], "deleted_invites": [],
               "invite_meta": {}, "completed": False, "template": True}
        with self.lock:
            self.documents[tid] = doc
        return tid

    def delete_template(self, tid: str) -> None:
        with self.lock:
            self.documents.pop(tid, None)

    # ------------------------------------------------------------------------------------------ handlers
    def h_documents_v2(self, req: Request) -> Response:
        user, err = self._user_or_401(req)
        if err:
            return err
        with self.lock:
            mine = [d for d in self.documents.values() if d["owner"].lower() == user.lower()]
            out = [{**self.document_json(d), "template": bool(d.get("template"))} for d in mine]
        return json_response(out)

    def h_template_copy(self, req: Request, tid: str) -> Response:
        user, template, err = self._doc(req, tid)
        if err:
            return err
        if not template.get("template"):
            return _err(65536, "Document is not a template.")
        try:
            body = req.json() if req.body else {}
        except ValueError:
            return _err(65536, "Invalid JSON.")
        name = (body or {}).get("document_name") or template["document_name"]
        if not isinstance(name, str):
            return _err(65536, "document_name must be a string.")
        doc_id = new_id()
        with self.lock:
            doc = {**{k: v for k, v in template.items() if k != "template"}, "id": doc_id, "document_name": name,
                   "created": int(time.time()), "updated": int(time.time()),
                   "fields": [dict(f) for f in template["fields"]], "role_ids": {}, "field_invites": [],
                   "requests": [], "signatures": [], "history": [], "origin_template_id": tid}
            self.documents[doc_id] = doc
            self._history(doc, "created_document", user)
        return json_response({"id": doc_id, "name": name})

    def h_prefill_texts(self, req: Request, doc_id: str) -> Response:
        user, doc, err = self._doc(req, doc_id)
        if err:
            return err
        try:
            body = req.json()
        except ValueError:
            return _err(65536, "Invalid JSON.")
        fields = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(fields, list) or not fields:
            return _err(65536, "fields must not be empty.")
        with self.lock:
            if doc.get("template"):
                return _err(65536, "Document is a template.")
            if any(fi["status"] in ("pending", "created", "fulfilled") for fi in doc["field_invites"]):
                return _err(65536, "Document has a pending invite and cannot be edited.")
            by_name = {f.get("name"): f for f in doc["fields"] if f["type"] == "text"}
            for i, f in enumerate(fields):
                if not isinstance(f, dict) or not isinstance(f.get("field_name"), str):
                    return _err(65536, f"fields[{i}].field_name is required.")
                if not isinstance(f.get("prefilled_text"), str):
                    return _err(65536, f"fields[{i}].prefilled_text must be a string.")
                if f["field_name"] not in by_name:
                    return _err(65536, f"Field {f['field_name']} not found in the document.")
            for f in fields:
                by_name[f["field_name"]]["prefilled_text"] = f["prefilled_text"]
            doc["updated"] = int(time.time())
        return Response(204, b"", {})


__all__ = ["TemplatesMixin", "_not_found"]
