"""Signers from the CRM item's own fields (issue 13, item 6).

The robot's ``signer_fields`` lists fields of the item chosen in the settings slider from Bitrix24's
``document_fields``, each as ``<kind>:<FIELD_CODE>``: ``user`` (an employee field, e.g. the responsible
person or a UF of type employee), ``contact`` (a CRM binding to contacts) or ``email`` (a text field or
multifield holding e-mail addresses).  The values come from the item already read in the first batch;
the people they point to are read in one more batch.
"""
from __future__ import annotations

import re

from signing.base import Signer

from .inputs import EMAIL, InputError, _emails, find_field

KINDS = ("user", "contact", "email")


def parse(entry: str) -> tuple[str, str]:
    kind, sep, code = str(entry or "").strip().partition(":")
    if not sep or kind not in KINDS or not code.strip():
        raise InputError(f"signer field {entry!r}: expected user:CODE, contact:CODE or email:CODE")
    return kind, code.strip()


def _ids(value, prefix: str = "") -> list[int]:
    out = []
    for v in value if isinstance(value, list) else [value]:
        text = str(v if not isinstance(v, dict) else v.get("id") or v.get("ID") or "").strip()
        text = text.removeprefix("user_").removeprefix(prefix)
        if text.isdigit() and int(text):
            out.append(int(text))
    return out


def field_values(resolver) -> list[tuple[str, str, object]]:
    entries = [e for e in _as_list(resolver.props.get("signer_fields")) if str(e).strip()]
    out = []
    for entry in entries:
        kind, code = parse(entry)
        value = find_field(resolver.item, code)
        if value in (None, "", [], 0, "0"):
            raise InputError(f"the field {code} of the CRM item is empty: nobody to sign from it")
        out.append((kind, code, value))
    return out


def signers(resolver) -> list[Signer]:
    """Signers named by the item's fields, in the order the fields were chosen."""
    values = field_values(resolver)
    if not values:
        return []
    users = sorted({u for kind, _, v in values if kind == "user" for u in _ids(v)} - set(resolver.users()))
    contacts = sorted({c for kind, _, v in values if kind == "contact" for c in _ids(v, "C_")})
    calls = {}
    if users:
        calls["users"] = ("user.get", {"filter": {"ID": users}})
    for cid in contacts:
        calls[f"c{cid}"] = ("crm.contact.get", {"id": cid})
    fetched = resolver.client.batch(calls).results if calls else {}
    known_users = {**resolver.users(), **{int(u["ID"]): u for u in fetched.get("users") or []
                                          if str(u.get("ID", "")).isdigit()}}
    out: list[Signer] = []
    for kind, code, value in values:
        if kind == "user":
            for uid in _ids(value):
                user = known_users.get(uid)
                if not user or not user.get("EMAIL"):
                    raise InputError(f"the employee in {code} (user_{uid}) has no email address")
                name = " ".join(x for x in (user.get("NAME"), user.get("LAST_NAME")) if x)
                out.append(Signer(email=str(user["EMAIL"]).strip(), name=name, user_id=uid))
        elif kind == "contact":
            for cid in _ids(value, "C_"):
                contact = fetched.get(f"c{cid}") or {}
                emails = _emails(contact.get("EMAIL"))
                if not emails:
                    raise InputError(f"the contact in {code} (contact {cid}) has no email address")
                name = " ".join(x for x in (contact.get("NAME"), contact.get("LAST_NAME")) if x)
                out.append(Signer(email=emails[0], name=name))
        else:
            for email in _field_emails(value):
                if not EMAIL.match(email):
                    raise InputError(f"the field {code} holds {email!r}, not an email address")
                out.append(Signer(email=email))
    return out


def _field_emails(value) -> list[str]:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return _emails(value)
    return [p for v in _as_list(value) for p in re.split(r"[,;\s]+", str(v)) if p]


def _as_list(value) -> list:
    if value in (None, ""):
        return []
    return value if isinstance(value, list) else [value]
