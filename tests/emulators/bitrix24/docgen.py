"""Document-generator templates (b24restdocs api-reference/crm/document-generator/).

``crm.documentgenerator.template.list`` (``{"templates": {id: template}}``, filter on ``entityTypeId``,
``isDeleted`` defaulting to ``N``, pages of 50) and ``crm.documentgenerator.document.add`` (templateId,
entityTypeId, entityId required; the documented ``0`` errors: "Template not found", "Cannot create
document on deleted template", "No provider for entityTypeId", "Empty required parameter").

PDF conversion is asynchronous: the document from ``add`` has no ``pdfUrl``; it appears after the
template's ``pdf_after_gets`` calls to ``crm.documentgenerator.document.get`` (``None``: never; the
conversion hangs).  The generated PDF shows the template name, the item's title and every value passed.

Test API: ``add_template(portal, name, entity_type_ids=(2,), pdf_after_gets=1)``, ``delete_template``,
``portal.crm.templates``, ``portal.crm.document_adds`` (the params of every add).
"""
from __future__ import annotations

import time

from ..pdf import make_pdf
from .core import B24Error, iso
from .crm import supported_type
from .methods import method
from .methods_crm import _render_doc
from .portal import Ctx, MethodResult

PAGE = 50


def _state(portal):
    crm = portal.crm
    if not hasattr(crm, "templates"):
        crm.templates, crm.document_adds = {}, []
    return crm


def add_template(portal, name: str, entity_type_ids=(2,), pdf_after_gets: int | None = 1, region: str = "en") -> int:
    crm = _state(portal)
    with crm.lock:
        tid = 100 + len(crm.templates) + 1
        crm.templates[tid] = {"id": tid, "name": name, "region": region, "active": "Y", "isDeleted": "N",
                              "entityTypeId": [str(e) for e in entity_type_ids], "pdf_after_gets": pdf_after_gets,
                              "createTime": iso(time.time())}
        return tid


def delete_template(portal, tid: int) -> None:
    with portal.crm.lock:
        portal.crm.templates[tid]["isDeleted"] = "Y"


def _binds(template: dict, wanted) -> bool:
    wanted = [str(w) for w in (wanted if isinstance(wanted, list) else [wanted])]
    bound = template["entityTypeId"]
    return any(b == w or b.split("_category_")[0] == w for b in bound for w in wanted)


def _public(ctx: Ctx, t: dict) -> dict:
    base = ctx.portal.base_url
    return {"id": str(t["id"]), "name": t["name"], "region": t["region"], "code": None, "active": t["active"],
            "moduleId": "crm", "isDeleted": t["isDeleted"], "entityTypeId": list(t["entityTypeId"]), "users": ["UA"],
            "download": f"{base}/bitrix/services/main/ajax.php?action=crm.documentgenerator.template.download"
                        f"&id={t['id']}", "createTime": t["createTime"]}


@method("crm.documentgenerator.template.list", "documentgenerator", "crm")
def template_list(ctx: Ctx, p):
    crm = _state(ctx.portal)
    filt = p.get("filter") if isinstance(p.get("filter"), dict) else {}
    templates = list(crm.templates.values())
    deleted = str(filt.get("isDeleted", "N"))
    templates = [t for t in templates if t["isDeleted"] == deleted]
    for key, value in filt.items():
        field = key.lstrip("=@")
        if field == "entityTypeId":
            templates = [t for t in templates if _binds(t, value)]
        elif field in ("id", "active", "region", "name"):
            values = value if isinstance(value, list) else [value]
            templates = [t for t in templates if str(t[field]) in [str(v) for v in values]]
    start = int(p.get("start") or 0)
    page = templates[start:start + PAGE]
    nxt = start + PAGE if start + PAGE < len(templates) else None
    return MethodResult({"templates": {str(t["id"]): _public(ctx, t) for t in page}}, total=len(templates), next=nxt)


@method("crm.documentgenerator.document.add", "documentgenerator", "crm")
def document_add(ctx: Ctx, p):
    crm = _state(ctx.portal)
    for key in ("templateId", "entityTypeId", "entityId"):
        if p.get(key) in (None, "", 0, "0"):
            raise B24Error("0", 'Empty required parameter "value"', 400)
    try:
        tid, etid, iid = int(p["templateId"]), int(p["entityTypeId"]), int(p["entityId"])
    except (TypeError, ValueError):
        raise B24Error("100", "Bitrix\\DocumentGenerator\\Template constructor must be is public", 400) from None
    template = crm.templates.get(tid)
    if template is None:
        raise B24Error("0", "Template not found", 400)
    if template["isDeleted"] == "Y":
        raise B24Error("0", "Cannot create document on deleted template", 400)
    if not supported_type(etid):
        raise B24Error("0", "No provider for entityTypeId", 400)
    item = crm.get(etid, iid)
    if item is None:
        raise B24Error("0", "Cannot create document", 400)
    values = p.get("values") if isinstance(p.get("values"), dict) else {}
    crm.document_adds.append(dict(p))
    lines = [template["name"], f"For: {item.get('title') or ''}"] + [f"{k}: {v}" for k, v in values.items()]
    title = f"{template['name']} {item.get('title') or ''}".strip()
    did = crm.add_generated_document(etid, iid, make_pdf("\n".join(lines), title=title), pdf_ready=False,
                                     title=title)
    with crm.lock:
        doc = crm.documents[did]
        doc.update({"templateId": tid, "values": values, "gets_left": template["pdf_after_gets"]})
    return {"document": {**_render_doc(ctx, doc), "values": values}}
