"""Answering the waiting workflow: ``bizproc.event.send`` exactly once per robot call.

The answer is claimed with a conditional UPDATE (pending -> sending) before the call and marked sent
after; Bitrix24 closes the activity on the first accepted send (spec §4.3, U10), so "sent" is final.

A refused send is classified by its code (``classify``): the workflow is gone (``{"error":"404"}``
"Бизнес-процесс не найден", ``ERROR_CORE``) ends the answer as "failed" — nobody is left waiting;
the portal refusing the app (``NO_AUTH_FOUND``, ``INVALID_CREDENTIALS``, ``insufficient_scope``,
``ACCESS_DENIED``, ``OVERLOAD_LIMIT`` …) keeps the answer pending, flags the portal for its settings
page and retries slowly; anything else (``QUERY_LIMIT_EXCEEDED``, ``INTERNAL_SERVER_ERROR``, 5xx,
unknown codes) is retried with backoff.  Every loop is capped by ``RobotCall.answer_attempts``.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import F
from django.utils import timezone

from b24app.models import Portal
from b24app.rest import B24Client, B24Error
from signing.models import SignatureRequest
from signing.services import result_values, signer_summary

from . import metrics
from .models import RobotCall
from .riders import boarding
from .robots import catalogue

log = logging.getLogger("b24sign.answers")

MAX_LOG = 1000

# How a refused bizproc.event.send is handled, by Bitrix24's code.
GONE = frozenset({"404", "WORKFLOW_NOT_FOUND", "ERROR_WORKFLOW_NOT_FOUND", "ERROR_CORE"})
BLOCKED = frozenset({"NO_AUTH_FOUND", "INVALID_CREDENTIALS", "insufficient_scope", "ACCESS_DENIED",
                     "OVERLOAD_LIMIT", "PAYMENT_REQUIRED", "invalid_grant", "user_access_error", "WRONG_AUTH_TYPE"})
RETRY_ATTEMPTS = 10          # backoff 10 s doubling to 15 min: about 2 h in all
BLOCKED_ATTEMPTS = 96        # one try per BLOCKED_RETRY: about a day for an admin to fix the portal
BLOCKED_RETRY = 900.0        # seconds between tries while the portal is flagged


class AnswerPending(Exception):
    """The answer could not be delivered now; it stays pending and is tried again after ``retry_after``."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


def classify(exc: B24Error) -> str:
    """``gone`` (final), ``blocked`` (portal refuses the app: flag it, retry slowly) or ``retry``."""
    if exc.error in GONE:
        return "gone"
    if exc.error in BLOCKED:
        return "blocked"
    return "retry"


def _retry_delay(attempts: int) -> float:
    return min(900.0, 10.0 * 2 ** max(0, attempts - 1))


def _flag_portal(portal, exc: B24Error) -> None:
    text = f"Bitrix24 refuses the app's answers to workflows: {exc.error}" + \
        (f" ({exc.description})" if exc.description else "")
    now = timezone.now()
    Portal.objects.filter(pk=portal.pk).update(access_problem=text[:500], access_problem_at=now)
    portal.access_problem, portal.access_problem_at = text[:500], now


def _clear_flag(portal) -> None:
    if Portal.objects.filter(pk=portal.pk, access_problem_at__isnull=False).update(access_problem="",
                                                                                 access_problem_at=None):
        portal.access_problem, portal.access_problem_at = "", None


def _wait_while_blocked(portal) -> bool:
    """While the portal is flagged, at most one try per BLOCKED_RETRY: raise instead of calling.  True when
    it is flagged (a try is due)."""
    flagged = Portal.objects.filter(pk=portal.pk).values_list("access_problem_at", flat=True).first()
    if flagged is None:
        return False
    left = (flagged + timedelta(seconds=BLOCKED_RETRY) - timezone.now()).total_seconds()
    if left > 0:
        raise AnswerPending("the portal refuses the app's calls; waiting before the next try", left)
    return True


def log_line(call: RobotCall, message: str, client: B24Client | None = None) -> None:
    """A progress line in the workflow log; never fails the caller (the log is informational)."""
    if not call.use_subscription or call.answer_state == "sent":
        return
    try:
        with boarding(call.portal):  # a waiting call's last request: held work rides in it as in an answer
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
    values = declared_only(call.code, values)
    flagged = call.use_subscription and _wait_while_blocked(call.portal)
    claimed = RobotCall.objects.filter(pk=call.pk, answer_state="pending").update(
        answer_state="sending", answer=values, answer_log=message[:MAX_LOG], updated_at=timezone.now(),
        answer_attempts=F("answer_attempts") + 1)
    if not claimed:
        return False
    if not call.use_subscription:  # the workflow did not wait; there is nobody to answer
        _finish(call, "skipped", "")
        return True
    # This run's claim counted the try: the row was loaded by this run (pipeline.claim, or fresh for a waiting
    # call), and only a claim of the answer counts, so it is the loaded count plus one.
    call.answer_attempts = attempts = (call.answer_attempts or 0) + 1
    client = client or B24Client(call.portal)
    commands = {f"log{i}": ("bizproc.activity.log", {"EVENT_TOKEN": call.event_token, "LOG_MESSAGE": line[:MAX_LOG]})
                for i, line in enumerate(progress or []) if line}
    commands["answer"] = ("bizproc.event.send", {"EVENT_TOKEN": call.event_token, "RETURN_VALUES": values,
                                                 "LOG_MESSAGE": message[:MAX_LOG]})
    try:
        with boarding(call.portal):  # work held for this answer (its CRM card's change) rides in its request
            if len(commands) == 1:
                client.call("bizproc.event.send", commands["answer"][1])
            else:
                result = client.batch(commands)
                err = result.errors.get("answer")
                if err:
                    raise B24Error(str(err.get("error")), str(err.get("error_description", "")),
                                   method="bizproc.event.send")
    except B24Error as exc:
        return _refused(call, exc, attempts)
    except Exception:  # e.g. the rate-limit store is down: give the claim back, or the retry would skip
        # the answer (a resend that Bitrix24 already got is refused and recorded as "failed")
        RobotCall.objects.filter(pk=call.pk, answer_state="sending").update(answer_state="pending")
        raise
    _finish(call, "sent", "")
    if flagged:  # (a portal seen unflagged just before has no flag to clear)
        _clear_flag(call.portal)
    return True


def _refused(call: RobotCall, exc: B24Error, attempts: int) -> bool:
    """A refused send: final when the workflow is gone or the tries ran out, else pending again (raises)."""
    kind = classify(exc)
    if kind == "blocked":
        _flag_portal(call.portal, exc)
    cap = BLOCKED_ATTEMPTS if kind == "blocked" else RETRY_ATTEMPTS
    if kind == "gone" or attempts >= cap:
        # Gone: the workflow finished or was deleted (a resend after a crash to an activity that already
        # closed lands here too); nobody is left waiting.  Out of tries: give up, loudly.
        why = str(exc) if kind == "gone" else f"gave up after {attempts} tries: {exc}"
        _finish(call, "failed", why)
        log.warning("answer for call %s not delivered (%s): %s", call.pk, kind, exc)
        return True
    RobotCall.objects.filter(pk=call.pk, answer_state="sending").update(answer_state="pending")
    delay = BLOCKED_RETRY if kind == "blocked" else (exc.retry_after or _retry_delay(attempts))
    log.info("answer for call %s: %s, retry in %.0fs (%s)", call.pk, kind, delay, exc.error)
    raise AnswerPending(f"Bitrix24: {exc.description or exc.error}", delay) from exc


def _finish(call: RobotCall, state: str, error: str) -> None:
    now = timezone.now()
    done = {"answer_state": state, "answered_at": now, "answer_error": error[:2000], "state": RobotCall.DONE,
            "updated_at": now}
    if call.auth_access_token or call.auth_refresh_token:  # answered: the run-as user's token is done with
        done.update(auth_access_token="", auth_refresh_token="", auth_expires_at=None)
        call.auth_access_token, call.auth_refresh_token, call.auth_expires_at = "", "", None
    RobotCall.objects.filter(pk=call.pk).update(**done)
    call.answer_state, call.answered_at, call.state = state, now, RobotCall.DONE
    metrics.answered(call, state)
    log.info("robot call %s answered: %s", call.pk, state)


def answer_waiting_calls(req: SignatureRequest) -> None:
    """Every workflow still waiting for this (terminal) request hears its outcome, once."""
    for call in RobotCall.objects.filter(signature_request=req, state=RobotCall.WAITING, answer_state="pending") \
            .select_related("portal"):
        try:
            answer(call, result_values(req), f"Signature request {req.status}: {signer_summary(req)}")
        except AnswerPending as exc:  # still pending: the answer_finished_requests sweep tries again
            log.info("answer for waiting call %s deferred: %s", call.pk, exc)


def _declared(robot_code: str) -> dict:
    robot = catalogue().get(robot_code)
    return robot.return_properties if robot else {}


def declared_only(robot_code: str, values: dict) -> dict:
    """Only the robot's declared RETURN_PROPERTIES go into RETURN_VALUES (Bitrix24 drops the others)."""
    robots = catalogue()
    declared = robots[robot_code].return_properties if robot_code in robots else values
    return {k: v for k, v in values.items() if k in declared}


def error_values(robot_code: str, message: str, request_id: str = "") -> dict:
    values = {"status": "error", "error": message[:MAX_LOG]}
    if request_id:
        values["request_id"] = request_id
    return declared_only(robot_code, values)
