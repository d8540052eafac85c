"""Methods Bitrix24 allows to portal administrators only (robots, placements, event bindings)."""
from __future__ import annotations

ADMIN_ONLY_PREFIXES = ("bizproc.robot.", "bizproc.activity.add", "bizproc.activity.update",
                       "bizproc.activity.delete", "placement.bind", "placement.unbind", "event.bind",
                       "event.unbind", "event.get")


def is_admin_only(method: str) -> bool:
    method = method.lower()
    return any(method.startswith(p) for p in ADMIN_ONLY_PREFIXES)
