"""Helpers for the fault-injection suite: a real Celery worker process, a private Redis, request gates.

Everything here is for driving faults from the test process; the product code under test is unchanged.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.1, message="condition"):
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds.
    ``message`` may be a callable, evaluated only on failure (e.g. to show a worker's log)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for "
                                 f"{message() if callable(message) else message}")
        time.sleep(interval)


def database_url() -> str:
    """pytest-django's test database, as a URL a subprocess can use."""
    from django.db import connection

    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class CeleryWorker:
    """``celery -A config worker --pool=prefork --concurrency=N`` in its own process group.

    ``kill()`` SIGKILLs the whole group (main process and pool children), the way an OOM kill or a lost
    container does; ``stop()`` is the same and is always called by the fixture's teardown.
    """

    def __init__(self, env: dict, log_path: Path, concurrency: int = 1):
        self.env = env
        self.log_path = log_path
        self.concurrency = concurrency
        self.proc: subprocess.Popen | None = None
        self.name = f"rel-{uuid.uuid4().hex[:8]}@%h"

    def start(self, timeout: float = 60.0) -> "CeleryWorker":
        self._log = open(self.log_path, "ab")
        self._offset = self.log_path.stat().st_size
        cmd = [CELERY, "-A", "config", "worker", "--pool=prefork", f"--concurrency={self.concurrency}",
               "--loglevel=INFO", "-n", self.name, "--without-gossip", "--without-mingle", "--without-heartbeat"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_until(lambda: self._ready() or self._died(), timeout, 0.1, "the Celery worker to be ready")
        if self.proc.poll() is not None:
            raise AssertionError(f"the Celery worker exited at start:\n{self.log()[-3000:]}")
        return self

    def _ready(self) -> bool:
        return bool(re.search(r" ready\.", self.log()))

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def log(self) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._offset)
                return fh.read().decode("utf-8", "replace")
        except (FileNotFoundError, AttributeError):
            return ""

    def kill(self) -> None:
        """SIGKILL the worker's process group and wait until it is gone."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        # pool children were in the same group; give the kernel a moment to reap them
        wait_until(lambda: not _group_alive(self.proc.pid), 10, 0.05, "the worker's children to die")

    stop = kill

    def close(self) -> None:
        self.kill()
        if getattr(self, "_log", None):
            self._log.close()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def free_port(preferred: int) -> int:
    for port in [preferred, *range(preferred + 1, preferred + 50)]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port for the private redis-server")


class RedisServer:
    """A private, non-persistent redis-server on its own port (never the shared one on 6379)."""

    def __init__(self, port: int, workdir: Path):
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server is not installed")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until(self.ping, 20, 0.05, f"redis-server on :{self.port}")
        return self

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self, down_for: float = 0.0) -> None:
        """Crash it (everything in memory is lost: no persistence), stay down a while, start again."""
        self.kill()
        time.sleep(down_for)
        self.start()


@contextmanager
def celery_broker(url: str):
    """Point this process's Celery app (used by the live server's publishes) at another broker."""
    from config.celery import app

    old, old_env = app.conf.get("broker_url"), os.environ.get("CELERY_BROKER_URL")
    app.conf.broker_url = url
    os.environ["CELERY_BROKER_URL"] = url  # Celery prefers this variable over its configuration
    app._after_fork()  # drop cached connection and producer pools
    try:
        yield
    finally:
        app.conf.broker_url = old
        if old_env is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = old_env
        app._after_fork()


class Gate:
    """Hold matching requests inside an emulator until released.  The request then still happens (as when
    the caller died or gave up while the server was working on it), or with ``drop`` never does."""

    def __init__(self, emulator, method: str, path_regex: str, times: int = 1, hold: float | None = None,
                 drop: bool = False, body_regex: str = ""):
        self.emulator, self.method, self.pattern = emulator, method, re.compile(path_regex)
        self.body = re.compile(body_regex.encode()) if body_regex else None  # e.g. a batch carrying one method
        self.remaining = times
        self.hold = hold  # seconds; None = until release()
        self.drop = drop  # True: the held request never reaches the emulator (lost on the way)
        self.arrived = threading.Event()
        self.released = threading.Event()
        self._original = emulator.dispatch
        self._lock = threading.Lock()
        emulator.dispatch = self._dispatch

    def _dispatch(self, req):
        matched = False
        if req.method == self.method and self.pattern.search(req.path) and (
                self.body is None or self.body.search(req.body or b"")):
            with self._lock:
                if self.remaining:
                    self.remaining -= 1
                    matched = True
        if matched:
            self.arrived.set()
            if self.hold is not None:
                time.sleep(self.hold)
            else:
                self.released.wait(60)
            if self.drop:
                from tests.emulators.base import json_response

                return json_response({"error": "CONNECTION_LOST", "error_description": "dropped by the test"}, 502)
        return self._original(req)

    def release(self) -> None:
        self.released.set()

    def remove(self) -> None:
        self.released.set()
        self.emulator.dispatch = self._original
