"""No double sends at business level: a robot fired again for the same CRM item and document.

``event_token`` deduplication stops redeliveries of one call; a deal that moves back to the stage fires
the robot again with a new token.  The send robot's option ``if_open_exists`` decides what then happens
when an open request (draft, sent, partially signed) exists for the same item and the same document
source: ``return`` it (the default), ``replace`` it (cancel it at the provider, then send again) or send
``another``.  The answer's ``open_request`` value says which happened.
"""
from __future__ import annotations

from contextlib import contextmanager

from b24app import coordination
from signing.models import SignatureRequest

from .inputs import _norm

RETURN, REPLACE, ANOTHER = "return", "replace", "another"
# What the answer's ``open_request`` says.
NONE, RETURNED, REPLACED, SENT_ANOTHER = "none", "returned", "replaced", "another"


def source_key(props: dict) -> str:
    """Which document the robot sends, as a stable key: two calls with the same key send the same document."""
    source = props.get("document_source") or "field"
    if source == "field":
        ident = _norm(str(props.get("document_field") or ""))
    elif source == "url":
        ident = str(props.get("document_url") or "").strip()
    elif source == "template":
        ident = str(props.get("template_id") or "").strip()
    else:
        ident = str(props.get("document_id") or "").strip()
    key = f"{source}:{ident}"
    if props.get("provider_template_id"):
        key += f"|provider-template:{props['provider_template_id']}"
    return key[:300]


def open_request(call, key: str) -> SignatureRequest | None:
    """The newest open request for this call's CRM item with the same document source, if any."""
    entity = call.entity
    if not entity:
        return None
    return (SignatureRequest.objects.open()
            .filter(portal=call.portal, entity_type_id=entity[0], entity_id=entity[1], options__source_key=key)
            .select_related("account").order_by("-created_at").first())


@contextmanager
def guarded(call, key: str):
    """Two re-fired calls for the same item must not both decide "there is no open request"."""
    entity = call.entity or ("-", call.pk)
    with coordination.lock(f"open-request:{call.portal_id}:{entity[0]}:{entity[1]}:{key}", ttl=120, wait=90):
        yield
