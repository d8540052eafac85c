"""The one state machine every signature request goes through.

draft -> sent -> partially_signed -> completed | declined | expired | cancelled | error

Moves only go forward: a status that has already been passed (a webhook arriving twice, or late) is a
no-op, and terminal states never change.  The move itself is a conditional UPDATE, so two workers
applying the same change race harmlessly: one wins, the other sees nothing to do.
"""
from __future__ import annotations

DRAFT = "draft"
SENT = "sent"
PARTIALLY_SIGNED = "partially_signed"
COMPLETED = "completed"
DECLINED = "declined"
EXPIRED = "expired"
CANCELLED = "cancelled"
ERROR = "error"

TERMINAL = frozenset({COMPLETED, DECLINED, EXPIRED, CANCELLED, ERROR})
OPEN = frozenset({DRAFT, SENT, PARTIALLY_SIGNED})
_RANK = {DRAFT: 0, SENT: 1, PARTIALLY_SIGNED: 2, **{s: 3 for s in TERMINAL}}

CHOICES = [
    (DRAFT, "Draft"), (SENT, "Sent"), (PARTIALLY_SIGNED, "Partially signed"), (COMPLETED, "Completed"),
    (DECLINED, "Declined"), (EXPIRED, "Expired"), (CANCELLED, "Cancelled"), (ERROR, "Error"),
]


def can_move(current: str, new: str) -> bool:
    """True when ``current -> new`` is a real step forward."""
    if current in TERMINAL or new not in _RANK:
        return False
    return _RANK[new] > _RANK[current]


def is_terminal(status: str) -> bool:
    return status in TERMINAL
