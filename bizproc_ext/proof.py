"""Proving a robot call before it has any effect.

Anybody who can read a page of the app can read its application token, so the handler's check only
says "this looks like our portal".  What proves that Bitrix24's queue server really made the call is
its ``event_token``: the portal signs it (``<workflow>|<activity>|<eventId>.<signature>``) and refuses
``bizproc.activity.log`` with a forged one (``ACCESS_DENIED``).  So the worker's first REST request for
a call is a ``batch`` with ``halt=1`` whose first command logs "received by b24sign" with that token,
followed by the reads the call needs anyway: no extra request, and a forged call stops inside Bitrix24
before any CRM read, download or provider call.

:func:`commands` is the per-call unit (the proof first, then that call's reads), so a caller that
coalesces several calls into one batch can key each call's commands and check each proof on its own.
"""
from __future__ import annotations

import logging

from django.utils import timezone

from b24app.rest import B24Client, B24Error
from b24app.rest.client import BatchResult
from b24app.rest.coalescing import active_for

from .models import RobotCall

log = logging.getLogger("b24sign.robots")

PROOF = "proof"
RECEIVED = "received by b24sign"
# Errors inside the batch that say "not now" rather than "not this token": retried like any other call.
_TRANSIENT = {"QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT", "INTERNAL_SERVER_ERROR"}


class ForgedCall(Exception):
    """Bitrix24 did not accept the call's event token: the call is refused, nothing else happens."""


def commands(call: RobotCall, reads: dict[str, tuple[str, dict]] | None = None) -> dict[str, tuple[str, dict]]:
    """The commands of one call's first request: its proof, then its reads (keys as given)."""
    if PROOF in (reads or {}):
        raise ValueError(f"{PROOF!r} is reserved for the proof")
    return {PROOF: ("bizproc.activity.log", {"EVENT_TOKEN": call.event_token, "LOG_MESSAGE": RECEIVED}),
            **(reads or {})}


def check(call: RobotCall, result: BatchResult) -> None:
    """Raise ForgedCall when the proof failed; mark the call proven when it passed."""
    err = result.errors.get(PROOF)
    if err is None and PROOF not in result.results:
        raise B24Error("BAD_RESPONSE", "the batch answered without the proof", method="bizproc.activity.log")
    if err is not None:
        code = str(err.get("error") or "ERROR")
        if code in _TRANSIENT:
            raise B24Error(code, str(err.get("error_description", "")), method="bizproc.activity.log")
        raise ForgedCall(f"Bitrix24 refused the event token ({code})")
    now = timezone.now()
    RobotCall.objects.filter(pk=call.pk, proven_at__isnull=True).update(proven_at=now)
    call.proven_at = call.proven_at or now


def first_request(call: RobotCall, client: B24Client, reads: dict[str, tuple[str, dict]] | None = None) -> BatchResult:
    """The call's reads, behind its proof when it is not proven yet (one request either way, or a share of
    two shared ones when the call runs beside others of its portal)."""
    if call.proven_at:
        vouch(call, client)
        return client.batch(reads) if reads else BatchResult()
    if not call.use_subscription:
        raise ForgedCall("the call carries no event token that Bitrix24 would accept")
    if client.user_token and active_for(call.portal_id) is not None:
        # Beside other calls, a run-as call proves with the portal's token in the shared batch (Bitrix24
        # checks the event token's signature, not who presents it); proven, its token may read in batches
        # shared with the same user's other proven calls (b24app/rest/coalesce.py).
        check(call, B24Client(call.portal).batch(commands(call), halt=True))
        vouch(call, client)
        return client.batch(reads) if reads else BatchResult()
    result = client.batch(commands(call, reads), halt=True)
    err = result.errors.get(PROOF) or {}
    if err.get("error") == "ACCESS_DENIED" and client.user_token:
        # The docs reserve bizproc.activity.log for administrators (the core does not check, U14): a run-as
        # user's token may be refused for that alone.  Prove with the stored admin token (a forged token is
        # refused there too), then read as the user; nothing was read in the halted batch.
        check(call, B24Client(call.portal).batch(commands(call), halt=True))
        return client.batch(reads) if reads else BatchResult()
    check(call, result)
    vouch(call, client)
    result.results.pop(PROOF, None)
    return result


def vouch(call: RobotCall, client: B24Client) -> None:
    """A proven call's run-as token is the user's its call says (the signed event token came with both)."""
    if call.proven_at and client.user_token and call.auth_user_id:
        client.shares_as = call.auth_user_id


def prove(call: RobotCall, client: B24Client) -> None:
    """The proof alone, for calls that read nothing from the CRM before they act."""
    if not call.proven_at:
        first_request(call, client)


def refuse(call: RobotCall, reason: str) -> None:
    """Record a forged call as refused.  It gets no answer: it has no workflow waiting for one."""
    now = timezone.now()
    RobotCall.objects.filter(pk=call.pk).update(state=RobotCall.DONE, answer_state="refused", updated_at=now,
                                               answer_error=reason[:2000], last_error=reason[:2000])
    call.state, call.answer_state = RobotCall.DONE, "refused"
    log.warning("robot call %s (portal %s) refused: %s", call.pk, call.portal_id, reason)
