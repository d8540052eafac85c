"""Who a log line is about: the portal (short member id), the robot call and the signature request.

``with bound(portal=..., call=..., request=...):`` sets them for everything logged inside (contextvars, so
threads and Celery's thread pool keep their own); ``ContextFilter`` (settings.LOGGING) puts them on every
record as ``%(portal)s``, ``%(call)s`` and ``%(request)s``, ``-`` where unknown.  Only the first 8
characters of a member id are logged: enough to find the portal, not a credential.
"""
from __future__ import annotations

import contextlib
import logging
from contextvars import ContextVar

from celery.signals import task_prerun

_context: ContextVar[dict] = ContextVar("b24sign_log_context", default={})
FIELDS = ("portal", "call", "request")


def short(member_id) -> str:
    return str(member_id or "")[:8] or "-"


@contextlib.contextmanager
def bound(**fields):
    """Add (or replace) fields for the duration of the block."""
    current = _context.get()
    clean = {k: str(v) for k, v in fields.items() if k in FIELDS and v not in (None, "")}
    if "portal" in clean:
        clean["portal"] = short(clean["portal"])
    token = _context.set({**current, **clean})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields) -> None:
    """Add fields for the rest of the current context (e.g. once a call learns its request)."""
    clean = {k: str(v) for k, v in fields.items() if k in FIELDS and v not in (None, "")}
    if "portal" in clean:
        clean["portal"] = short(clean["portal"])
    _context.set({**_context.get(), **clean})


def current() -> dict:
    return dict(_context.get())


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _context.get()
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, ctx.get(name, "-"))
        return True


@task_prerun.connect
def _fresh_context_per_task(**_) -> None:
    """A Celery thread runs many tasks: each starts with nothing bound."""
    _context.set({})
