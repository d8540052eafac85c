"""REST methods for CRM, Drive, the document generator and sign.b2e (registered into methods.METHODS)."""
from __future__ import annotations

import base64
import binascii
import re
import time

from .core import B24Error, iso
from .crm import ENTITY_NAMES, camel_to_upper, entity_id_for, is_dynamic, supported_type
from .methods import method, needs_all_scopes, upper
from .portal import Ctx, MethodResult


# ====================================================================== CRM
def _etid(p) -> int:
    v = p.get("entityTypeId")
    try:
        etid = int(v)
    except (TypeError, ValueError):
        raise B24Error("ENTITY_TYPE_NOT_SUPPORTED", f"Entity type `{v}` is not supported", 400)
    if not supported_type(etid):
        raise B24Error("ENTITY_TYPE_NOT_SUPPORTED", f"Entity type `{etid}` is not supported", 400)
    return etid


def _item_or_404(portal, etid: int, iid):
    try:
        item = portal.crm.get(etid, int(iid))
    except (TypeError, ValueError):
        item = None
    if item is None:
        raise B24Error("NOT_FOUND", "Element not found", 400)
    return item


def render_item(ctx: Ctx, etid: int, item: dict) -> dict:
    portal = ctx.portal
    out = {k: v for k, v in item.items() if k not in ("fm",)}
    for fname, multiple in portal.crm.file_fields.get((etid, item["id"]), {}).items():
        def one(fid):
            return {"id": fid,
                    "url": f"/bitrix/services/main/ajax.php?action=crm.controller.item.getFile&SITE_ID=s1"
                           f"&entityTypeId={etid}&id={item['id']}&fieldName={fname}&fileId={fid}",
                    "urlMachine": portal.item_file_url(etid, item["id"], fname, fid, ctx.token.token)}
        v = item.get(fname)
        out[fname] = [one(f) for f in v] if multiple else (one(v) if v else None)
    return out


@method("crm.item.get", "crm")
def crm_item_get(ctx: Ctx, p):
    etid = _etid(p)
    item = _item_or_404(ctx.portal, etid, p.get("id"))
    if not ctx.portal.crm.can_read(ctx.user, item):  # crm ErrorCode::getAccessDeniedError
        raise B24Error("ACCESS_DENIED", "Access denied", 400)
    return {"item": render_item(ctx, etid, item)}


@method("crm.item.list", "crm")
def crm_item_list(ctx: Ctx, p):
    etid = _etid(p)
    filt = p.get("filter") if isinstance(p.get("filter"), dict) else {}
    rows = [it for (e, _), it in sorted(ctx.portal.crm.items.items()) if e == etid]
    for k, v in filt.items():
        key = k.lstrip("=@")
        vals = {str(x) for x in (v if isinstance(v, list) else [v])}
        rows = [r for r in rows if str(r.get(key)) in vals]
    start = int(p.get("start") or 0) if str(p.get("start") or "0").isdigit() else 0
    page = rows[start:start + 50]
    return MethodResult({"items": [render_item(ctx, etid, r) for r in page]}, total=len(rows),
                        next=start + 50 if start + 50 < len(rows) else None)


def _decode_file_value(portal, value):
    """[name, base64] -> new file id; {"id": n} -> keep; a list of those -> list."""
    if isinstance(value, dict) and "fileData" in value:
        value = value["fileData"]
    if isinstance(value, dict) and "id" in value:
        return int(value["id"])
    if isinstance(value, list) and len(value) == 2 and all(isinstance(x, str) for x in value):
        try:
            data = base64.b64decode(value[1], validate=True)
        except (binascii.Error, ValueError):
            raise B24Error("INVALID_ARG_VALUE", "Invalid file content (base64 expected)", 400)
        return portal.store_file(value[0], data)
    raise B24Error("INVALID_ARG_VALUE", "Invalid file field value: [name, base64] expected", 400)


def _registered_uf(portal, etid: int) -> set:
    return set(portal.userfields.get(entity_id_for(portal, etid) or "", {}))


@method("crm.item.update", "crm")
def crm_item_update(ctx: Ctx, p):
    portal = ctx.portal
    etid = _etid(p)
    item = _item_or_404(portal, etid, p.get("id"))
    fields = p.get("fields")
    if not isinstance(fields, dict) or not fields:
        raise B24Error("INVALID_ARG_VALUE", "Fields are empty", 400)
    with portal.lock:
        ff = portal.crm.file_fields.setdefault((etid, item["id"]), {})
        registered = _registered_uf(portal, etid)
        for k, v in fields.items():
            if k in ("id", "entityTypeId", "createdTime", "createdBy"):
                continue
            if k.startswith("ufCrm") and k not in item and camel_to_upper(k) not in registered:
                continue  # no such user field (never created, or deleted by an admin): Bitrix24 ignores it
            is_file = k in ff or (k.startswith("ufCrm") and isinstance(v, (list, dict)) and bool(v))
            if is_file and v not in ("", None, []):
                if isinstance(v, list) and v and isinstance(v[0], (list, dict)):  # several [name, base64] pairs
                    item[k] = [_decode_file_value(portal, x) for x in v]
                    ff[k] = True
                else:
                    fid = _decode_file_value(portal, v)
                    item[k] = [fid] if ff.get(k) else fid
                    ff.setdefault(k, False)
                continue
            if is_file:
                item[k] = [] if ff.get(k) else None
            else:
                item[k] = v
        item["updatedTime"] = iso(time.time())
    return {"item": render_item(ctx, etid, item)}


def _legacy_id(p):
    u = upper(p)
    iid = u.get("ID")
    if iid in (None, "") or not str(iid).isdigit() or int(iid) <= 0:
        raise B24Error("", "ID is not defined or invalid.", 400)
    return int(iid)


def _legacy(ctx: Ctx, etid: int, item: dict) -> dict:
    out = {}
    for k, v in item.items():
        if k in ("fm", "contactIds", "entityTypeId"):
            continue
        key = "ID" if k == "id" else "DATE_CREATE" if k == "createdTime" else "DATE_MODIFY" if k == "updatedTime" \
            else camel_to_upper(k)
        out[key] = v if isinstance(v, (list, dict)) or v is None else str(v)
    for fname, multiple in ctx.portal.crm.file_fields.get((etid, item["id"]), {}).items():
        def one(fid):
            return {"id": fid, "showUrl": f"/bitrix/components/bitrix/crm.deal.show/show_file.php?fileId={fid}",
                    "downloadUrl": ctx.portal.item_file_url(etid, item["id"], fname, fid, ctx.token.token)}
        v = item.get(fname)
        out[camel_to_upper(fname)] = [one(f) for f in v] if multiple else (one(v) if v else None)
    return out


@method("crm.deal.get", "crm")
def crm_deal_get(ctx: Ctx, p):
    item = ctx.portal.crm.get(2, _legacy_id(p))
    if item is None:
        raise B24Error("", "Not found", 400)
    return _legacy(ctx, 2, item)


@method("crm.deal.contact.items.get", "crm")
def crm_deal_contacts(ctx: Ctx, p):
    item = ctx.portal.crm.get(2, _legacy_id(p))
    if item is None:
        raise B24Error("", "Not found", 400)
    return [{"CONTACT_ID": cid, "SORT": 10 * (i + 1), "ROLE_ID": 0, "IS_PRIMARY": "Y" if i == 0 else "N"}
            for i, cid in enumerate(item.get("contactIds") or [])]


def _with_fm(ctx, etid, item):
    out = _legacy(ctx, etid, item)
    fm = item.get("fm") or {}
    out["HAS_EMAIL"] = "Y" if fm.get("EMAIL") else "N"
    out["HAS_PHONE"] = "Y" if fm.get("PHONE") else "N"
    for k in ("EMAIL", "PHONE"):
        if fm.get(k):
            out[k] = [dict(x) for x in fm[k]]
    return out


@method("crm.contact.get", "crm")
def crm_contact_get(ctx: Ctx, p):
    item = ctx.portal.crm.get(3, _legacy_id(p))
    if item is None:
        raise B24Error("", "Not found", 400)
    return _with_fm(ctx, 3, item)


@method("crm.company.get", "crm")
def crm_company_get(ctx: Ctx, p):
    item = ctx.portal.crm.get(4, _legacy_id(p))
    if item is None:
        raise B24Error("", "Not found", 400)
    return _with_fm(ctx, 4, item)


def _entity_type_id(name: str) -> int | None:
    name = str(name or "").lower()
    for etid, n in ENTITY_NAMES.items():
        if n == name:
            return etid
    m = re.match(r"^dynamic_(\d+)$", name)
    if m and is_dynamic(int(m.group(1))):
        return int(m.group(1))
    return None


@method("crm.timeline.comment.add", "crm")
def timeline_comment_add(ctx: Ctx, p):
    portal = ctx.portal
    fields = p.get("fields")  # lowercase only since crm 23.100.0
    if not isinstance(fields, dict) or not fields:
        raise B24Error("ERROR_ARGUMENT", "Required parameter 'fields' is empty", 400)
    f = upper(fields)
    if not f.get("ENTITY_ID"):
        raise B24Error("ERROR_ARGUMENT", "ENTITY_ID is not defined or invalid.", 400)
    etid = _entity_type_id(f.get("ENTITY_TYPE"))
    if etid is None:
        raise B24Error("ERROR_ARGUMENT", "ENTITY_TYPE is not defined or invalid.", 400)
    if portal.crm.get(etid, int(f["ENTITY_ID"])) is None:
        raise B24Error("NOT_FOUND", "Not found", 400)
    files = []
    raw = f.get("FILES") or []
    if isinstance(raw, dict):
        raw = list(raw.values())
    for entry in raw:
        if not (isinstance(entry, list) and len(entry) == 2):
            raise B24Error("ERROR_ARGUMENT", "FILES: [name, base64] pairs expected", 400)
        try:
            files.append((entry[0], base64.b64decode(entry[1], validate=True)))
        except (binascii.Error, ValueError, TypeError):
            raise B24Error("ERROR_ARGUMENT", "FILES: invalid base64 content", 400)
    for name, data in files:
        portal.crm.add_disk_file(name, data)  # saved to Drive
    return portal.crm.add_comment(f["ENTITY_TYPE"], int(f["ENTITY_ID"]), str(f.get("COMMENT") or ""), files,
                                  ctx.token.user_id)


# ====================================================================== Drive, document generator
@method("disk.file.get", "disk")
def disk_file_get(ctx: Ctx, p):
    portal = ctx.portal
    u = upper(p)
    try:
        d = portal.crm.disk.get(int(u.get("ID")))
    except (TypeError, ValueError):
        d = None
    if d is None:
        raise B24Error("ERROR_NOT_FOUND", f"Could not find entity with id '{u.get('ID')}'", 404)
    if not ctx.is_admin and ctx.token.user_id not in d.get("readers", {ctx.token.user_id}):
        raise B24Error("ACCESS_DENIED", "Access denied", 403)  # Disk's File::canRead, per user
    f = portal.files[d["file_id"]]
    return {"ID": str(d["id"]), "NAME": d["name"], "CODE": None, "STORAGE_ID": "1", "TYPE": "file", "PARENT_ID": "1",
            "DELETED_TYPE": "0", "CREATE_TIME": d["created"], "UPDATE_TIME": d["created"], "CREATED_BY": "1",
            "UPDATED_BY": "1", "SIZE": str(len(f["data"])),
            "DOWNLOAD_URL": portal.download_url("disk", d["file_id"], ctx.token.token),
            "DETAIL_URL": f"{portal.base_url}/docs/file/{d['name']}"}


def _render_doc(ctx: Ctx, d: dict) -> dict:
    portal, auth = ctx.portal, ctx.token.token
    ready = d["pdf_ready"]
    return {"id": d["id"], "title": d["title"], "number": d["number"], "templateId": d["templateId"],
            "entityTypeId": d["entityTypeId"], "entityId": d["entityId"], "createTime": d["createTime"],
            "downloadUrl": f"/bitrix/services/main/ajax.php?action=crm.documentgenerator.document.download&id={d['id']}",
            "downloadUrlMachine": portal.download_url("docgen", d["docx_fid"], auth),
            "pdfUrl": f"/bitrix/services/main/ajax.php?action=crm.documentgenerator.document.getPdf&id={d['id']}"
            if ready else "",
            "pdfUrlMachine": portal.download_url("docgen", d["pdf_fid"], auth) if ready else "",
            "imageUrl": "", "imageUrlMachine": "", "publicUrl": None, "emailDiskFile": None,
            "isTransformationError": False, "transformationErrorMessage": None}


@method("crm.documentgenerator.document.get", "documentgenerator", "crm")
def docgen_get(ctx: Ctx, p):
    try:
        d = ctx.portal.crm.documents.get(int(p.get("id")))
    except (TypeError, ValueError):
        d = None
    if d is None:
        raise B24Error("NOT_FOUND", "Document not found", 400)
    if not ctx.is_admin and ctx.token.user_id not in d.get("readers", {ctx.token.user_id}):
        raise B24Error("ACCESS_DENIED", "Access denied", 403)  # docgen's canViewDocument, per user
    if not d["pdf_ready"] and d.get("gets_left") is not None:  # docgen.py: the conversion moves on per get
        d["gets_left"] -= 1
        d["pdf_ready"] = d["gets_left"] <= 0
    return {"document": _render_doc(ctx, d)}


@method("crm.documentgenerator.document.list", "documentgenerator", "crm")
def docgen_list(ctx: Ctx, p):
    filt = p.get("filter") if isinstance(p.get("filter"), dict) else {}
    docs = [d for d in ctx.portal.crm.documents.values()
            if ctx.is_admin or ctx.token.user_id in d.get("readers", {ctx.token.user_id})]
    for k, v in filt.items():
        docs = [d for d in docs if str(d.get(k.lstrip("="))) == str(v)]
    return MethodResult({"documents": [_render_doc(ctx, d) for d in docs]}, total=len(docs))


# ====================================================================== sign.b2e (esign-providers §3)
@method("sign.b2e.company.provider.list", "sign.b2e")
def sign_provider_list(ctx: Ctx, p):
    return ctx.portal.sign.provider_list(p)


@method("sign.b2e.document.send", "sign.b2e")
def sign_send(ctx: Ctx, p):
    return ctx.portal.sign.send(ctx, p)


@method("sign.b2e.document.get", "sign.b2e")
def sign_get(ctx: Ctx, p):
    return ctx.portal.sign.get(p)


for _name in ("sign.b2e.company.provider.list", "sign.b2e.document.send", "sign.b2e.document.get"):
    needs_all_scopes(_name, "sign.b2e", "crm", "humanresources.hcmlink")


@method("sign.b2e.mysafe.tail", "sign.b2e")
def sign_mysafe_tail(ctx: Ctx, p):
    return ctx.portal.sign.mysafe_tail(ctx, p)
