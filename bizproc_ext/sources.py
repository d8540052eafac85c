"""Document source "Template": the document is generated for the CRM item from a document-generator template.

The worker creates the document once (``crm.documentgenerator.document.add``, with the robot's optional
extra ``values``), records it on the request (history) and on the item's timeline, and sends its PDF.
Bitrix24 converts to PDF asynchronously (``pdfUrl``/``pdfUrlMachine`` are empty at first): a document not
ready yet is a transient error, so the call goes back to the queue with a countdown (no worker sits in a
loop), and after ``DOCGEN_PDF_MAX_WAIT`` seconds it is answered with an error instead of waiting forever.
A retry finds the document id on the request and never generates a second one.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

from django.conf import settings

from b24app.crm import ENTITY_TYPES, timeline_entity_type
from b24app.rest import B24Client, B24Error
from signing.base import ProviderError
from signing.models import SignatureRequest

from .inputs import InputError

PDF_RETRY_SECONDS = 15


def template_values(raw) -> dict:
    """The robot's "extra values": a JSON object, or ``Name=value`` lines."""
    text = str(raw or "").strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise InputError("template values: not a JSON object") from None
        if not isinstance(data, dict):
            raise InputError("template values: not a JSON object")
        return {str(k): "" if v is None else v for k, v in data.items()}
    values = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise InputError(f"template values: {line.strip()!r} is not Name=value")
        values[name.strip()] = value.strip()
    return values


def entity_type_of(document_type) -> int | None:
    """The placement's ``document_type`` (``["crm", "CCrmDocumentDeal", "DEAL"]``, ``DYNAMIC_177``) -> entityTypeId."""
    if not isinstance(document_type, list) or len(document_type) < 3:
        return None
    kind = str(document_type[2]).upper()
    if kind.startswith("DYNAMIC_") and kind[8:].isdigit():
        return int(kind[8:])
    return ENTITY_TYPES.get(kind)


def list_templates(client: B24Client, entity_type_id: int | None) -> list[tuple[str, str]]:
    """(id, name) of the portal's active templates bound to this entity type, for the settings slider."""
    filt = {"active": "Y"}
    if entity_type_id:
        filt["entityTypeId"] = str(entity_type_id)
    result = client.call("crm.documentgenerator.template.list",
                         {"select": ["id", "name", "entityTypeId"], "filter": filt, "order": {"sort": "ASC"}})
    templates = (result or {}).get("templates") if isinstance(result, dict) else None
    values = templates.values() if isinstance(templates, dict) else (templates or [])
    return [(str(t.get("id")), str(t.get("name") or t.get("id"))) for t in values if isinstance(t, dict)]


def generated_document(call, req: SignatureRequest, client: B24Client) -> dict:
    """The generated document with its PDF ready (``document.get``'s ``document``), creating it the first time."""
    entity = call.entity
    template_id = str(call.properties.get("template_id") or "").strip()
    if not template_id.isdigit():
        raise InputError("choose the document template to generate the document from")
    if not entity:
        raise InputError("a document can only be generated for a CRM item")
    state = dict(req.options.get("generated") or {})
    if not state.get("id"):
        params = {"templateId": int(template_id), "entityTypeId": entity[0], "entityId": entity[1]}
        values = template_values(call.properties.get("template_values"))
        if values:
            params["values"] = values
        try:
            doc = (client.call("crm.documentgenerator.document.add", params) or {}).get("document") or {}
        except B24Error as exc:
            # The documented refusals are HTTP 400 with error "0" ("Template not found", "Cannot create
            # document on deleted template", …): retrying cannot help.  5xx, 429 and network errors can.
            if exc.transient and not (exc.status == 400 or exc.status == 404):
                raise
            raise InputError(f"template {template_id}: {exc.description or exc.error}") from None
        state = {"id": int(doc["id"]), "template_id": int(template_id), "title": str(doc.get("title") or ""),
                 "at": time.time()}
        req.options = {**req.options, "generated": state}
        SignatureRequest.objects.filter(pk=req.pk).update(options=req.options)
        req.log("generated", f"document \"{state['title']}\" (#{state['id']}) generated from template {template_id}",
                source="worker", payload=state)
        _on_timeline(client, req, entity, state)
        if doc.get("pdfUrlMachine") or doc.get("pdfUrl"):
            return doc
    doc = (client.call("crm.documentgenerator.document.get", {"id": state["id"]}) or {}).get("document") or {}
    if doc.get("isTransformationError"):
        raise InputError(f"Bitrix24 could not convert \"{state['title']}\" to PDF: "
                         f"{doc.get('transformationErrorMessage') or 'conversion error'}")
    if doc.get("pdfUrlMachine") or doc.get("pdfUrl"):
        return doc
    waited = time.time() - float(state.get("at") or time.time())
    limit = settings.DOCGEN_PDF_MAX_WAIT
    if waited >= limit:
        raise InputError(f"the PDF of the generated document \"{state['title']}\" (#{state['id']}) was not ready "
                         f"after {int(limit)} s; nothing was sent")
    raise ProviderError(f"the PDF of the generated document is not ready yet (waited {int(waited)} s)",
                        code="docgen_pending", retry_after=PDF_RETRY_SECONDS)


def _on_timeline(client: B24Client, req: SignatureRequest, entity, state: dict) -> None:
    """A line on the item's timeline: which document went out for signature (informational, never fails)."""
    try:
        client.call("crm.timeline.comment.add", {"fields": {
            "ENTITY_ID": entity[1], "ENTITY_TYPE": timeline_entity_type(entity[0]),
            "COMMENT": f"b24sign: \"{state['title']}\" (document #{state['id']}) was generated from template "
                       f"{state['template_id']} to be sent for e-signature ({req.public_id})."}})
    except B24Error as exc:
        req.log("note", f"timeline comment failed: {exc.error}", source="worker")


MAX_DOCUMENTS = 10  # the main document plus up to nine more (signNow document groups)


def extra_documents(resolver, client: B24Client) -> list:
    """The robot's ``extra_documents`` (``field:CODE``, ``disk:ID``, ``docgen:ID``), downloaded like the main
    one.  Their Drive / generator metadata is read in one batch."""
    entries = [str(e).strip() for e in resolver.props.get("extra_documents") or [] if str(e).strip()]
    if not entries:
        return []
    if len(entries) > MAX_DOCUMENTS - 1:
        raise InputError(f"up to {MAX_DOCUMENTS} documents in one request (the document and "
                         f"{MAX_DOCUMENTS - 1} more)")
    parsed = []
    for entry in entries:
        kind, sep, ident = entry.partition(":")
        if not sep or kind not in ("field", "disk", "docgen") or not ident.strip():
            raise InputError(f"more documents: {entry!r} is not field:CODE, disk:ID or docgen:ID")
        parsed.append((kind, ident.strip()))
    calls = {f"x{i}": ("disk.file.get", {"id": ident}) if kind == "disk" else
             ("crm.documentgenerator.document.get", {"id": ident})
             for i, (kind, ident) in enumerate(parsed) if kind != "field"}
    result = client.batch(calls) if calls else None
    if result is not None and result.errors:
        key, err = next(iter(result.errors.items()))
        raise InputError(f"cannot read {entries[int(key[1:])]}: {err.get('error_description') or err.get('error')}")
    files = []
    try:
        for i, (kind, ident) in enumerate(parsed):
            one = copy.copy(resolver)
            one.props = {**resolver.props, "document_source": kind, "document_field": ident, "document_id": ident}
            one.reads = {**resolver.reads}
            if kind == "disk":
                one.reads["disk"] = result.results.get(f"x{i}")
            elif kind == "docgen":
                one.reads["docgen"] = result.results.get(f"x{i}")
            files.append(one.download())
    except Exception:
        for f in files:
            Path(f.path).unlink(missing_ok=True)
        raise
    return files
