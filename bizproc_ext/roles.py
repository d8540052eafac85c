"""Provider templates (issue 13, item 2): each template role mapped to a signer source, text fields
prefilled from CRM fields.

``template_roles`` (one per line ``Role=source``), where source is one of
``primary_contact`` (the item's primary contact), ``all_contacts`` (the item's contacts in order: the
first role with it gets the first contact, the next the second, …), ``company_contact`` (the first
contact of the item's company), ``user_N`` (a Bitrix24 user), ``email:addr`` (a fixed e-mail) or
``field:CODE`` (a CRM field of the item holding an e-mail).

``prefill_fields`` (one per line ``template field=CRM field``): the values come from the item read in the
first batch (``crm.item.get``), so prefill costs no extra request; the people behind the role sources are
read in one more batch.  Roles the template has but the mapping lacks, and prefill names the template
lacks, are checked by the provider before anything is sent.
"""
from __future__ import annotations

from signing.base import Signer

from .inputs import EMAIL, InputError, _emails, find_field

SOURCES = ("primary_contact", "all_contacts", "company_contact", "user_N", "email:…", "field:CODE")


def pairs(text, what: str) -> list[tuple[str, str]]:
    out = []
    for line in str(text or "").splitlines():
        if not line.strip():
            continue
        left, sep, right = line.partition("=")
        if not sep or not left.strip() or not right.strip():
            raise InputError(f"{what}: {line.strip()!r} is not Name=value")
        out.append((left.strip(), right.strip()))
    return out


def mapping(props: dict) -> list[tuple[str, str]]:
    roles = pairs(props.get("template_roles"), "template roles")
    names = [r for r, _ in roles]
    if len(set(names)) != len(names):
        raise InputError("template roles: a role is listed twice")
    return roles


def _contact_ids(resolver) -> list[int]:
    entity = resolver.entity
    if entity and entity[0] == 2 and resolver.reads.get("contacts") is not None:
        links = sorted(resolver.reads.get("contacts") or [],
                       key=lambda c: (str(c.get("IS_PRIMARY")) != "Y", int(c.get("SORT") or 0)))
        return [int(c["CONTACT_ID"]) for c in links if str(c.get("CONTACT_ID", "")).isdigit()]
    ids = resolver.item.get("contactIds") or []
    ids = [int(x) for x in (ids if isinstance(ids, list) else [ids]) if str(x).isdigit()]
    if not ids and str(resolver.item.get("contactId") or "").isdigit() and int(resolver.item["contactId"]):
        ids = [int(resolver.item["contactId"])]
    return ids


def template_signers(resolver) -> list[Signer]:
    """One signer per mapped role, in the mapping's order (``Signer.template_role`` names the role)."""
    roles = mapping(resolver.props)
    if not roles:
        raise InputError("map each template role to a signer (template roles: Role=source, one per line)")
    sources = [src for _, src in roles]
    need_contacts = any(s in ("primary_contact", "all_contacts") for s in sources)
    contact_ids = _contact_ids(resolver) if need_contacts else []
    if need_contacts and not contact_ids and resolver.entity and resolver.entity[0] == 2 \
            and resolver.reads.get("contacts") is None:
        links = resolver.client.call("crm.deal.contact.items.get", {"id": resolver.entity[1]}) or []
        resolver.reads["contacts"] = links
        contact_ids = _contact_ids(resolver)
    users = sorted({int(s[5:]) for s in sources if s.startswith("user_") and s[5:].isdigit()})
    company_id = str(resolver.item.get("companyId") or "")
    calls = {f"c{cid}": ("crm.contact.get", {"id": cid}) for cid in contact_ids}
    if users:
        calls["users"] = ("user.get", {"filter": {"ID": users}})
    if "company_contact" in sources:
        if not company_id.isdigit() or not int(company_id):
            raise InputError("the CRM item has no company, so there is no company contact to sign")
        calls["company_contacts"] = ("crm.item.list", {"entityTypeId": 3, "filter": {"companyId": int(company_id)},
                                                       "select": ["id"], "order": {"id": "ASC"}})
    fetched = resolver.client.batch(calls).results if calls else {}
    known_users = {int(u["ID"]): u for u in fetched.get("users") or [] if str(u.get("ID", "")).isdigit()}
    next_contact = iter(contact_ids)
    signers: list[Signer] = []
    for role, source in roles:
        signers.append(_signer(resolver, role, source, fetched, known_users, contact_ids, next_contact))
    emails = [s.email.lower() for s in signers]
    if len(set(emails)) != len(emails):
        raise InputError("template roles: the same person is mapped to two roles")
    parallel = resolver.props.get("signing_order") == "parallel"
    for i, s in enumerate(signers, start=1):
        s.order = 1 if parallel else i
    return signers


def _contact_signer(resolver, role: str, cid: int, fetched: dict) -> Signer:
    contact = fetched.get(f"c{cid}")
    if contact is None:
        contact = resolver.client.call("crm.contact.get", {"id": cid}) or {}
    emails = _emails(contact.get("EMAIL"))
    if not emails:
        raise InputError(f"role {role}: contact {cid} has no email address")
    name = " ".join(x for x in (contact.get("NAME"), contact.get("LAST_NAME")) if x)
    return Signer(email=emails[0], name=name, template_role=role)


def _signer(resolver, role, source, fetched, known_users, contact_ids, next_contact) -> Signer:
    if source == "primary_contact":
        if not contact_ids:
            raise InputError(f"role {role}: the CRM item has no contact")
        return _contact_signer(resolver, role, contact_ids[0], fetched)
    if source == "all_contacts":
        cid = next(next_contact, None)
        if cid is None:
            raise InputError(f"role {role}: the CRM item has fewer contacts than roles mapped to its contacts")
        return _contact_signer(resolver, role, cid, fetched)
    if source == "company_contact":
        rows = fetched.get("company_contacts") or {}
        items = rows.get("items") if isinstance(rows, dict) else rows
        if not items:
            raise InputError(f"role {role}: the item's company has no contact")
        return _contact_signer(resolver, role, int(items[0]["id"]), fetched)
    if source.startswith("user_") and source[5:].isdigit():
        user = known_users.get(int(source[5:]))
        if not user or not user.get("EMAIL"):
            raise InputError(f"role {role}: employee {source} has no email address (or cannot be read)")
        name = " ".join(x for x in (user.get("NAME"), user.get("LAST_NAME")) if x)
        return Signer(email=str(user["EMAIL"]).strip(), name=name, user_id=int(source[5:]), template_role=role)
    if source.startswith("email:"):
        email = source[6:].strip()
        if not EMAIL.match(email):
            raise InputError(f"role {role}: {email!r} is not an email address")
        return Signer(email=email, template_role=role)
    if source.startswith("field:"):
        code = source[6:].strip()
        value = find_field(resolver.item, code)
        emails = _emails(value) if isinstance(value, list) and value and isinstance(value[0], dict) \
            else [str(value).strip()] if value not in (None, "", []) else []
        if not emails or not EMAIL.match(emails[0]):
            raise InputError(f"role {role}: the field {code} holds no email address")
        return Signer(email=emails[0], template_role=role)
    raise InputError(f"role {role}: unknown signer source {source!r} (use one of {', '.join(SOURCES)})")


def prefill_values(resolver) -> dict[str, str]:
    """Template text field -> the CRM field's value, from the item read in the first batch."""
    values = {}
    for name, code in pairs(resolver.props.get("prefill_fields"), "prefill"):
        if find_field(resolver.item, code) is None and code not in resolver.item:
            raise InputError(f"prefill {name}: the CRM item has no field {code}")
        values[name] = _text(find_field(resolver.item, code))
    return values


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return str(value.get("VALUE") or value.get("value") or "")
    if isinstance(value, bool):
        return "Y" if value else "N"
    return str(value)
