"""The signNow emulator behind ``bench/e2e.py --provider signnow``: a real HTTP server in the bench process.

``start(limit)`` runs ``tests.emulators.signnow.SignNowEmulator`` with its rate limit on (``rate_limit_per_s``:
more than ``limit`` requests within one second answer 429 with ``Retry-After: 1``), counted **per account**
(per bearer token, as a provider counts its users' calls) rather than for the whole emulator, so P portals with
one account each get P budgets.  ``connect(portal, emu)`` connects the portal's default signNow account
through the product's own path (``signing.services.connect_account``: password grant, ``GET /user``, the
callback subscriptions).  ``summary(emu, sends, ...)`` gives the calls per send, by endpoint, the 429s and the
provider floor.
"""
from __future__ import annotations

import base64
import math
import re
import threading
import time
from collections import Counter, deque

from tests.emulators.base import Request, Response, json_response
from tests.emulators.signnow import SignNowEmulator

BASIC = base64.b64encode(b"bench-client:bench-secret").decode()
OWNER, PASSWORD = "owner@acme.test", "pw"
_ID = re.compile(r"/[0-9a-f]{16,}")


class PerAccountLimitedSignNow(SignNowEmulator):
    """The emulator's rate limit (429 + ``Retry-After: 1`` beyond ``N`` requests within one second), counted
    per Authorization header: one window per account (token grants by the app's Basic token share one).
    ``account_limit_per_s = N`` switches it on; everything else is the plain emulator."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.account_limit_per_s: float | None = None
        self._windows: dict[str, deque] = {}
        self._window_lock = threading.Lock()

    def _fault(self, req: Request) -> Response | None:
        resp = super()._fault(req)  # outages, injected failures (its own, emulator-wide limit stays off)
        limit = self.account_limit_per_s
        if resp is not None or not limit:
            return resp
        with self._window_lock:
            t = time.time()
            recent = self._windows.setdefault(req.headers.get("authorization", ""), deque())
            while recent and recent[0] < t - 1.0:
                recent.popleft()
            if len(recent) >= limit:
                return json_response({"error": "Too Many Requests"}, 429, **{"Retry-After": "1"})
            recent.append(t)
        return None


def start() -> PerAccountLimitedSignNow:
    return PerAccountLimitedSignNow(basic_token=BASIC, users={OWNER: PASSWORD}).start()


def connect(portal, emu, app_url: str) -> None:
    """The portal's default signNow account, connected as an admin would (settings page / manage.py); its
    callbacks are subscribed at ``app_url`` (gunicorn)."""
    from django.conf import settings

    from signing import services

    settings.SIGNNOW_API_BASE, settings.APP_BASE_URL = emu.base_url, app_url
    _, warning = services.connect_account(portal, "signnow", {"basic_token": BASIC, "username": OWNER,
                                                              "password": PASSWORD}, make_default=True)
    if warning:
        raise SystemExit(f"signNow account of {portal.member_id[:8]}: {warning}")


def reset_counts(emu) -> None:
    with emu.lock:
        emu.calls.clear()
    with emu._lock:
        emu.requests_log.clear()


def endpoint(method: str, path: str) -> str:
    return f"{method} {_ID.sub('/{id}', path)}"


def summary(emu, sends: int, accounts: int, rate: float, burst: float) -> dict:
    """Calls per send (all HTTP requests the emulator received during the run), by endpoint, 429s, and the
    provider floor: every account makes ``calls / accounts`` calls at ``rate`` per second after its burst."""
    with emu.lock:
        calls = list(emu.calls)
    ok = [c for c in calls if c["status"] != 429]
    by_endpoint = Counter(endpoint(c["method"], c["path"]) for c in ok)
    statuses = Counter(c["status"] for c in calls)
    per_account = len(ok) / max(1, accounts)
    floor = max(0.0, per_account - burst) / rate if rate > 0 else 0.0
    ts = [c["ts"] for c in calls]
    return {
        "sn_calls": len(calls), "sn_ok": len(ok), "sn_429": statuses.get(429, 0),
        "sn_per_send": len(ok) / max(1, sends), "sn_by_endpoint": dict(by_endpoint),
        "sn_statuses": {str(k): v for k, v in sorted(statuses.items())},
        "sn_span": (max(ts) - min(ts)) if ts else 0.0, "sn_first": min(ts) if ts else None,
        "floor": floor, "rate": rate, "burst": burst,
    }


def default_limit(rate: float, burst: float) -> int:
    """The emulator's per-account limit when none is given: the most a ``rate``/``burst`` bucket can let
    through within one second (the burst plus one second's drain), i.e. pacing at the limit."""
    return max(1, math.ceil(rate + burst)) if rate > 0 else 0
