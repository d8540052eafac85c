"""Shared by the signNow and Evia emulators: request helpers and ``ProviderEmulator`` (fault injection,
a detailed call log, webhook delivery)."""
from __future__ import annotations

import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import deque

from .base import EmulatorServer, Request, Response, json_response

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE_RE = re.compile(r"^\+?[0-9][0-9\s\-()]{5,20}$")


def parse_multipart(req: Request) -> tuple[dict, dict] | None:
    """``(fields, files)`` of a multipart/form-data body; files map name -> (filename, bytes, content_type)."""
    ctype = req.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        return None
    m = re.search(r'boundary="?([^";]+)"?', ctype)
    if not m:
        return None
    delim = b"--" + m.group(1).encode()
    fields: dict = {}
    files: dict = {}
    for part in req.body.split(delim)[1:]:
        if part.startswith(b"--"):
            break
        if part.startswith(b"\r\n"):
            part = part[2:]
        head, _, data = part.partition(b"\r\n\r\n")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        disp = headers.get("content-disposition", "")
        name_m = re.search(r'\bname="([^"]*)"', disp)
        if not name_m:
            continue
        file_m = re.search(r'filename="([^"]*)"', disp)
        if file_m is not None:
            files[name_m.group(1)] = (file_m.group(1), data, headers.get("content-type", ""))
        else:
            fields[name_m.group(1)] = data.decode("utf-8", "replace")
    return fields, files


def new_id() -> str:
    return secrets.token_hex(20)


def is_email(v) -> bool:
    return isinstance(v, str) and bool(EMAIL_RE.match(v)) and len(v) <= 150


def as_int(v):
    """int for ints and digit strings, else None (bools are not ints here)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()):
        return int(v)
    return None


def as_flag(v):
    """0/1 for the 0|1|"0"|"1"|true|false flags, else None."""
    if v in (0, 1, "0", "1") and not isinstance(v, float):
        return int(v)
    if isinstance(v, bool):
        return int(v)
    if v in ("true", "false"):
        return int(v == "true")
    return None


class ProviderEmulator(EmulatorServer):
    """EmulatorServer + fault injection, a detailed call log and webhook delivery (shared by both providers)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.lock = threading.RLock()
        self.calls: list[dict] = []
        self.delay: float = 0.0
        self.rate_limit_per_s: float | None = None
        self._recent: deque = deque()
        self._outage_until = 0.0
        self._outage_status = 503
        self._fail_queue: list[int] = []
        self.webhook_deliveries: list[dict] = []
        self.webhook_timeout = 10.0
        # ``webhook_sender(url, body: bytes, headers: dict) -> status`` replaces HTTP delivery when set
        # (e.g. to feed the Django test client); ``async_webhooks`` posts from a background thread.
        self.webhook_sender = None
        self.async_webhooks = False

    # --- fault injection -------------------------------------------------------------------------------
    def outage(self, seconds: float, status: int = 503) -> None:
        self._outage_until = time.time() + seconds
        self._outage_status = status

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        with self.lock:
            self._fail_queue.extend([status] * n)

    def start(self):
        super().start()
        return self

    def _fault(self, req: Request) -> Response | None:
        if time.time() < self._outage_until:
            return json_response({"error": "Service Unavailable"}, self._outage_status)
        with self.lock:
            if self._fail_queue:
                return json_response({"error": "Internal Server Error"}, self._fail_queue.pop(0))
            if self.rate_limit_per_s:
                t = time.time()
                while self._recent and self._recent[0] < t - 1.0:
                    self._recent.popleft()
                if len(self._recent) >= self.rate_limit_per_s:
                    return json_response({"error": "Too Many Requests"}, 429, **{"Retry-After": "1"})
                self._recent.append(t)
        return None

    def dispatch(self, req: Request) -> Response:
        if self.delay:
            time.sleep(self.delay)
        resp = self._fault(req)
        if resp is not None:
            with self._lock:
                self.requests_log.append((req.method, req.path, resp.status))
        else:
            resp = super().dispatch(req)
        try:
            body = req.json() if req.content_type == "application/json" else None
        except ValueError:
            body = None
        with self.lock:
            self.calls.append({"method": req.method, "path": req.path, "query": dict(req.query),
                               "headers": dict(req.headers), "json": body, "status": resp.status,
                               "ts": time.time()})
        return resp

    def calls_to(self, method: str, path_regex: str) -> list[dict]:
        return [c for c in self.calls if c["method"] == method and re.search(path_regex, c["path"])]

    # --- webhooks ---------------------------------------------------------------------------------------
    def _post(self, url: str, body: bytes, headers: dict, record: dict) -> None:
        record.update(url=url, body=body, headers=dict(headers))
        try:
            if self.webhook_sender is not None:
                record["status"] = self.webhook_sender(url, body, dict(headers))
            else:
                rq = urllib.request.Request(url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(rq, timeout=self.webhook_timeout) as r:
                    record["status"] = r.status
        except urllib.error.HTTPError as exc:
            record["status"] = exc.code
        except Exception as exc:  # no retry, like the providers
            record["error"] = repr(exc)
        with self.lock:
            self.webhook_deliveries.append(record)

    def _post_all(self, batch: list[tuple], gap: float = 0.0) -> None:
        """batch of (url, body, headers, record); posted in order, ``gap`` seconds apart."""
        def run():
            for i, item in enumerate(batch):
                if i and gap:
                    time.sleep(gap)
                self._post(*item)
        if not batch:
            return
        if self.async_webhooks:
            threading.Thread(target=run, daemon=True).start()
        else:
            run()
