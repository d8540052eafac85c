"""Shared pieces of the Bitrix24 emulator: errors, token records, the leaky bucket, the time block."""
from __future__ import annotations

import secrets
import string
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..base import json_response

TOKEN_TTL = 3600


class B24Error(Exception):
    """A documented REST error: answered as ``{"error": code, "error_description": text}`` with ``status``."""

    def __init__(self, code: str, description: str, status: int = 400, **extra):
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.status = status
        self.extra = extra

    def body(self) -> dict:
        return {"error": self.code, "error_description": self.description, **self.extra}

    def response(self):
        return json_response(self.body(), self.status)


def no_auth() -> B24Error:
    return B24Error("NO_AUTH_FOUND", "Wrong authorization data", 401)


def expired() -> B24Error:
    return B24Error("expired_token", "The access token provided has expired", 401)


def rand_hex(n: int) -> str:
    return secrets.token_hex((n + 1) // 2)[:n]


def rand_alnum(n: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).astimezone().isoformat(timespec="seconds")


@dataclass
class AccessToken:
    token: str
    member_id: str
    user_id: int
    expires: float
    revoked: bool = False

    @property
    def expired(self) -> bool:
        return time.time() >= self.expires


@dataclass
class RefreshToken:
    token: str
    member_id: str
    user_id: int
    used: bool = False
    revoked: bool = False


@dataclass
class AuthCode:
    code: str
    member_id: str
    user_id: int
    expires: float
    used: bool = False


class LeakyBucket:
    """Each request adds 1; the level drains ``drain`` per second; a request that would go above ``burst`` is refused."""

    def __init__(self, burst: float, drain: float):
        self.burst = burst
        self.drain = drain
        self.level = 0.0
        self.max_level = 0.0
        self._t = time.monotonic()
        self._lock = threading.Lock()

    def _drain(self) -> None:
        t = time.monotonic()
        self.level = max(0.0, self.level - (t - self._t) * self.drain)
        self._t = t

    def hit(self) -> bool:
        with self._lock:
            self._drain()
            if self.level + 1 > self.burst + 1e-9:
                return False
            self.level += 1
            self.max_level = max(self.max_level, self.level)
            return True

    def current(self) -> float:
        with self._lock:
            self._drain()
            return self.level

    def reset(self) -> None:
        with self._lock:
            self.level = 0.0
            self._t = time.monotonic()


class OperatingBudget:
    """Per-method seconds used in the last 10 minutes (``time.operating``); over ``limit`` -> 429."""

    WINDOW = 600.0

    def __init__(self):
        self.limit: float | None = None  # seconds per 10 min; None = off
        self.cost: float = 0.0  # seconds charged per call (and per batch command)
        self.costs: dict[str, float] = {}  # per-method override
        self._used: dict[str, list[tuple[float, float]]] = {}
        self._lock = threading.Lock()

    def _window(self, method: str) -> list[tuple[float, float]]:
        now = time.time()
        entries = [e for e in self._used.get(method, []) if e[0] > now - self.WINDOW]
        self._used[method] = entries
        return entries

    def check(self, method: str) -> tuple[bool, float, int]:
        """(allowed, operating, operating_reset_at) before the call."""
        with self._lock:
            entries = self._window(method)
            used = sum(c for _, c in entries)
            reset_at = int((entries[0][0] if entries else time.time()) + self.WINDOW)
            if self.limit is not None and used >= self.limit:
                return False, used, reset_at
            return True, used, reset_at

    def charge(self, method: str) -> tuple[float, int]:
        with self._lock:
            cost = self.costs.get(method, self.cost)
            entries = self._window(method)
            if cost:
                entries.append((time.time(), cost))
            used = sum(c for _, c in entries)
            reset_at = int((entries[0][0] if entries else time.time()) + self.WINDOW)
            return used, reset_at


def time_block(start: float, operating: float = 0.0, reset_at: int | None = None) -> dict:
    finish = time.time()
    return {
        "start": start,
        "finish": finish,
        "duration": finish - start,
        "processing": max(0.0, finish - start - 0.0001),
        "date_start": iso(start),
        "date_finish": iso(finish),
        "operating_reset_at": reset_at if reset_at is not None else int(start + 600),
        "operating": operating,
    }


@dataclass
class Stats:
    requests: int = 0
    by_method: Counter = field(default_factory=Counter)
    errors_by_code: Counter = field(default_factory=Counter)
    rejected_503: int = 0
    rejected_429: int = 0
    rejected_401: int = 0
    injected_faults: int = 0
    max_bucket_level: float = 0.0
    event_send_calls: int = 0
    activity_log_calls: int = 0
    batch_calls: int = 0
    downloads: int = 0
    downloads_refused: int = 0
    robot_deliveries: int = 0
    event_deliveries: int = 0
    redirects: int = 0


def start_server(server) -> None:
    """EmulatorServer.start() with a short poll interval, so stop() (shutdown) returns in ~50 ms, not 0.5 s."""
    server._thread = threading.Thread(target=lambda: server.httpd.serve_forever(poll_interval=0.05),
                                      name=server.name, daemon=True)
    server._thread.start()
