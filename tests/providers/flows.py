"""What the end-to-end tests share: the admin's scripted setup, emulators wired to our real webhook
endpoint, and "let the worker catch up" helpers.

Personas: portal A's admin connects the provider with ``manage.py providers connect``; Maria, portal A's
sales manager, puts "Send for e-signature" on her deal "Big deal"; its contacts Anna (primary, has a
mobile number) and Boris (no mobile) sign.
"""
from __future__ import annotations

import base64
import io
import threading
from contextlib import contextmanager
from urllib.parse import urlsplit

from django.core.management import call_command
from django.test import TestCase
from django.utils import timezone

from signing.models import ProviderAccount, SignatureRequest
from signing.tasks import poll_open_requests
from tests.emulators.evia import EviaEmulator
from tests.emulators.signnow import SignNowEmulator

ANNA, BORIS = "anna@customer.test", "boris@customer.test"
SIGNNOW_OWNER = "owner@acme.test"
SIGNNOW_BASIC = base64.b64encode(b"client:secret").decode()
SIGNNOW_LOGIN = [f"basic_token={SIGNNOW_BASIC}", f"username={SIGNNOW_OWNER}", "password=pw"]
EVIA_ID, EVIA_KEY = "evia-app-id", "evia-app-key"

# Maria's rule: the contract in the deal's file field, both contacts one after another, wait for the outcome.
SEND_TO_BOTH = {"provider": "default", "document_source": "field", "document_field": "UF_CRM_CONTRACT",
                "signer_contacts": "all", "signing_order": "sequential", "subject": "Please sign", "wait": "Y"}


def settle():
    """Run what the code deferred to "after commit" (the test's transaction never commits)."""
    return TestCase.captureOnCommitCallbacks(execute=True)


class Courier:
    """Carries a provider's callbacks to our real webhook endpoint through Django's test client.

    ``losing = True`` drops them (a webhook that never arrives); ``delivered`` keeps every delivery
    (path, body, headers, status) so a test can ``replay`` one.  A callback the provider fires while it
    answers one of our calls (Evia's "sent", from the emulator's server thread) cannot see the test's
    uncommitted data from that thread: it is held and delivered by ``flush()`` (or with the next one).
    """

    def __init__(self, client):
        self.client = client
        self.delivered: list[tuple] = []
        self.held: list[tuple] = []
        self.lost: list[tuple] = []
        self.losing = False

    def __call__(self, url: str, body: bytes, headers: dict):
        if self.losing:
            self.lost.append((url, body, headers))
            raise ConnectionError("the callback got lost on the way")
        if threading.current_thread() is not threading.main_thread():
            self.held.append((urlsplit(url).path, body, headers))
            return 200
        self.flush()
        return self.post(urlsplit(url).path, body, headers).status_code

    def flush(self) -> None:
        while self.held:
            self.post(*self.held.pop(0))

    def post(self, path: str, body: bytes, headers: dict):
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "application/json")
        extra = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        with settle():
            response = self.client.post(path, body, content_type=content_type, headers=extra)
        self.delivered.append((path, body, headers, response.status_code))
        return response

    def replay(self, index: int = -1):
        path, body, headers, _ = self.delivered[index]
        return self.post(path, body, headers)


def connect(portal, provider: str, *args: str) -> str:
    """The admin's scripted setup: ``manage.py providers connect <member_id> <provider> key=value ...``."""
    out = io.StringIO()
    call_command("providers", "connect", portal.emu.member_id, provider, *args, stdout=out)
    return out.getvalue()


def account_of(portal, provider: str) -> ProviderAccount:
    return ProviderAccount.objects.get(portal__member_id=portal.emu.member_id, provider=provider)


@contextmanager
def signnow_emulator(settings, courier: Courier):
    emu = SignNowEmulator(basic_token=SIGNNOW_BASIC, users={SIGNNOW_OWNER: "pw"}).start()
    emu.webhook_sender = courier
    settings.SIGNNOW_API_BASE = emu.base_url
    settings.SIGNNOW_RATE_PER_S = 0
    try:
        yield emu
    finally:
        emu.stop()


@contextmanager
def evia_emulator(settings, courier: Courier):
    emu = EviaEmulator(client_id=EVIA_ID, client_secret=EVIA_KEY).start()
    emu.completion_gap = 0.0
    emu.webhook_sender = courier
    settings.EVIA_API_BASE = emu.base_url
    try:
        yield emu
    finally:
        emu.stop()


def poll_now() -> int:
    """The poller's next run, with every open request due (as if its next_poll_at had passed)."""
    SignatureRequest.objects.open().update(next_poll_at=timezone.now() - timezone.timedelta(seconds=1))
    with settle():
        return poll_open_requests.apply().get()


def history(req: SignatureRequest, kind: str) -> list:
    return list(req.events.filter(kind=kind).order_by("id"))


def timeline_files(portal, deal_id: int) -> list[tuple[str, bytes]]:
    return [f for c in portal.emu.crm.comments_for("deal", deal_id) for f in c["files"]]
