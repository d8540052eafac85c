"""signNow document groups (providers spec §1.11): several documents, one invite, one signed bundle.

* ``POST /documentgroup`` ``{document_ids[], group_name}`` → ``{id}``: 1–10 documents the caller owns,
  none a template, none already in a group (65536).
* ``POST /documentgroup/{id}/groupinvite`` ``{invite_steps:[{order, invite_emails:[{email, subject?,
  message?, expiration_days?}], invite_actions:[{email, role_name, action: sign|view, document_id}]}]}``
  → ``{id, pending_invite_link: null}``.  Every role of every document needs a ``sign`` action; each
  action's e-mail must be among its step's ``invite_emails``; a second invite → 65629.  Step 1 is e-mailed.
* ``GET /documentgroup/{id}/groupinvite/{invite_id}`` → ``{invite:{id, status, steps:[{id, status, order,
  actions:[{action, email, document_id, status, role_name}]}]}}`` (status pending | fulfilled | cancelled).
* ``POST /documentgroup/{id}/groupinvite/{invite_id}/cancelinvite`` → ``{status: "success"}``.
* ``POST /documentgroup/{id}/downloadall`` ``{type: merged|zip, with_history: no|after_each_document|
  after_merged_pdf}`` → one PDF (merged): every document's pages, signatures and the history pages.

Test API: ``sign_group(group_id, email)`` (every action of that signer in the open step), ``groups``.
"""
from __future__ import annotations

import time

from ..base import Request, Response, json_response
from ..pdf import make_pdf
from ..provider import as_int, is_email, new_id
from .common import _err, _not_found

MAX_DOCUMENTS = 10


class DocumentGroupsMixin:
    """Mixin of ``SignNowEmulator`` (state lives there)."""

    def _group_routes(self):
        r = self.add_route
        r("POST", r"^/documentgroup$", self.h_group_create)
        r("POST", r"^/documentgroup/(?P<gid>[0-9a-f]+)/groupinvite$", self.h_group_invite)
        r("GET", r"^/documentgroup/(?P<gid>[0-9a-f]+)/groupinvite/(?P<iid>[0-9a-f]+)$", self.h_group_invite_get)
        r("POST", r"^/documentgroup/(?P<gid>[0-9a-f]+)/groupinvite/(?P<iid>[0-9a-f]+)/cancelinvite$",
          self.h_group_cancel)
        r("POST", r"^/documentgroup/(?P<gid>[0-9a-f]+)/downloadall$", self.h_group_download)

    @property
    def groups(self) -> dict:
        if not hasattr(self, "_groups"):
            self._groups = {}
        return self._groups

    def _group(self, req: Request, gid: str):
        user, err = self._user_or_401(req)
        if err:
            return None, None, err
        group = self.groups.get(gid)
        if group is None or group["owner"].lower() != user.lower():
            return user, None, _not_found()
        return user, group, None

    def _body(self, req: Request):
        try:
            body = req.json() if req.body else {}
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    # ------------------------------------------------------------------------------------------ handlers
    def h_group_create(self, req: Request) -> Response:
        user, err = self._user_or_401(req)
        if err:
            return err
        body = self._body(req)
        if body is None:
            return _err(65536, "Invalid JSON.")
        ids, name = body.get("document_ids"), body.get("group_name")
        if not isinstance(ids, list) or not ids:
            return _err(65536, "document_ids must not be empty.")
        if len(ids) > MAX_DOCUMENTS:
            return _err(65536, f"A document group can contain up to {MAX_DOCUMENTS} documents.")
        if not isinstance(name, str) or not name.strip():
            return _err(65536, "group_name is required.")
        with self.lock:
            for doc_id in ids:
                doc = self.documents.get(doc_id)
                if not doc or doc["owner"].lower() != user.lower():
                    return _not_found()
                if doc.get("template"):
                    return _err(65536, "A template cannot be added to a document group.")
                if doc.get("group_id"):
                    return _err(65536, "Document is already in a document group.")
            gid = new_id()
            self.groups[gid] = {"id": gid, "name": name, "owner": user, "document_ids": list(ids), "invite": None}
            for doc_id in ids:
                self.documents[doc_id]["group_id"] = gid
        return json_response({"id": gid})

    def h_group_invite(self, req: Request, gid: str) -> Response:
        user, group, err = self._group(req, gid)
        if err:
            return err
        body = self._body(req)
        steps = (body or {}).get("invite_steps")
        if not isinstance(steps, list) or not steps:
            return _err(65536, "invite_steps must not be empty.")
        with self.lock:
            if group["invite"] and group["invite"]["status"] != "cancelled":
                return _err(65629, "Could not create duplicate group invite")
            signed_roles = set()
            out_steps = []
            for i, step in enumerate(steps):
                w = f"invite_steps[{i}]."
                if not isinstance(step, dict) or as_int(step.get("order")) is None or as_int(step["order"]) < 1:
                    return _err(65536, f"{w}order must be an integer starting from 1.")
                emails = step.get("invite_emails")
                if not isinstance(emails, list) or not emails or not all(
                        isinstance(e, dict) and is_email(e.get("email")) for e in emails):
                    return _err(65536, f"{w}invite_emails must be a non-empty array of emails.")
                allowed = {e["email"].lower() for e in emails}
                actions = step.get("invite_actions")
                if not isinstance(actions, list) or not actions:
                    return _err(65536, f"{w}invite_actions must not be empty.")
                out_actions = []
                for j, a in enumerate(actions):
                    aw = f"{w}invite_actions[{j}]."
                    if not isinstance(a, dict) or a.get("action") not in ("sign", "view"):
                        return _err(65536, f"{aw}action must be one of: sign, view.")
                    if str(a.get("email", "")).lower() not in allowed:
                        return _err(65536, f"{aw}email must be one of the step's invite_emails.")
                    if a.get("document_id") not in group["document_ids"]:
                        return _err(65536, f"{aw}document_id is not in the document group.")
                    roles = {r["name"] for r in self._roles(self.documents[a["document_id"]])}
                    if a["action"] == "sign":
                        if a.get("role_name") not in roles:
                            return _err(65536, f"Role {a.get('role_name')} does not exist on document")
                        signed_roles.add((a["document_id"], a["role_name"]))
                    out_actions.append({"action": a["action"], "email": a["email"], "document_id": a["document_id"],
                                        "role_name": a.get("role_name"), "status": "created"})
                out_steps.append({"id": new_id(), "order": as_int(step["order"]), "status": "created",
                                  "actions": out_actions, "emails": emails})
            for doc_id in group["document_ids"]:
                for role in self._roles(self.documents[doc_id]):
                    if (doc_id, role["name"]) not in signed_roles:
                        return _err(65536, f"Role {role['name']} of document {doc_id} has no sign action.")
            invite = {"id": new_id(), "status": "pending", "steps": sorted(out_steps, key=lambda s: s["order"])}
            group["invite"] = invite
            self._group_advance(group)
        return json_response({"id": invite["id"], "pending_invite_link": None})

    def _group_advance(self, group: dict) -> None:
        invite = group["invite"]
        for step in invite["steps"]:
            if step["status"] == "fulfilled":
                continue
            if step["status"] == "created":
                step["status"] = "pending"
                for a in step["actions"]:
                    a["status"] = "pending"
                for e in step["emails"]:
                    self._email(self.documents[group["document_ids"][0]], "invite", e["email"], group_id=group["id"],
                                subject=e.get("subject"))
            return
        invite["status"] = "fulfilled"

    def h_group_invite_get(self, req: Request, gid: str, iid: str) -> Response:
        user, group, err = self._group(req, gid)
        if err:
            return err
        invite = group["invite"]
        if not invite or invite["id"] != iid:
            return _not_found()
        with self.lock:
            steps = [{k: v for k, v in s.items() if k != "emails"} for s in invite["steps"]]
            return json_response({"invite": {"id": invite["id"], "status": invite["status"], "steps": steps}})

    def h_group_cancel(self, req: Request, gid: str, iid: str) -> Response:
        user, group, err = self._group(req, gid)
        if err:
            return err
        invite = group["invite"]
        if not invite or invite["id"] != iid:
            return _not_found()
        with self.lock:
            if invite["status"] != "pending":
                return _err(65536, f"The invite is already {invite['status']}.")
            invite["status"] = "cancelled"
        return json_response({"status": "success"})

    def h_group_download(self, req: Request, gid: str) -> Response:
        user, group, err = self._group(req, gid)
        if err:
            return err
        body = self._body(req) or {}
        if body.get("type", "merged") not in ("merged", "zip"):
            return _err(65536, "type must be one of: merged, zip.")
        history = body.get("with_history", "no")
        if history not in ("no", "after_each_document", "after_merged_pdf"):
            return _err(65536, "with_history must be one of: no, after_each_document, after_merged_pdf.")
        with self.lock:
            pages = []
            signed = {a["email"] for s in (group["invite"] or {}).get("steps", []) for a in s["actions"]
                      if a["status"] == "fulfilled"}
            for doc_id in group["document_ids"]:
                doc = self.documents[doc_id]
                pages.append(f"{doc['document_name']}\n" + "\n".join(f"Signed by {e}" for e in sorted(signed)))
            if history != "no":
                pages.append("Document group history\n" + "\n".join(
                    f"{h['event']} {h.get('email') or ''}" for d in group["document_ids"]
                    for h in self.documents[d]["history"]))
        return Response(200, make_pdf(pages, title=group["name"]), {"Content-Type": "application/pdf"})

    # ------------------------------------------------------------------------------------------ signer
    def sign_group(self, gid: str, email: str) -> None:
        with self.lock:
            group = self.groups[gid]
            invite = group["invite"]
            if not invite or invite["status"] != "pending":
                raise ValueError("the group invite is not pending")
            step = next(s for s in invite["steps"] if s["status"] == "pending")
            mine = [a for a in step["actions"] if a["email"].lower() == email.lower() and a["status"] == "pending"]
            if not mine:
                raise ValueError(f"nothing for {email} to sign in the open step")
            for a in mine:
                a["status"] = "fulfilled"
                self._history(self.documents[a["document_id"]], "document_signing_session_completed", email)
            if all(a["status"] == "fulfilled" for a in step["actions"]):
                step["status"] = "fulfilled"
                self._group_advance(group)
            group["updated"] = time.time()
