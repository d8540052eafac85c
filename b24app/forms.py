"""Parsing of what Bitrix24 posts to us (PHP bracket notation) into plain dicts.

What strangers post is cleaned here, once, for every caller: NUL bytes are stripped (PostgreSQL refuses
them in text and JSON, which would lose a call with a 500) and keys nested deeper than PHP would ever
send are refused (a 3000-deep key overflows the stack of whatever walks the result).
"""
from __future__ import annotations

from django.http import HttpRequest

from .rest.encoding import parse_php_pairs

MAX_DEPTH = 8  # brackets per key; Bitrix24's deepest is properties[<code>][<n>] / auth[...]


class MalformedForm(ValueError):
    """The body cannot be a Bitrix24 post (answered 400, nothing stored)."""


def clean_text(value: str) -> str:
    return value.replace("\x00", "") if "\x00" in value else value


def php_form(request: HttpRequest) -> dict:
    """The POST body as nested dicts: ``auth[member_id]`` -> ``{"auth": {"member_id": ...}}``."""
    pairs = []
    for key in request.POST:
        if key.count("[") > MAX_DEPTH:
            raise MalformedForm("a field name is nested too deeply")
        pairs += [(clean_text(key), clean_text(v)) for v in request.POST.getlist(key)]
    return parse_php_pairs(pairs)
