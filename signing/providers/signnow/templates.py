"""signNow templates: list them, check a role mapping and prefill against one, create the document from it.

* list: ``GET /user/documentsv2`` → the entries with ``template: true`` (their ``roles`` and text ``fields``);
* check (before any send): ``GET /document/{template_id}``; a 404 means the template was deleted in signNow;
  every role must be mapped, every mapped role must exist, every prefill name must be a text field;
* create: ``POST /template/{id}/copy {document_name}`` → ``{id}``;
  prefill: ``PUT /v2/documents/{id}/prefill-texts {fields:[{field_name, prefilled_text}]}``;
  invite: a role-based ``POST /document/{id}/invite`` with each signer on the role mapped to them.
"""
from __future__ import annotations

from signing.base import ProviderError, ProviderTemplate, SendSpec

from .documents import as_int
from .invites import post_invite, signers_of, texts


def _roles(doc: dict) -> list[str]:
    roles = sorted(doc.get("roles") or [], key=lambda r: as_int(r.get("signing_order"), 0))
    return [str(r.get("name")) for r in roles if r.get("name")]


def _text_fields(doc: dict) -> list[str]:
    out = []
    for f in doc.get("fields") or []:
        attrs = f.get("json_attributes") or {}
        name = attrs.get("name") or f.get("name")
        if f.get("type") == "text" and name and name not in out:
            out.append(str(name))
    return out


def as_template(doc: dict) -> ProviderTemplate:
    return ProviderTemplate(id=str(doc.get("id")), name=str(doc.get("document_name") or doc.get("id")),
                            roles=_roles(doc), text_fields=_text_fields(doc))


def list_templates(client) -> list[ProviderTemplate]:
    data = client.json("GET", "/user/documentsv2")
    docs = data if isinstance(data, list) else (data or {}).get("data") or []
    return [as_template(d) for d in docs if isinstance(d, dict) and d.get("template") in (True, 1, "1", "true")]


def read_template(client, template_id: str) -> ProviderTemplate:
    try:
        doc = client.json("GET", f"/document/{template_id}")
    except ProviderError as exc:
        if exc.code in ("65582", "404") or "not found" in exc.message.lower():
            raise ProviderError(f"signNow: the template {template_id} no longer exists in the connected account "
                                "(deleted?); choose another one in the robot's settings",
                                permanent=True, code="input") from None
        raise
    return as_template(doc)


def check(client, spec: SendSpec) -> ProviderTemplate:
    """Unmapped roles, roles the template lacks and prefill names that are not its text fields: input errors."""
    template = read_template(client, spec.template_id)
    mapped = [s.template_role for s in signers_of(spec)]
    missing = [r for r in template.roles if r not in mapped]
    if missing:
        raise ProviderError(f"signNow: template \"{template.name}\": role(s) {', '.join(missing)} not mapped to a "
                            "signer", permanent=True, code="input")
    unknown = sorted({r for r in mapped if r not in template.roles})
    if unknown:
        raise ProviderError(f"signNow: template \"{template.name}\" has no role {', '.join(unknown)} "
                            f"(its roles: {', '.join(template.roles) or 'none'})", permanent=True, code="input")
    if len(set(mapped)) != len(mapped):
        raise ProviderError(f"signNow: template \"{template.name}\": a role is mapped to two signers",
                            permanent=True, code="input")
    absent = [name for name in spec.prefill if name not in template.text_fields]
    if absent:
        raise ProviderError(f"signNow: template \"{template.name}\" has no text field {', '.join(absent)} to "
                            f"prefill (its text fields: {', '.join(template.text_fields) or 'none'})",
                            permanent=True, code="input")
    return template


def copy_template(client, spec: SendSpec) -> str:
    try:
        made = client.json("POST", f"/template/{spec.template_id}/copy", {"document_name": spec.title[:200]})
    except ProviderError as exc:
        if exc.code == "65582":
            raise ProviderError(f"signNow: the template {spec.template_id} was deleted in signNow", permanent=True,
                                code="input") from None
        raise
    if not made.get("id"):
        raise ProviderError("signNow: the template copy returned no document id", code="bad_response")
    return str(made["id"])


def prefill(client, doc_id: str, values: dict) -> None:
    fields = [{"field_name": name, "prefilled_text": str(value)} for name, value in values.items()]
    if fields:
        client.json("PUT", f"/v2/documents/{doc_id}/prefill-texts", {"fields": fields})


def invite_roles(client, doc_id: str, spec: SendSpec, doc: dict, sender: str) -> None:
    """The role-based invite with each signer on the role mapped to them (templates, text tags)."""
    roles = {str(r.get("name")): r for r in doc.get("roles") or []}
    parallel = len({s.order for s in signers_of(spec)}) == 1 and len(signers_of(spec)) > 1
    to = []
    for signer in signers_of(spec):
        role = roles.get(signer.template_role)
        if role is None:
            raise ProviderError(f"signNow: the document has no role {signer.template_role}", permanent=True,
                                code="input")
        item = {"email": signer.email, "role": role.get("name"), "role_id": role.get("unique_id", ""),
                "order": 1 if parallel else as_int(role.get("signing_order"), 1), "decline_by_signature": "1"}
        if spec.expiry_days is not None:
            item["expiration_days"] = spec.expiry_days
        if spec.reminder_days is not None:
            item["reminder"] = spec.reminder_days  # integer days, as invites.invite_fields sends it
        if spec.auth == "password":
            item.update(authentication_type="password", password=spec.auth_secret)
        elif spec.auth == "sms":
            item.update(authentication_type="phone", phone=signer.phone.replace(" ", ""), method="sms")
        to.append(item)
    post_invite(client, doc_id, {"to": to, "from": sender, **texts(spec)})
