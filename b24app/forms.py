"""Parsing of what Bitrix24 posts to us (PHP bracket notation) into plain dicts.

What strangers post is cleaned here, once, for every caller: NUL bytes are stripped (PostgreSQL refuses
them in text and JSON, which would lose a call with a 500) and keys nested deeper than PHP would ever
send are refused (a 3000-deep key overflows the stack of whatever walks the result).
"""
from __future__ import annotations

from urllib.parse import unquote_plus

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent
from django.http import HttpRequest

from .rest.encoding import nest_php_path, php_key_path

MAX_DEPTH = 8  # brackets per key; Bitrix24's deepest is properties[<code>][<n>] / auth[...]
NAME_CACHE_MAX = 256  # characters; Bitrix24's longest field name is under 100


class MalformedForm(ValueError):
    """The body cannot be a Bitrix24 post (answered 400, nothing stored)."""


def clean_text(value: str) -> str:
    return value.replace("\x00", "") if "\x00" in value else value


def php_form(request: HttpRequest) -> dict:
    """The POST body as nested dicts: ``auth[member_id]`` -> ``{"auth": {"member_id": ...}}``."""
    form: dict = {}
    for key, values in _fields(request).items():
        path = _key_path[key]
        for value in values:
            nest_php_path(form, path, clean_text(value))
    return form


class NameCache(dict):
    """``fn(name)`` for a form field's name, kept per process: the queue server sends the same ~30 names on
    every call, values differ.  A plain dict, so a hit costs a lookup and no call.  Only names of up to
    NAME_CACHE_MAX characters are kept, and at most ``size`` of them (then it starts afresh), so what a
    stranger posts cannot fill the memory.  ``fn`` raising is never cached."""

    def __init__(self, fn, size: int = 1024):
        super().__init__()
        self.fn, self.size = fn, size

    def __missing__(self, name: str):
        value = self.fn(name)
        if len(name) <= NAME_CACHE_MAX:
            if len(self) >= self.size:
                self.clear()
            self[name] = value
        return value


def _split_key(key: str) -> tuple[str, ...]:
    if key.count("[") > MAX_DEPTH:
        raise MalformedForm("a field name is nested too deeply")
    return php_key_path(clean_text(key))


_key_path = NameCache(_split_key)  # a field name, cleaned and split
_form_name = NameCache(lambda raw: unquote_plus(raw, errors="replace"))  # a name as posted, decoded


def _fields(request: HttpRequest) -> dict[str, list[str]]:
    """Values per field name, names in first-seen order: what ``request.POST`` holds, without building a
    QueryDict for a urlencoded body (the robot handler's hot path, issue 14: a third of the parsing cost).
    Same limits and decoding as Django's: ``request.body`` (DATA_UPLOAD_MAX_MEMORY_SIZE), at most
    DATA_UPLOAD_MAX_NUMBER_FIELDS fields, UTF-8 with replacement (Latin-1 for bytes that are not UTF-8)."""
    if request.method != "POST" or request.content_type != "application/x-www-form-urlencoded" or (
            request.encoding and request.encoding.lower() != "utf-8"):
        return {key: request.POST.getlist(key) for key in request.POST}  # multipart, other charsets: Django
    body = request.body
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("iso-8859-1")
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    if limit is not None and text.count("&") + 1 > limit:  # parse_qsl's count, so QueryDict's limit
        raise TooManyFieldsSent("The number of POST parameters exceeded settings.DATA_UPLOAD_MAX_NUMBER_FIELDS.")
    fields: dict[str, list[str]] = {}
    names = _form_name
    for part in text.split("&"):  # parse_qsl(keep_blank_values=True), with each distinct name decoded once
        if part:
            name, _, value = part.partition("=")
            if "%" in value or "+" in value:  # most values (ids, tokens) have nothing to decode
                value = unquote_plus(value, errors="replace")
            values = fields.get(name := names[name])
            if values is None:
                fields[name] = [value]
            else:
                values.append(value)
    return fields
