"""Parsing of what Bitrix24 posts to us (PHP bracket notation) into plain dicts."""
from __future__ import annotations

from django.http import HttpRequest

from .rest.encoding import parse_php_pairs


def php_form(request: HttpRequest) -> dict:
    """The POST body as nested dicts: ``auth[member_id]`` -> ``{"auth": {"member_id": ...}}``."""
    pairs = [(k, v) for k in request.POST for v in request.POST.getlist(k)]
    return parse_php_pairs(pairs)
