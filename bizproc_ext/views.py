"""The robot handler: what Bitrix24's queue server calls.

The queue server never retries: a call we fail to record is lost and its workflow waits forever.  So
the handler only verifies and records, and answers at once; everything else is the worker's.  The row is
the outbox: the drainer (drainer.py) publishes committed rows in batches, so the request path is one
INSERT and a cached portal check (issue 14), and a broker outage never costs a call.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.db import DataError, IntegrityError, InterfaceError, OperationalError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from b24app.forms import MalformedForm, php_form
from b24app.lifecycle import Rejected, forget_verified, verified_portal_id
from b24app.models import Portal

from . import metrics
from .models import RobotCall
from .parsing import MalformedCall, envelope, typed_properties
from .robots import catalogue
from .secrets import seal

log = logging.getLogger("b24sign.robots")


def _refuse(status: int, message: str) -> JsonResponse:
    metrics.refused(status)
    return JsonResponse({"error": message}, status=status)


# The two answers the queue server gets for a stored call, encoded once: JsonResponse's encoder per call
# is a measurable share of the handler (bench/handler.py).
_ACCEPTED = {status: json.dumps({"status": status}).encode() for status in ("queued", "duplicate")}


def _accepted(status: str) -> HttpResponse:
    return HttpResponse(_ACCEPTED[status], content_type="application/json")


@csrf_exempt
@require_POST
def robot_handler(request: HttpRequest, code: str) -> HttpResponse:
    robot = catalogue().get(code)
    if robot is None:
        return _refuse(404, "unknown robot")
    if int(request.META.get("CONTENT_LENGTH") or 0) > settings.B24_ROBOT_MAX_BODY:  # digits: middleware
        return _refuse(413, "request body too large")
    try:
        form = php_form(request)
        call = envelope(form, code)
        portal_id = verified_portal_id(form)  # the row's id is all the handler stores
    except (RequestDataTooBig, TooManyFieldsSent):
        return _refuse(413, "request body too large")
    except (MalformedCall, MalformedForm) as exc:
        return _refuse(400, str(exc))
    except Rejected as exc:
        return _refuse(exc.status, exc.message)

    if robot.use_subscription and not call.use_subscription:
        # A robot registered with USE_SUBSCRIPTION=Y is always called with "Y"; without it the event token
        # proves nothing (the activity closed at once), so such a call could never be proven.
        return _refuse(400, "use_subscription must be Y for this robot")
    values, errors = typed_properties(robot, call.raw_properties)
    values = seal(robot, values)  # the signer's password is never stored in clear
    auth = call.auth
    fields = dict(code=code, event_token=call.event_token, workflow_id=call.workflow_id,
                  document_id=call.document_id, document_type=call.document_type, properties=values,
                  input_errors=errors, use_subscription=call.use_subscription,
                  timeout_duration=call.timeout_duration, queued_ts=_epoch(call.ts),
                  auth_user_id=_user_id(auth.get("user_id")), **_user_token(auth))
    for fresh in (False, True):
        try:
            _record(portal_id=portal_id, **fields)
            metrics.received(code)
            return _accepted("queued")  # the drainer publishes it (drainer.py)
        except IntegrityError as exc:
            if _constraint(exc) == "robot_call_once":
                metrics.duplicate(code)
                return _accepted("duplicate")  # same event_token delivered again: nothing more
            if fresh or Portal.objects.filter(pk=portal_id).exists():
                log.error("robot call for portal %s not stored: %s", portal_id, exc)
                return _refuse(400, "the call could not be stored")
        except DataError as exc:  # a value the parser let through that PostgreSQL refuses: never a silent 200
            log.error("robot call for portal %s not stored: %s", portal_id, exc)
            return _refuse(400, "the call could not be stored")
        # The cached portal row went away (purged, reinstalled): check the portal again, once.
        forget_verified(str(auth.get("member_id", "")))
        try:
            portal_id = verified_portal_id(form)
        except Rejected as exc:
            return _refuse(exc.status, exc.message)
    return _refuse(400, "the call could not be stored")


def _record(**fields) -> int:
    """Insert the call.  In autocommit mode (production) the INSERT is its own transaction: one round
    trip instead of BEGIN/INSERT/COMMIT (bench/handler.py).  Inside an outer transaction (tests,
    ATOMIC_REQUESTS) a savepoint keeps a duplicate's IntegrityError from breaking it."""
    connection = transaction.get_connection()
    if connection.in_atomic_block:
        with transaction.atomic():
            return RobotCall.insert(**fields)
    # Django's health check (CONN_HEALTH_CHECKS) costs a SELECT 1 round trip before the INSERT on every call;
    # the handler checks after a failure instead: a dead connection (PostgreSQL restarted, idle kill) is
    # reopened and the INSERT sent once more.  Had the first one landed, the second is a duplicate (200).
    connection.health_check_done = True
    try:
        return RobotCall.insert(**fields)
    except (OperationalError, InterfaceError):
        if connection.is_usable():
            raise
        connection.close()
        return RobotCall.insert(**fields)


def _epoch(value):
    try:
        return datetime.fromtimestamp(int(value), tz=dt_timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


PG_INT_MAX = 2**31 - 1


def _user_id(value):
    """A Bitrix24 user id (1..2^31-1), else None: it is informational, never worth losing the call for."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if 0 < number <= PG_INT_MAX else None


def _user_token(auth: dict) -> dict:
    """The run-as user's token and when it expires (``expires`` is epoch seconds, else ``expires_in``)."""
    token = auth.get("access_token")
    if not isinstance(token, str) or not token.strip() or len(token) > 2000:
        return {}
    expires = _epoch(auth.get("expires"))
    if expires is None:
        seconds = str(auth.get("expires_in") or "").strip()
        lifetime = min(int(seconds), 86400) if seconds.isdigit() else 3600
        expires = datetime.now(dt_timezone.utc) + timedelta(seconds=lifetime)
    refresh = auth.get("refresh_token")
    refresh = refresh.strip() if isinstance(refresh, str) and len(refresh) <= 2000 else ""
    return {"auth_access_token": token.strip(), "auth_refresh_token": refresh, "auth_expires_at": expires}


def _constraint(exc: IntegrityError) -> str:
    diag = getattr(exc.__cause__, "diag", None)
    return str(getattr(diag, "constraint_name", "") or "")
