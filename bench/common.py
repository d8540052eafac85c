"""Shared plumbing of the benchmarks: their own PostgreSQL database and Redis DBs, gunicorn, a portal.

Benchmarks never touch the developer's or the test suite's state: database ``b24sign_bench`` (override
with BENCH_DATABASE_URL), Redis DB 7 for locks/buckets and DB 6 for the Celery broker (BENCH_REDIS_URL,
BENCH_BROKER_URL).  Every process a benchmark starts runs with DJANGO_SETTINGS_MODULE=bench.settings.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/b24sign_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/6")
CLIENT_ID, CLIENT_SECRET = "local.b24sign.bench", "bench-client-secret"


def bench_env(**extra) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings", "B24SIGN_ENV_FILE": "/nonexistent",
        "DEBUG": "0", "SECRET_KEY": "bench-secret-key-not-for-production-0123456789abcdefghijklmnopqrstuv",
        "FIELD_ENCRYPTION_KEYS": "q7F4rjLbq9j3kK0mQeVv5x8pA1Rz0dWq2sYc6nHt3uE=",
        "DATABASE_URL": DATABASE_URL, "CONN_MAX_AGE": "60", "REDIS_URL": REDIS_URL, "CELERY_BROKER_URL": BROKER_URL,
        "ALLOW_HTTP_PORTALS": "1", "FETCH_PRIVATE_HOSTS": "127.0.0.1,localhost", "SECURE_SSL_REDIRECT": "0", "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "B24_CLIENT_ID": CLIENT_ID, "B24_CLIENT_SECRET": CLIENT_SECRET, "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


def setup_django(**extra) -> None:
    """Configure this process like the benchmark's servers and create/migrate the bench database."""
    os.environ.update(bench_env(**extra))
    ensure_database()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def ensure_database() -> None:
    import psycopg

    parts = urlsplit(DATABASE_URL)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def reset_state() -> None:
    """Empty the bench database's tables and the bench Redis DBs (between runs)."""
    import redis
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("TRUNCATE b24app_portal, bizproc_ext_robotcall, signing_signaturerequest, "
                    "signing_provideraccount CASCADE")
    for url in (REDIS_URL, BROKER_URL):
        redis.Redis.from_url(url).flushdb()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child process in its own session; ``stop()`` ends it and its children (by its pid only)."""

    def __init__(self, args: list[str], env: dict, log_path: Path):
        self.log = open(log_path, "wb")
        self.log_path = log_path
        self.p = subprocess.Popen(args, cwd=BASE_DIR, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                  start_new_session=True)

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.log.close()


def start_gunicorn(port: int, workers: int, env: dict, log_path: Path, worker_class: str = "sync",
                   threads: int = 1) -> Proc:
    bin_dir = Path(sys.executable).parent
    app = env.get("BENCH_WSGI_APP", "config.wsgi:application")  # bench/wsgi_timed.py: handler.py --slow-ms
    proc = Proc([str(bin_dir / "gunicorn"), app, "--bind", f"127.0.0.1:{port}",
                 "--workers", str(workers), "--worker-class", worker_class, "--threads", str(threads),
                 "--log-level", "warning", "--backlog", "2048"], env, log_path)
    proc.port = port
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz/", timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        if not proc.alive():
            break
        time.sleep(0.2)
    proc.stop()
    raise SystemExit(f"gunicorn did not start; see {log_path}")


def start_worker(env: dict, log_path: Path, concurrency: int = 8, pool: str = "threads") -> Proc:
    bin_dir = Path(sys.executable).parent
    return Proc([str(bin_dir / "celery"), "-A", "config", "worker", "--loglevel=WARNING", f"--pool={pool}",
                 f"--concurrency={concurrency}", "--without-gossip", "--without-mingle", "--without-heartbeat"],
                env, log_path)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]
