"""The Bitrix24 REST client every part of b24sign calls.

``B24Client(portal).call("crm.item.get", {...})`` takes a slot from the portal's shared leaky bucket,
sends the call with the portal's stored app token, refreshes once on ``expired_token``, backs off on
``QUERY_LIMIT_EXCEEDED``, pauses a method after ``OPERATION_TIME_LIMIT`` until ``operating_reset_at``,
follows a portal rename (302, once the OAuth server confirms it) and remembers it, and raises
:class:`B24Error` for everything else.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any, Iterable
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.utils import timezone

from .. import coordination, http, metrics
from ..models import Portal
from .coalescing import COALESCED, active_for
from .encoding import php_query
from .errors import B24Error, classify_empty_code
from .oauth import app_info, refresh_portal_tokens
from .permissions import is_admin_only

log = logging.getLogger("b24sign.rest")

BATCH_LIMIT = 50
QUERY_LIMIT_RETRIES = 8
OPERATING_LIMIT = 480.0  # seconds of method time per 10 minutes (spec §6.2)
OPERATING_HEADROOM = 0.9


@dataclass
class BatchResult:
    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, dict] = field(default_factory=dict)
    requests: int = 0

    def raise_first(self) -> None:
        for key, err in self.errors.items():
            raise B24Error(str(err.get("error", "ERROR")), str(err.get("error_description", "")), method=key)


class B24Client:
    """``user_token``: act as that user (a robot's run-as user) instead of with the portal's stored admin
    token; it is renewed only through ``user_refresh``, and never used for admin-only methods."""

    def __init__(self, portal, user_token: str = "", user_refresh=None):
        self.portal = portal
        self.user_token = user_token
        self.user_refresh = user_refresh  # () -> a fresh user token (raises B24Error when it cannot)
        self.requests_sent = 0
        # The Bitrix24 user id this run-as token is proven to belong to (the call's event token was accepted):
        # only then may its requests share a batch, and only with other proven tokens of the same user.
        self.shares_as: int | None = None

    # -- public ------------------------------------------------------------------------------------
    def call(self, method: str, params: dict | None = None) -> Any:
        co = self._coalescer() if method in COALESCED else None
        if co is not None:  # shared with the portal's other jobs (rest/coalesce.py)
            return co.call(method, params or {}, client=self)
        return self.call_full(method, params).get("result")

    def _coalescer(self):
        # A run-as user's requests join shared batches only once proven to be that user's, and share them only
        # with the same user's (docs/decisions.md, "Coalescing and run-as users"): the admin's rights are
        # never lent, nor another user's.
        if self.user_token and not self.shares_as:
            return None
        return active_for(self.portal.pk)

    def call_full(self, method: str, params: dict | None = None) -> dict:
        """The whole response body (``result``, ``total``, ``next``, ``time``)."""
        self._require_admin_token([method])
        return self._send(method, params or {})

    def batch(self, calls: dict[str, tuple[str, dict]] | Iterable[tuple[str, str, dict]],
              halt: bool = False, slot_taken: bool = False) -> BatchResult:
        """Run many calls as ``batch`` requests of up to 50 commands each.

        ``calls`` maps a key to ``(method, params)``.  ``$result[key][field]`` references work between
        commands of the same chunk of 50 (Bitrix24 resolves them server-side).  ``slot_taken``: the caller
        already waited for the first request's rate-limit slot (:meth:`wait_for_slot`).
        """
        items = list(calls.items()) if isinstance(calls, dict) else [(k, (m, p)) for k, m, p in calls]
        self._require_admin_token([method for _key, (method, _params) in items])
        co = self._coalescer()
        if co is not None and len(items) <= BATCH_LIMIT:  # shared with the portal's other jobs (rest/coalesce.py)
            return co.submit(dict(items), halt, client=self)
        out = BatchResult()
        for start in range(0, len(items), BATCH_LIMIT):
            chunk = items[start:start + BATCH_LIMIT]
            cmd = {key: f"{method}?{php_query(params or {})}" for key, (method, params) in chunk}
            body = self._send("batch", {"halt": 1 if halt else 0, "cmd": cmd},
                              slot_taken=slot_taken and start == 0).get("result") or {}
            out.requests += 1
            out.results.update(body.get("result") or {})
            errors = body.get("result_error") or {}
            if isinstance(errors, dict):
                out.errors.update(errors)
                methods = dict(chunk)
                for key, err in errors.items():
                    if isinstance(err, dict) and err.get("error") == "ACCESS_DENIED" and key in methods:
                        self._note_admin_denied(methods[key][0])
            if halt and errors:
                break
        return out

    # -- internals ---------------------------------------------------------------------------------
    def _require_admin_token(self, methods) -> None:
        """Admin-only methods never run on the token of a user who is no longer an administrator, nor on a
        robot's run-as user's token."""
        if self.user_token and any(is_admin_only(m) for m in methods):
            raise B24Error("ADMIN_ONLY", "admin-only methods are never called with a user's token", method=methods[0])
        if getattr(self.portal, "token_admin_lost_at", None) and any(is_admin_only(m) for m in methods):
            raise B24Error("ADMIN_TOKEN_REQUIRED", "the stored token's user is no longer a Bitrix24 administrator: "
                           "an administrator must open the application once", method=methods[0])

    def _note_admin_denied(self, method: str) -> None:
        if is_admin_only(method) and not getattr(self.portal, "token_admin_lost_at", None):
            now = timezone.now()
            Portal.objects.filter(pk=self.portal.pk).update(token_admin_lost_at=now)
            self.portal.token_admin_lost_at = now
            log.warning("portal %s: %s denied to the stored token's user; an administrator must open the app",
                        self.portal.member_id, method)

    def wait_for_slot(self, method: str = "batch") -> None:
        """Take the portal's next rate-limit slot now (sleeping until there is one) for a request sent
        right after with ``slot_taken``: the coalescer fills that request while it waits."""
        self._throttle(method)

    def _send(self, method: str, params: dict, slot_taken: bool = False) -> dict:
        refreshed = False
        limit_hits = 0
        redirects = 0
        while True:
            if not slot_taken:
                self._throttle(method)
            slot_taken = False  # a retry of the same request takes a slot of its own
            portal = self.portal
            if not self.user_token and (not portal.access_token or (
                    portal.token_expires_at and portal.token_expires_at <= timezone.now())):
                if not refreshed:  # known expired: refresh first instead of spending a request on a 401
                    refresh_portal_tokens(portal, portal.token_version)
                    refreshed = True
            url = f"{portal.client_endpoint.rstrip('/')}/{method}.json"
            try:
                resp = http.request("POST", url, json={**params, "auth": self.user_token or portal.access_token},
                                    allow_redirects=False)
            except requests.RequestException as exc:
                raise B24Error("CONNECTION_ERROR", exc.__class__.__name__, method=method) from exc
            self.requests_sent += 1
            metrics.inc(metrics.REST_REQUESTS, plan=self.portal.plan)

            if resp.status_code in (301, 302, 307, 308) and redirects < 2:
                redirects += 1
                self._follow_rename(resp.headers.get("Location", ""), method)
                continue
            try:
                data = resp.json()
            except ValueError:
                raise B24Error("BAD_RESPONSE", f"HTTP {resp.status_code}, not JSON", status=resp.status_code,
                               method=method) from None
            if not isinstance(data, dict):
                raise B24Error("BAD_RESPONSE", "unexpected JSON", status=resp.status_code, method=method)
            self._note_operating(method, data.get("time"))
            error = data.get("error")
            description = str(data.get("error_description", "") or "")
            if not error:
                if resp.status_code >= 400 or ("error" in data and description):  # a coded-less RestException
                    raise B24Error(classify_empty_code(method, description, resp.status_code), description,
                                   status=resp.status_code, method=method)
                return data

            if error in ("expired_token", "invalid_token") and self.user_token:
                if self.user_refresh is None or refreshed:
                    raise B24Error("USER_TOKEN_EXPIRED", "the run-as user's authorization is no longer valid",
                                   status=resp.status_code, method=method)
                self.user_token = self.user_refresh()
                refreshed = True
                continue
            if error in ("expired_token", "invalid_token") and not refreshed:
                refresh_portal_tokens(portal, portal.token_version)
                refreshed = True
                continue
            if error == "QUERY_LIMIT_EXCEEDED":
                metrics.inc(metrics.REST_LIMITED, plan=self.portal.plan)
            if error == "QUERY_LIMIT_EXCEEDED" and limit_hits < QUERY_LIMIT_RETRIES:
                limit_hits += 1  # another app on our IP, or clock skew: back off with jitter, then retry
                time.sleep(min(8.0, 0.5 * 1.7 ** limit_hits) * random.uniform(0.5, 1.0))
                continue
            if error == "OPERATION_TIME_LIMIT":
                self._block_method(method, self._reset_at(data.get("time")) or time.time() + 60)
                continue  # _throttle waits, or raises with retry_after
            if error == "ACCESS_DENIED":
                self._note_admin_denied(method)
            raise B24Error(str(error), description, status=resp.status_code, method=method)

    def _throttle(self, method: str) -> None:
        pk = self.portal.pk
        waited = 0.0
        blocked_until = coordination.recall(f"operating:{pk}:{method}")
        if blocked_until and blocked_until > time.time():
            wait = blocked_until - time.time()
            if wait > settings.B24_MAX_INLINE_WAIT:
                raise B24Error("OPERATION_TIME_LIMIT", "method paused until its time budget resets",
                               method=method, retry_after=wait)
            time.sleep(wait)
            waited += wait
        burst, drain = self.portal.rate_limits()
        while True:
            wait = coordination.take(f"portal:{pk}", burst, drain)
            if not wait:
                return
            if waited + wait > settings.B24_MAX_INLINE_WAIT:
                raise B24Error("RATE_LIMITED", "portal request budget exhausted; retry later", method=method,
                               retry_after=wait)
            wait += random.uniform(0, 0.05)
            metrics.waited("bitrix24", wait)
            time.sleep(wait)
            waited += wait

    def _note_operating(self, method: str, timing) -> None:
        if not isinstance(timing, dict):
            return
        try:
            operating = float(timing.get("operating") or 0)
        except (TypeError, ValueError):
            return
        if operating >= OPERATING_LIMIT * OPERATING_HEADROOM:
            reset = self._reset_at(timing)
            if reset:
                self._block_method(method, reset)

    def _block_method(self, method: str, until: float) -> None:
        coordination.remember(f"operating:{self.portal.pk}:{method}", until, max(1.0, until - time.time()))
        log.warning("portal %s: %s paused for %.0fs (operating budget)", self.portal.member_id, method,
                    until - time.time())

    @staticmethod
    def _reset_at(timing) -> float | None:
        if not isinstance(timing, dict) or not timing.get("operating_reset_at"):
            return None
        value = timing["operating_reset_at"]
        try:
            return float(value)
        except (TypeError, ValueError):
            try:
                return datetime.fromisoformat(str(value)).astimezone(dt_timezone.utc).timestamp()
            except ValueError:
                return None

    def _follow_rename(self, location: str, method: str) -> None:
        """Bitrix24 answers a renamed portal's old host with a 302: move the portal there for good, but
        only once the trusted OAuth server's ``app.info`` says our token's portal now lives there (a
        302 alone could come from whoever holds the old host, and would get our tokens next)."""
        parts = urlsplit(location)
        if not parts.netloc or (parts.scheme != "https" and not settings.ALLOW_HTTP_PORTALS):
            raise B24Error("BAD_REDIRECT", "portal redirected to an unusable location", method=method)
        try:
            info = app_info(self.portal.access_token, self.portal.server_endpoint)
        except B24Error as exc:
            raise B24Error("BAD_REDIRECT", f"portal move could not be confirmed ({exc.error})", method=method) from exc
        install = info.get("install") if isinstance(info.get("install"), dict) else {}
        confirmed = urlsplit(str(install.get("client_endpoint") or info.get("client_endpoint") or ""))
        member_id = str(install.get("member_id") or info.get("member_id") or "")
        if confirmed.netloc.lower() != parts.netloc.lower() or member_id != self.portal.member_id:
            log.warning("portal %s: redirect to %s not confirmed by the OAuth server; not followed",
                        self.portal.member_id, parts.netloc)
            raise B24Error("BAD_REDIRECT", "portal redirect not confirmed by the OAuth server", method=method)
        endpoint = f"{parts.scheme}://{parts.netloc}/rest/"
        Portal.objects.filter(pk=self.portal.pk).update(domain=parts.netloc, client_endpoint=endpoint)
        self.portal.domain, self.portal.client_endpoint = parts.netloc, endpoint
        log.info("portal %s moved to %s", self.portal.member_id, parts.netloc)


def call_with_token(client_endpoint: str, access_token: str, method: str, params: dict | None = None):
    """One call with a token that is not (yet) stored on a portal: install-time checks only."""
    url = f"{client_endpoint.rstrip('/')}/{method}.json"
    try:
        resp = http.request("POST", url, json={**(params or {}), "auth": access_token}, allow_redirects=False,
                            timeout=(5, 15))
        data = resp.json()
    except (requests.RequestException, ValueError) as exc:
        raise B24Error("CONNECTION_ERROR", exc.__class__.__name__, method=method) from exc
    if not isinstance(data, dict) or data.get("error") or resp.status_code >= 400:
        data = data if isinstance(data, dict) else {}
        description = str(data.get("error_description", "") or "")
        raise B24Error(str(data.get("error") or classify_empty_code(method, description, resp.status_code)),
                       description, status=resp.status_code, method=method)
    return data.get("result")
