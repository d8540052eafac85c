"""Bitrix24 Sign for HR (KEDO): ``sign.b2e.*`` state, validation and the signing hooks (esign-providers §3)."""
from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
from datetime import datetime, timedelta, timezone

from ..pdf import is_pdf, make_pdf
from .core import B24Error, iso, rand_hex

ROLES = ("signer", "assignee", "reviewer", "editor")
SINGLE_ROLES = ("assignee", "reviewer", "editor")
PARTY = {"signer": 0, "assignee": 1, "reviewer": 2, "editor": 3}
# The codes the core reports (sign's B2e document and member statuses), not the docs' examples.
DOC_STATE_NAMES = {"new": "New", "signing": "Signing in progress", "stopped": "Stopped", "done": "Signed"}
# main/lib/io/path.php (Path::validateFilename): these characters, control bytes and U+202E are refused.
INVALID_FILENAME_CHARS = "\\/:*?\"'<>|~#&;"
INVALID_FILENAME_RE = re.compile("[" + re.escape(INVALID_FILENAME_CHARS) + "\x00-\x1f\u202e]")
MEMBER_STATE_NAMES = {"wait": "Waiting", "ready": "Ready to sign", "done": "Signed", "refused": "Refused",
                      "stopped": "Stopped"}
OPEN_MEMBER = ("wait", "ready")


def valid_filename(name) -> bool:
    """The core's ``Path::validateFilename``: a non-blank string without any refused character."""
    return isinstance(name, str) and bool(name.strip()) and not INVALID_FILENAME_RE.search(name)


def parse_iso8601(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
        return True
    except (ValueError, AttributeError):
        return False


class SignB2e:
    def __init__(self, portal, region_document_types: list | None = None):
        self.portal = portal
        now = datetime.now(timezone.utc)
        self.providers: list[dict] = [{
            "code": "ses-com", "uid": str(uuid.uuid4()), "name": "Bitrix24 Sign (SES)",
            "date": now.isoformat(timespec="seconds"),
            "expires": (now + timedelta(days=365)).isoformat(timespec="seconds"),
        }]
        self.region_document_types = region_document_types or ["12.999"]
        self.documents: dict[str, dict] = {}
        self.safe: list[dict] = []  # mysafe.tail rows
        self._safe_seq = 0

    @property
    def lock(self):
        return self.portal.lock

    def error(self, desc: str, code: str = "BAD_REQUEST"):
        return B24Error(code, desc, self.portal.cloud.sign_error_status)

    def add_provider(self, name: str = "Extra provider", expired: bool = False, code: str = "ses-ru") -> dict:
        now = datetime.now(timezone.utc)
        p = {"code": code, "uid": str(uuid.uuid4()), "name": name, "date": now.isoformat(timespec="seconds"),
             "expires": (now + timedelta(days=-1 if expired else 365)).isoformat(timespec="seconds")}
        self.providers.append(p)
        return p

    # ------------------------------------------------------------------ REST
    def provider_list(self, params: dict) -> list:
        crm_id, uid = params.get("companyCrmId"), params.get("companyUuid")
        if not crm_id and not uid:
            raise self.error("Parameter 'companyUuid' or 'companyCrmId' is required")
        if crm_id:
            item = self.portal.crm.get(4, crm_id) if str(crm_id).isdigit() else None
            if not item or item.get("isMyCompany") != "Y":
                raise self.error(f"My company with id {crm_id} not found", "510")
        else:
            raise self.error("Company not found", "510")
        limit = int(params.get("limit") or 100)
        offset = int(params.get("offset") or 0)
        return [dict(p) for p in self.providers][offset:offset + limit]

    def _resolve_member(self, m: dict, where: str = "members") -> int:
        if not isinstance(m, dict):
            raise self.error("Employee ID is required")
        if m.get("employeeCode") not in (None, ""):
            raise self.error(f"Employee with code {m['employeeCode']} was not found")
        if m.get("employeeId") not in (None, ""):
            raise self.error(f"Employee with ID {m['employeeId']} was not found")
        uid = m.get("userId")
        if uid in (None, ""):
            raise self.error("Employee ID is required")
        user = self.portal.user(uid)
        if user is None or not user.get("ACTIVE"):
            raise self.error("Could not find employee for specified User ID")
        return int(uid)

    def send(self, ctx, params: dict) -> dict:
        f = params.get("fields")
        if not isinstance(f, dict) or not f:
            raise self.error("Empty request fields")
        if not f.get("companyProviderUid"):
            raise self.error("[companyProviderUid] field is required")
        if not isinstance(f.get("responsible"), dict) or not f["responsible"]:
            raise self.error("The responsible field is required")
        company = f.get("company")
        if not isinstance(company, dict) or not (company.get("crmId") or company.get("uuid")):
            raise self.error("Company not found")
        if company.get("uuid") and not company.get("crmId"):
            raise self.error("humanresources module is not installed")
        item = self.portal.crm.get(4, company["crmId"]) if str(company["crmId"]).isdigit() else None
        if not item or item.get("isMyCompany") != "Y":
            raise self.error("Company not found")
        members = f.get("members")
        if isinstance(members, dict):
            members = list(members.values())
        if not isinstance(members, list):
            members = []
        for m in members:
            role = m.get("role") if isinstance(m, dict) else None
            if role not in ROLES:
                raise self.error(f"Invalid role {role}")
        roles = [m["role"] for m in members]
        if "signer" not in roles:
            raise self.error("At least one signing party with role signer is required")
        if "assignee" not in roles:
            raise self.error("At least one signing party with role assignee is required")
        member_users = [(self._resolve_member(m), m["role"]) for m in members]
        # The core keeps one assignee, reviewer and editor: each later one replaces the earlier.
        for role in SINGLE_ROLES:
            last = [mu for mu in member_users if mu[1] == role][-1:]
            member_users = [mu for mu in member_users if mu[1] != role or mu in last]
        resp_role = f["responsible"].get("role") or "assignee"
        if resp_role not in ROLES:
            raise self.error(f"Invalid role {resp_role}")
        responsible = self._resolve_member(f["responsible"])
        files = f.get("files")
        if isinstance(files, dict):
            files = list(files.values())
        if not files:
            raise self.error("At least one file is required to sign the document")
        if len(files) > 1:
            raise self.error("Signing multiple files is currently not supported")
        file = files[0] if isinstance(files[0], dict) else {}
        if file.get("fileType") != "application/pdf":
            raise self.error("The specified file type is not supported")
        name = file.get("fileName")
        if not valid_filename(name):
            raise self.error("[files] Invalid file name.")
        if "." not in name.strip(".") or name.endswith("."):
            raise self.error("Invalid file name. File extension is not specified")
        if name.rsplit(".", 1)[1].lower() != "pdf":
            raise self.error("The specified file extension is not supported")
        rdt = f.get("regionDocumentType")
        if not rdt:
            raise self.error("Region document type is required. Use value '12.999' as a default value")
        if str(rdt) not in self.region_document_types:
            raise self.error("Region document type is not valid. Use value '12.999' as a default value")
        provider = next((p for p in self.providers if p["uid"] == f["companyProviderUid"]), None)
        if provider is None:
            raise self.error("Signing provider is not available")
        if datetime.fromisoformat(provider["expires"]) < datetime.now(timezone.utc):
            raise self.error("Signing provider has expired")
        ext = f.get("externalSettings") if isinstance(f.get("externalSettings"), dict) else {}
        if not ext.get("externalDateCreate"):
            raise self.error("External date create field is required")
        if not ext.get("externalId"):
            raise self.error("External ID field is required")
        if not parse_iso8601(ext["externalDateCreate"]):
            raise self.error("External date create invalid field value")
        if len(str(ext["externalId"])) > 255:
            raise self.error("External ID maximum length of 255 is exceeded")
        try:
            content = base64.b64decode(file.get("fileContent") or "", validate=True)
        except (binascii.Error, ValueError):
            raise B24Error("INTERNAL_ERROR", "Internal error", 500)
        if not is_pdf(content):
            raise B24Error("INTERNAL_ERROR", "Internal error", 500)
        doc_uid = str(uuid.uuid4())
        doc = {
            "uid": doc_uid, "state": "new", "title": name.rsplit(".", 1)[0], "file_name": name, "content": content,
            "external_id": str(ext["externalId"]), "external_date_create": ext["externalDateCreate"],
            "provider_uid": provider["uid"], "company_crm_id": int(company["crmId"]),
            "responsible": responsible, "creator_id": ctx.token.user_id, "created": time.time(), "signed_file": None,
            "members": [{"uid": rand_hex(8), "role": role, "party": PARTY[role], "userId": uid,
                         "state": "ready" if role in ("signer", "assignee") else "wait"}
                        for uid, role in member_users],
            "language": params.get("language") or f.get("language") or "en",
        }
        with self.lock:
            self.documents[doc_uid] = doc
        return self.render(doc)

    def render(self, doc: dict) -> dict:
        return {
            "uid": doc["uid"],
            "state": {"code": doc["state"], "name": DOC_STATE_NAMES.get(doc["state"], doc["state"])},
            "members": [{"uid": m["uid"], "role": m["role"], "party": m["party"], "user": {"userId": m["userId"]},
                         "state": {"code": m["state"], "name": MEMBER_STATE_NAMES.get(m["state"], m["state"])}}
                        for m in doc["members"]],
        }

    def get(self, params: dict) -> dict:
        uid = params.get("uid")
        if not uid:
            raise self.error("Document UID is required")
        doc = self.documents.get(uid)
        if doc is None:  # the core's RestException for a missing document carries no code
            raise B24Error("", "Document not found.", 400)
        return self.render(doc)

    def mysafe_tail(self, ctx, params: dict) -> list:
        limit = max(1, min(1000, int(params.get("limit") or 20)))
        offset = int(params.get("offset") or 0)
        rows = sorted(self.safe, key=lambda r: r["id"], reverse=True)[offset:offset + limit]
        out = []
        for r in rows:
            row = {k: v for k, v in r.items() if k not in ("file_id", "document_uid")}
            row["file_url"] = self.portal.download_url("sign.b2e", r["file_id"], ctx.token.token)
            out.append(row)
        return out

    # ------------------------------------------------------------------ hooks (what people do in the Bitrix24 UI)
    def _events(self, doc: dict, changes: list[tuple[str, dict]]) -> list:
        out = []
        for event, data in changes:
            out.extend(self.portal.fire_event(event, data=data))
        return out

    def member_action(self, document_uid: str, user_id: int, action: str) -> list:
        changes = []
        with self.lock:
            doc = self.documents[document_uid]
            if doc["state"] in ("done", "stopped"):
                raise ValueError(f"document {document_uid} is already {doc['state']}")
            member = next((m for m in doc["members"] if m["userId"] == int(user_id) and m["state"] in OPEN_MEMBER
                           and m["role"] in ("signer", "assignee")), None)
            if member is None:
                raise KeyError(f"no waiting signer/assignee user {user_id} on {document_uid}")
            if action == "signs":
                member["state"] = "done"
                changes.append(("ONSIGNB2EMEMBERSTATUSCHANGED", {"memberUid": member["uid"], "documentUid": doc["uid"],
                                                                 "statusCode": "done", "statusName": "Signed"}))
                pending = [m for m in doc["members"] if m["role"] in ("signer", "assignee") and m["state"] in OPEN_MEMBER]
                if pending:
                    if doc["state"] != "signing":
                        doc["state"] = "signing"
                        changes.append(("ONSIGNB2EDOCUMENTSTATUSCHANGED", {
                            "documentUid": doc["uid"], "statusCode": "signing", "statusName": "Signing in progress"}))
                else:
                    doc["state"] = "done"
                    signed = make_pdf([f"{doc['title']}", "Signed electronically via Bitrix24 Sign",
                                       "Signers: " + ", ".join(f"user_{m['userId']}" for m in doc["members"])],
                                      title=f"{doc['title']} (signed)")
                    fid = self.portal.store_file(f"{doc['title']}.pdf", signed)
                    doc["signed_file"] = fid
                    self._safe_seq += 1
                    self.safe.append({"id": self._safe_seq, "title": doc["title"], "create_date": iso(doc["created"]),
                                      "signed_date": iso(time.time()), "creator_id": doc["creator_id"],
                                      "member_id": int(user_id), "role": member["role"], "file_id": fid,
                                      "document_uid": doc["uid"]})
                    changes.append(("ONSIGNB2EDOCUMENTSTATUSCHANGED", {
                        "documentUid": doc["uid"], "statusCode": "done", "statusName": "Signed"}))
            else:
                member["state"] = "refused"
                changes.append(("ONSIGNB2EMEMBERSTATUSCHANGED", {"memberUid": member["uid"], "documentUid": doc["uid"],
                                                                 "statusCode": "refused", "statusName": "Refused"}))
                doc["state"] = "stopped"
                for m in doc["members"]:
                    if m["state"] in OPEN_MEMBER:
                        m["state"] = "stopped"
                changes.append(("ONSIGNB2EDOCUMENTSTATUSCHANGED", {
                    "documentUid": doc["uid"], "statusCode": "stopped", "statusName": "Stopped"}))
        return self._events(doc, changes)

    def delete(self, document_uid: str) -> None:
        """An HR manager deletes the document in Bitrix24 Sign (no event is fired)."""
        with self.lock:
            del self.documents[document_uid]

    def stop(self, document_uid: str) -> list:
        with self.lock:
            doc = self.documents[document_uid]
            doc["state"] = "stopped"
            for m in doc["members"]:
                if m["state"] in OPEN_MEMBER:
                    m["state"] = "stopped"
        return self._events(doc, [("ONSIGNB2EDOCUMENTSTATUSCHANGED", {
            "documentUid": doc["uid"], "statusCode": "stopped", "statusName": "Stopped"})])
