"""signNow error shapes and vocabularies (spec §1.12) used by every API area."""
from __future__ import annotations

from ..base import Response, json_response


def _err(code: int, message: str, status: int = 400) -> Response:
    return json_response({"errors": [{"code": code, "message": message}]}, status)


def _not_found() -> Response:
    return _err(65582, "Document not found", 404)


INVALID_TOKEN = {"error": "invalid_token", "code": 1537}

FIELD_TYPES = {"signature", "initials", "text", "checkbox", "enumeration", "date", "radiobutton", "attachment",
               "hyperlink", "dropdown"}
TAG_TYPES = {"s": "signature", "i": "initials", "t": "text", "d": "date", "c": "checkbox", "f": "attachment",
             "dd": "enumeration"}
EVENTS = {
    "document.complete", "document.open", "document.update", "document.delete",
    "document.fieldinvite.create", "document.fieldinvite.sent", "document.fieldinvite.signed",
    "document.fieldinvite.decline", "document.fieldinvite.delete", "document.fieldinvite.reassign",
    "document.fieldinvite.replace", "document.freeform.create", "document.freeform.signed",
}
EVENTS |= {"user." + e for e in EVENTS} | {"user.template.copy", "template.copy", "user.document_group.create",
                                          "document_group.complete", "document_group.delete"}
