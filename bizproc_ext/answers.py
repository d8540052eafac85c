"""Answering the waiting workflow: ``bizproc.event.send`` exactly once per robot call.

The answer is claimed with a conditional UPDATE (pending -> sending) before the call and marked sent
after; Bitrix24 closes the activity on the first accepted send (spec §4.3, U10), so "sent" is final.  A
transient failure puts the claim back for a retry; a token Bitrix24 no longer accepts (workflow
cancelled, robot deleted) ends the call as "failed" — nobody is left waiting for it.
"""
from __future__ import annotations

import logging

from django.utils import timezone

from b24app.rest import B24Client, B24Error
from signing.models import SignatureRequest
from signing.services import result_values, signer_summary

from .models import RobotCall
from .robots import catalogue

log = logging.getLogger("b24sign.answers")

MAX_LOG = 1000


def log_line(call: RobotCall, message: str, client: B24Client | None = None) -> None:
    """A progress line in the workflow log; never fails the caller (the log is informational)."""
    if not call.use_subscription or call.answer_state == "sent":
        return
    try:
        (client or B24Client(call.portal)).call("bizproc.activity.log",
                                               {"EVENT_TOKEN": call.event_token, "LOG_MESSAGE": message[:MAX_LOG]})
    except B24Error as exc:
        log.info("activity.log for call %s failed: %s", call.pk, exc.error)


def answer(call: RobotCall, values: dict, message: str = "", *, progress: list[str] | None = None,
           client: B24Client | None = None) -> bool:
    """Send the one answer.  ``progress`` lines go out in the same batch request, before it.

    Returns False when the call had already been answered (or is being answered elsewhere).
    """
    values = {k: ("" if v is None else v) for k, v in values.items()}
    if getattr(call, "open_request", "") and "open_request" in _declared(call.code):
        values.setdefault("open_request", call.open_request)
    claimed = RobotCall.objects.filter(pk=call.pk, answer_state="pending").update(
        answer_state="sending", answer=values, answer_log=message[:MAX_LOG], updated_at=timezone.now())
    if not claimed:
        return False
    if not call.use_subscription:  # the workflow did not wait; there is nobody to answer
        _finish(call, "skipped", "")
        return True
    client = client or B24Client(call.portal)
    commands = {f"log{i}": ("bizproc.activity.log", {"EVENT_TOKEN": call.event_token, "LOG_MESSAGE": line[:MAX_LOG]})
                for i, line in enumerate(progress or []) if line}
    commands["answer"] = ("bizproc.event.send", {"EVENT_TOKEN": call.event_token, "RETURN_VALUES": values,
                                                 "LOG_MESSAGE": message[:MAX_LOG]})
    try:
        if len(commands) == 1:
            client.call("bizproc.event.send", commands["answer"][1])
        else:
            result = client.batch(commands)
            err = result.errors.get("answer")
            if err:
                raise B24Error(str(err.get("error")), str(err.get("error_description", "")),
                               method="bizproc.event.send")
    except B24Error as exc:
        # A 4xx (other than 429) is Bitrix24 refusing this token, e.g. a resend after a crash to an activity
        # that already closed (spec §4.3: error code unconfirmed): it will refuse it again; don't retry.
        refused = exc.status is not None and 400 <= exc.status < 500 and exc.status != 429
        if exc.transient and not refused:
            RobotCall.objects.filter(pk=call.pk, answer_state="sending").update(answer_state="pending")
            raise
        # ACCESS_DENIED & co.: the token is no longer valid (workflow stopped); record and move on.
        _finish(call, "failed", str(exc))
        log.warning("answer for call %s refused: %s", call.pk, exc)
        return True
    except Exception:  # e.g. the rate-limit store is down: give the claim back, or the retry would skip
        # the answer (a resend that Bitrix24 already got is refused and recorded as "failed")
        RobotCall.objects.filter(pk=call.pk, answer_state="sending").update(answer_state="pending")
        raise
    _finish(call, "sent", "")
    return True


def _finish(call: RobotCall, state: str, error: str) -> None:
    now = timezone.now()
    RobotCall.objects.filter(pk=call.pk).update(answer_state=state, answered_at=now, answer_error=error[:2000],
                                               state=RobotCall.DONE, updated_at=now)
    call.answer_state, call.answered_at, call.state = state, now, RobotCall.DONE


def answer_waiting_calls(req: SignatureRequest) -> None:
    """Every workflow still waiting for this (terminal) request hears its outcome, once."""
    for call in RobotCall.objects.filter(signature_request=req, state=RobotCall.WAITING, answer_state="pending"):
        answer(call, result_values(req), f"Signature request {req.status}: {signer_summary(req)}")


def _declared(robot_code: str) -> dict:
    robot = catalogue().get(robot_code)
    return robot.return_properties if robot else {}


def error_values(robot_code: str, message: str, request_id: str = "") -> dict:
    values = {"status": "error", "error": message[:MAX_LOG]}
    if request_id:
        values["request_id"] = request_id
    declared = catalogue()[robot_code].return_properties if robot_code in catalogue() else values
    return {k: v for k, v in values.items() if k in declared}
