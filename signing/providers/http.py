"""The HTTP base every provider client builds on (healthchecks' HttpTransport, adapted).

It goes through the one outbound seam (b24app.http), turns transport failures, 5xx and 429 into
transient ProviderErrors (Celery retries them with backoff), lets each client map 4xx bodies to clear
messages, and refreshes the account's token once on 401 under a per-account lock, so concurrent workers
never rotate a refresh token twice.

Pacing (issue 14): each client paces its account at ``pacing()`` = (rate per second, burst), a leaky bucket
in Redis shared by every worker; ``PROVIDER_PACING`` overrides a provider's defaults (``code=rate/burst``).
A 429 answer pauses the whole account until its ``Retry-After``: every worker waits (or, for a long wait,
retries the task later), so one 429 is not followed by a volley of others.
"""
from __future__ import annotations

import logging
import time

import requests
from django.conf import settings

from b24app import coordination, http
from b24app import metrics as b24metrics
from signing import metrics
from signing.base import ProviderError

log = logging.getLogger("b24sign.providers")


MAX_INLINE_WAIT = 10.0  # longer waits become task retries (retry_after)


class ProviderHTTP:
    base_url: str = ""
    label: str = "provider"
    code: str = ""  # the provider's registry code: its pacing key and PROVIDER_PACING entry

    def __init__(self, account):
        self.account = account

    # -- hooks for subclasses ----------------------------------------------------------------------
    def auth_headers(self) -> dict:
        return {}

    def refresh_auth(self) -> None:
        """Obtain a new access token and store it in ``self.account.credentials`` (called under lock)."""
        raise ProviderError(f"{self.label}: the access token was rejected; reconnect the account",
                            permanent=True, code="auth")

    def is_auth_error(self, resp: requests.Response) -> bool:
        return resp.status_code == 401

    def error_message(self, resp: requests.Response) -> tuple[str, str]:
        """(code, readable message) for a 4xx answer."""
        return str(resp.status_code), resp.text[:300]

    def default_pacing(self) -> tuple[float, float]:
        """(calls per second, burst) for one account; (0, 0) is unpaced."""
        return 0.0, 0.0

    def pacing(self) -> tuple[float, float]:
        override = (getattr(settings, "PROVIDER_PACING", None) or {}).get(self.code)
        return override if override else self.default_pacing()

    def _metric_name(self) -> str:
        return self.code or self.label

    # -- pacing ----------------------------------------------------------------------------------------
    def _bucket(self) -> str:
        return f"{self.code or self.label}:{self.account.pk}"

    def throttle(self) -> None:
        """Wait for this account's turn (bucket and any 429 pause); raise a retry for a long wait."""
        if not getattr(self.account, "pk", None):
            return
        paused_until = coordination.recall(f"provider-pause:{self._bucket()}")
        if paused_until and (wait := float(paused_until) - time.time()) > 0:
            self._wait(wait, "paused by a 429")
        rate, burst = self.pacing()
        if rate <= 0:
            return
        while wait := coordination.take(f"provider:{self._bucket()}", max(burst, 1.0), rate):
            self._wait(wait, "pacing")

    def _wait(self, seconds: float, why: str) -> None:
        if seconds > MAX_INLINE_WAIT:
            raise ProviderError(f"{self.label}: our own request budget for this account is used up; "
                                "retrying later", code="throttled", retry_after=seconds)
        b24metrics.waited(f"provider:{self._metric_name()}", seconds)
        time.sleep(seconds)

    def _paused_by_429(self, retry_after: float) -> None:
        if getattr(self.account, "pk", None):
            coordination.remember(f"provider-pause:{self._bucket()}", time.time() + retry_after, retry_after + 1)

    # -- the call ------------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, auth: bool = True, timeout=None, **kwargs) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base_url.rstrip('/')}/{path.lstrip('/')}"
        extra_headers = kwargs.pop("headers", {})
        self.throttle()
        for attempt in (1, 2):
            headers = {**(self.auth_headers() if auth else {}), **extra_headers}
            metrics.provider_call(self._metric_name())
            try:
                resp = http.request(method, url, headers=headers,
                                    timeout=timeout or (5, settings.PROVIDER_HTTP_TIMEOUT), **kwargs)
            except requests.RequestException as exc:
                metrics.provider_error(self._metric_name(), "network")
                raise ProviderError(f"{self.label} is unreachable ({exc.__class__.__name__})", code="network") from exc
            if auth and attempt == 1 and self.is_auth_error(resp):
                self._refresh_once()
                continue
            break
        if resp.status_code >= 400:
            kind = "429" if resp.status_code == 429 else "5xx" if resp.status_code >= 500 else "4xx"
            metrics.provider_error(self._metric_name(), kind)
        if resp.status_code == 429:
            retry_after = _float(resp.headers.get("Retry-After"), 30.0)
            self._paused_by_429(retry_after)
            raise ProviderError(f"{self.label} rate limit reached", code="429", retry_after=retry_after)
        if resp.status_code >= 500:
            raise ProviderError(f"{self.label} answered HTTP {resp.status_code}", code=str(resp.status_code))
        if resp.status_code >= 400:
            code, message = self.error_message(resp)
            raise ProviderError(f"{self.label}: {message}", permanent=True, code=code)
        return resp

    def _refresh_once(self) -> None:
        seen = dict(self.account.credentials)
        try:
            with coordination.lock(f"provider-token:{self.account.pk}", ttl=60, wait=45):
                self.account.refresh_from_db(fields=["credentials"])
                if self.account.credentials != seen:
                    return  # a peer already refreshed
                self.refresh_auth()
                self.account.save(update_fields=["credentials", "updated_at"])
        except coordination.LockTimeout as exc:
            raise ProviderError(f"{self.label}: token refresh is busy; retrying", code="lock") from exc


def _float(value, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default
