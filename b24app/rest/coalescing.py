"""Which coalescer (rest/coalesce.py), if any, the current thread's requests for a portal go through."""
from __future__ import annotations

from contextvars import ContextVar

# Single calls worth coalescing: the per-call progress line and the answer, and the CRM card's per-request
# timeline activity and field update.
COALESCED = frozenset({"bizproc.activity.log", "bizproc.event.send", "crm.activity.configurable.add",
                       "crm.item.update"})
_active: ContextVar = ContextVar("b24sign_coalescer", default=None)


def active_for(portal_pk):
    co = _active.get()
    return co if co is not None and co.portal_pk == portal_pk else None
