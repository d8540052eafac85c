"""CRM, Drive and document-generator state of one portal (the data side; REST methods live in methods.py)."""
from __future__ import annotations

import re
import time

from .core import iso

ENTITY_NAMES = {1: "lead", 2: "deal", 3: "contact", 4: "company", 7: "quote", 31: "smart_invoice"}


def is_dynamic(etid: int) -> bool:
    return 128 <= etid < 192 or etid >= 1030


def supported_type(etid: int) -> bool:
    return etid in ENTITY_NAMES or is_dynamic(etid)


def camel_to_upper(key: str) -> str:
    """``assignedById`` -> ``ASSIGNED_BY_ID``; ``ufCrm_contract`` -> ``UF_CRM_CONTRACT``; ``ufCrm5_12`` -> ``UF_CRM_5_12``."""
    m = re.match(r"^ufCrm(\d*)_(.*)$", key)
    if m:
        return "UF_CRM_" + (m.group(1) + "_" if m.group(1) else "") + m.group(2).upper()
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).upper()


def entity_id_for(portal, etid: int) -> str | None:
    """The user-field entity of a CRM type: CRM_DEAL, CRM_LEAD, CRM_SMART_INVOICE, CRM_<id> for a smart process."""
    if etid == 2:
        return "CRM_DEAL"
    if etid == 1:
        return "CRM_LEAD"
    if etid == 31:
        return "CRM_SMART_INVOICE"
    if is_dynamic(etid):
        t = next((t for t in portal.smart_types if t["entityTypeId"] == etid), None)
        return f"CRM_{t['id']}" if t else None
    return None


class Crm:
    def __init__(self, portal):
        self.portal = portal
        self.items: dict[tuple[int, int], dict] = {}
        self.file_fields: dict[tuple[int, int], dict[str, bool]] = {}  # (etid, id) -> {field: multiple}
        self._seq: dict[int, int] = {}
        self.comments: list[dict] = []
        self.disk: dict[int, dict] = {}
        self.documents: dict[int, dict] = {}
        self._ids = {"comment": 0, "disk": 0, "doc": 0, "fm": 0}
        self.read_scope: dict[int, str] = {}  # user id -> "all" | "own" | "none" (see can_read)
        self.add_company("My Company Ltd", my=True)

    @property
    def lock(self):
        return self.portal.lock

    def can_read(self, user: dict, item: dict) -> bool:
        """CRM read rights, simplified from Bitrix24's role permissions: administrators read everything;
        ``read_scope[user_id]`` is "all" (the default), "own" (items assigned to them) or "none"."""
        if user.get("ADMIN"):
            return True
        scope = self.read_scope.get(int(user["ID"]), "all")
        return scope == "all" or (scope == "own" and int(item.get("assignedById") or 0) == int(user["ID"]))

    def _next(self, etid: int) -> int:
        self._seq[etid] = self._seq.get(etid, 0) + 1
        return self._seq[etid]

    def _nid(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    # ------------------------------------------------------------------ adding data (test API)
    def add_item(self, entity_type_id: int, title: str = "", contact_ids=(), files: dict | None = None,
                 assigned_by_id: int = 1, **fields) -> int:
        etid = int(entity_type_id)
        with self.lock:
            iid = self._next(etid)
            now = iso(time.time())
            item = {"id": iid, "title": title, "assignedById": assigned_by_id, "createdBy": 1, "createdTime": now,
                    "updatedTime": now, "contactIds": list(contact_ids),
                    "contactId": list(contact_ids)[0] if contact_ids else None, "companyId": 0, "opened": "Y",
                    "entityTypeId": etid}
            if etid == 2:
                item.update({"stageId": "NEW", "categoryId": 0, "opportunity": 0, "currencyId": "USD"})
            elif is_dynamic(etid) or etid == 31:
                item.update({"stageId": f"DT{etid}_1:NEW", "categoryId": 1})
            item.update(fields)
            self.items[(etid, iid)] = item
            self.file_fields[(etid, iid)] = {}
            for fname, spec in (files or {}).items():
                self._set_file_field(etid, iid, fname, spec)
            return iid

    def _set_file_field(self, etid: int, iid: int, fname: str, spec) -> None:
        """spec: (name, bytes) or a list of them."""
        multiple = isinstance(spec, list)
        specs = spec if multiple else [spec]
        fids = [self.portal.store_file(n, d) for n, d in specs]
        self.items[(etid, iid)][fname] = fids if multiple else fids[0]
        self.file_fields[(etid, iid)][fname] = multiple

    def add_deal(self, title: str, contact_ids=(), files: dict | None = None, assigned_by_id: int = 1, **fields) -> int:
        return self.add_item(2, title, contact_ids, files, assigned_by_id, **fields)

    def add_contact(self, name: str, last_name: str = "", emails=(), phones=(), **fields) -> int:
        with self.lock:
            fm_e = [{"ID": str(self._nid("fm")), "VALUE_TYPE": vt, "VALUE": v, "TYPE_ID": "EMAIL"}
                    for v, vt in (e if isinstance(e, tuple) else (e, "WORK") for e in emails)]
            fm_p = [{"ID": str(self._nid("fm")), "VALUE_TYPE": vt, "VALUE": v, "TYPE_ID": "PHONE"}
                    for v, vt in (p if isinstance(p, tuple) else (p, "WORK") for p in phones)]
        return self.add_item(3, f"{name} {last_name}".strip(), name=name, lastName=last_name, fm={"EMAIL": fm_e,
                             "PHONE": fm_p}, **fields)

    def add_company(self, title: str, my: bool = False, **fields) -> int:
        return self.add_item(4, title, isMyCompany="Y" if my else "N", **fields)

    def add_smart_item(self, entity_type_id: int, title: str = "", **kw) -> int:
        return self.add_item(entity_type_id, title, **kw)

    def add_invoice(self, title: str = "", **kw) -> int:
        return self.add_item(31, title, **kw)

    def get(self, etid: int, iid: int) -> dict | None:
        return self.items.get((int(etid), int(iid)))

    def file_bytes(self, etid: int, iid: int, fname: str):
        """Bytes of a file field (list for multiple) as currently stored."""
        item = self.get(etid, iid)
        v = item.get(fname)
        if isinstance(v, list):
            return [self.portal.files[f]["data"] for f in v]
        return self.portal.files[v]["data"] if v else None

    # ------------------------------------------------------------------ timeline
    def add_comment(self, entity_type: str, entity_id: int, comment: str, files: list, author_id: int) -> int:
        with self.lock:
            cid = self._nid("comment")
            self.comments.append({"id": cid, "entity_type": entity_type.lower(), "entity_id": int(entity_id),
                                  "comment": comment, "files": files, "author_id": author_id,
                                  "created": iso(time.time())})
            return cid

    def comments_for(self, entity_type: str, entity_id: int) -> list[dict]:
        """Timeline comments of an item; each has ``files`` = [(name, bytes)] decoded from base64."""
        return [c for c in self.comments if c["entity_type"] == entity_type.lower() and c["entity_id"] == int(entity_id)]

    # ------------------------------------------------------------------ Drive
    def add_disk_file(self, name: str, data: bytes) -> int:
        fid = self.portal.store_file(name, data)
        with self.lock:
            did = self._nid("disk")
            self.disk[did] = {"id": did, "file_id": fid, "name": name, "created": iso(time.time())}
            return did

    # ------------------------------------------------------------------ document generator
    def add_generated_document(self, entity_type_id: int, entity_id: int, pdf_bytes: bytes, pdf_ready: bool = True,
                               title: str = "Contract", docx_bytes: bytes = b"PK\x03\x04 docx placeholder") -> int:
        pdf_fid = self.portal.store_file(f"{title}.pdf", pdf_bytes)
        docx_fid = self.portal.store_file(f"{title}.docx", docx_bytes,
                                          "application/vnd.openxmlformats-officedocument.wordprocessingml.document")
        with self.lock:
            did = self._nid("doc")
            self.documents[did] = {"id": did, "title": title, "number": str(did), "templateId": 1,
                                   "entityTypeId": int(entity_type_id), "entityId": int(entity_id),
                                   "pdf_fid": pdf_fid, "docx_fid": docx_fid, "pdf_ready": pdf_ready,
                                   "createTime": iso(time.time())}
            return did

    def set_document_pdf_ready(self, doc_id: int, ready: bool = True) -> None:
        with self.lock:
            self.documents[doc_id]["pdf_ready"] = ready
