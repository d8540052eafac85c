"""Shared fixtures: emulated Bitrix24 portals installed into the app, personas, a real Celery worker.

Personas (healthchecks style): portal A ("alpha") with its admin (user 1) and a sales manager (user 2),
and portal B ("bravo"), an outsider whose calls must never touch A's data.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import redis as redis_lib
from django.conf import settings as django_settings

from tests.emulators.bitrix24 import Bitrix24Cloud
from tests.emulators.pdf import make_pdf

ADMIN_ID, MANAGER_ID = 1, 2


@pytest.fixture(autouse=True)
def _clean_redis():
    """Rate-limit buckets, locks and broker queues must not leak from one test into the next."""
    for url in (django_settings.REDIS_URL, django_settings.CELERY_BROKER_URL):
        if url.startswith("redis://"):
            redis_lib.Redis.from_url(url).flushdb()
    yield


@pytest.fixture(scope="session", autouse=True)
def _job_threads_let_go(django_db_setup):
    """A job thread keeps its connection ROBOT_COALESCE_LINGER after a job (bizproc_ext/coalesce.py): the
    threads are let go before the test database is dropped."""
    yield
    from bizproc_ext import coalesce  # noqa: PLC0415  (models: only once pytest-django has set Django up)

    if coalesce._pool is not None:
        coalesce._pool.shutdown(wait=True)
        coalesce._pool = None


class TestClientTransport:
    """Lets the emulated queue server post into the app in-process (Django's test client), so a test
    sees the robot call recorded synchronously.  Tests that need real HTTP use ``live_cloud``."""

    def __init__(self, client):
        self.client = client

    def __call__(self, url, pairs, headers):
        from urllib.parse import urlencode, urlsplit

        parts = urlsplit(url)
        response = self.client.post(parts.path + (f"?{parts.query}" if parts.query else ""), urlencode(pairs),
                                    content_type=headers["Content-Type"], HTTP_USER_AGENT=headers["User-Agent"])
        response.text = response.content.decode("utf-8", "replace")
        return response


@pytest.fixture
def cloud(settings, client):
    """The emulated Bitrix24 cloud (OAuth server + portals), trusted by the app for this test."""
    emu = Bitrix24Cloud(client_id=settings.B24_CLIENT_ID, client_secret=settings.B24_CLIENT_SECRET,
                        app_url=settings.APP_BASE_URL).start()
    emu.transport = TestClientTransport(client)
    settings.B24_OAUTH_URL = emu.oauth_url
    yield emu
    emu.stop()


@dataclass
class InstalledPortal:
    emu: object          # tests.emulators.bitrix24.Portal
    cloud: Bitrix24Cloud

    @property
    def db(self):
        from b24app.models import Portal

        return Portal.objects.get(member_id=self.emu.member_id)


def install(client, emu, user_id: int = ADMIN_ID):
    """What Bitrix24 does when an admin installs the app: POST the install page, then installFinish()."""
    query, body = emu.install_request(user_id=user_id)
    from urllib.parse import urlencode

    response = client.post(f"/b24/install/?{urlencode(query)}", body)
    if response.status_code == 200:
        emu.finish_install()
    return response


def _portal(cloud, client, name: str, **kw) -> InstalledPortal:
    emu = cloud.add_portal(name, **kw)
    emu.add_user(MANAGER_ID, f"manager@{name}.test", name="Maria", last_name="Manager")
    response = install(client, emu)
    assert response.status_code == 200, response.content[:500]
    return InstalledPortal(emu, cloud)


@pytest.fixture
def portal_a(cloud, client, db):
    return _portal(cloud, client, "alpha", rate=(50, 20))


@pytest.fixture
def portal_b(cloud, client, db):
    return _portal(cloud, client, "bravo", rate=(50, 20))


@pytest.fixture
def pdf_bytes():
    return make_pdf(["Sales contract", "Page two"])


@pytest.fixture
def memory_provider(settings):
    """The in-memory provider, registered and reset for this test."""
    from tests.support import memory_provider as mp

    settings.SIGNING_EXTRA_PROVIDERS = {"memory": ("In-memory test provider", mp.PATH)}
    mp.SERVICE.__init__()
    return mp.SERVICE


@pytest.fixture
def memory_account(portal_a, memory_provider):
    from signing.models import ProviderAccount

    return ProviderAccount.objects.create(portal=portal_a.db, provider="memory", is_default=True)


@pytest.fixture
def deal(portal_a, pdf_bytes):
    """A deal with a contract in a file field and two contacts (the first one primary)."""
    crm = portal_a.emu.crm
    anna = crm.add_contact("Anna", "Buyer", emails=["anna@customer.test"], phones=["+15550001111"])
    boris = crm.add_contact("Boris", "Second", emails=["boris@customer.test"])
    return crm.add_deal("Big deal", contact_ids=[anna, boris], files={"ufCrmContract": ("contract.pdf", pdf_bytes)})


@pytest.fixture
def eager_tasks():
    """Run Celery tasks in-process for tests of the logic; tests of the wiring use a real worker."""
    from config.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager = False
    app.conf.task_eager_propagates = False


@pytest.fixture
def live_cloud(settings, live_server, transactional_db):
    """The emulated cloud talking to the app over real HTTP (the live server), for concurrency tests."""
    settings.APP_BASE_URL = live_server.url
    emu = Bitrix24Cloud(client_id=settings.B24_CLIENT_ID, client_secret=settings.B24_CLIENT_SECRET,
                        app_url=live_server.url).start()
    settings.B24_OAUTH_URL = emu.oauth_url
    yield emu
    emu.stop()


@pytest.fixture
def live_portal_a(live_cloud, live_server):
    import requests

    emu = live_cloud.add_portal("alpha", rate=(50, 20))
    emu.add_user(MANAGER_ID, "manager@alpha.test", name="Maria", last_name="Manager")
    query, body = emu.install_request()
    response = requests.post(f"{live_server.url}/b24/install/", params=query, data=body, timeout=30)
    assert response.status_code == 200, response.text[:300]
    emu.finish_install()
    return InstalledPortal(emu, live_cloud)
