"""KEDO document and member state codes (U-B1), and what we keep of an answer."""
from __future__ import annotations

# §3.4 (U-B1): codes by meaning; anything else keeps the current state.
DOC_OPEN = {"new", "uploaded", "ready", "sent", "signing", "in_progress"}
DOC_DONE = {"done", "completed", "signed"}
DOC_STOPPED = {"stopped"}
MEMBER_SIGNED = {"done", "signed"}
MEMBER_REFUSED = {"refused"}
MEMBER_STOPPED = {"stopped"}
MEMBER_WAITING = {"waiting", "wait", "ready", "stoppable_ready", "processing", "completing"}


def member_status(code: str) -> str:
    if code in MEMBER_SIGNED:
        return "signed"
    if code in MEMBER_REFUSED:
        return "declined"
    if code in MEMBER_STOPPED:
        return "cancelled"
    return "pending"


def compact_answer(result: dict) -> dict:
    """What we keep of a send/get answer: uid, state and members (no file content ever)."""
    return {"uid": result.get("uid"), "state": result.get("state"),
            "members": [{"uid": m.get("uid"), "role": m.get("role"), "party": m.get("party"), "user": m.get("user"),
                         "state": m.get("state")} for m in result.get("members") or [] if isinstance(m, dict)]}
