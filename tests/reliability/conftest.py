"""Fixtures of the fault-injection suite: signNow behind the emulator, real workers, a private Redis.

Cross-process tests use the signNow provider (its emulator is an HTTP server the worker process can
reach); the in-memory provider cannot be shared with a worker subprocess.
"""
from __future__ import annotations

import base64
import os

import pytest

from tests.emulators.signnow import SignNowEmulator

from .support import CeleryWorker, RedisServer, database_url, free_port

BASIC = base64.b64encode(b"client:secret").decode()
OWNER = "owner@acme.test"


@pytest.fixture
def signnow(settings):
    emu = SignNowEmulator(basic_token=BASIC, users={OWNER: "pw"}).start()
    emu.webhooks_out = []
    emu.webhook_sender = lambda url, body, headers: emu.webhooks_out.append((url, body, headers)) or 200
    settings.SIGNNOW_API_BASE = emu.base_url
    settings.SIGNNOW_RATE_PER_S = 0  # our per-account limiter is not what these tests are about
    yield emu
    emu.stop()


def connect_signnow(portal):
    """Portal A's default signNow account, connected to the emulator with the password grant."""
    from signing.models import ProviderAccount
    from signing.providers.signnow.provider import SignNowProvider

    account = ProviderAccount.objects.create(portal=portal, provider="signnow", is_default=True)
    account.credentials = SignNowProvider(account).connect({"basic_token": BASIC, "username": OWNER,
                                                             "password": "pw"})
    account.save()
    return account


def invites(emu) -> list[dict]:
    """Invite emails the emulated signNow sent (one per signer per signature request)."""
    return [e for e in emu.sent_emails if e["kind"] == "invite"]


def invited_documents(emu) -> list[str]:
    return [doc_id for doc_id, doc in emu.documents.items() if doc["field_invites"] or doc["requests"]]


@pytest.fixture
def fast_portal_limits():
    """Raise portal A's request budget (ours and the emulator's): these tests are about faults, not pacing."""
    def apply(installed):
        from b24app.models import Portal
        from tests.emulators.bitrix24.core import LeakyBucket

        Portal.objects.filter(member_id=installed.emu.member_id).update(rate_burst=500, rate_drain=200)
        installed.emu.bucket = LeakyBucket(1000, 500)
    return apply


@pytest.fixture
def worker_env(settings, live_server):
    """Environment for worker subprocesses: the test database, this test's broker and the emulators."""
    def build(**overrides) -> dict:
        env = dict(os.environ)
        env.update({
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "APP_BASE_URL": live_server.url,
            "B24_OAUTH_URL": settings.B24_OAUTH_URL,
            "SIGNNOW_API_BASE": settings.SIGNNOW_API_BASE,
            "SIGNNOW_RATE_PER_S": "0",
            "ROBOT_CALL_LEASE": str(settings.ROBOT_CALL_LEASE),
            "ROBOT_CALL_REPUBLISH_AFTER": str(settings.ROBOT_CALL_REPUBLISH_AFTER),
            "PROVIDER_HTTP_TIMEOUT": "20",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        })
        env.update({k: str(v) for k, v in overrides.items()})
        return env
    return build


@pytest.fixture
def workers(tmp_path, transactional_db):
    """Start real Celery workers; every one still running is SIGKILLed at teardown, whatever happened
    (and before the test database is flushed: this fixture depends on it, so it is torn down first)."""
    started: list[CeleryWorker] = []

    def start(env: dict, concurrency: int = 1) -> CeleryWorker:
        worker = CeleryWorker(env, tmp_path / f"worker-{len(started) + 1}.log", concurrency)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.close()


@pytest.fixture
def private_redis(tmp_path):
    server = RedisServer(free_port(6391), tmp_path).start()
    yield server
    server.kill()
