"""Signing links on the request page in a real browser (issue 13): each signer's link with "Copy"."""
from __future__ import annotations

import time

import pytest

from tests.conftest import ADMIN_ID

from .conftest import make_request
from .test_browser import app_frame, browser, open_portal, shot  # noqa: F401  (shared fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_the_admin_copies_a_signers_link(open_portal, live_portal_a, memory_provider):  # noqa: F811
    from signing.models import ProviderAccount, SignatureRequest

    account = ProviderAccount.objects.create(portal=live_portal_a.db, provider="memory", is_default=True)
    req = make_request(live_portal_a.db, account, title="Supply contract #42",
                       signers=("anna@customer.test", "boris@customer.test"))
    links = {"anna@customer.test": {"url": "https://sign.example/embedded-signing/aaa", "expires_at": time.time() + 2700},
             "boris@customer.test": {"url": "https://sign.example/embedded-signing/bbb", "expires_at": time.time() + 2700}}
    SignatureRequest.objects.filter(pk=req.pk).update(options={"delivery": "link"}, signing_links=links)

    page, frame = open_portal(ADMIN_ID)
    frame.locator("#tab-dashboard").click()
    frame.locator(f'tr[data-id="{req.public_id}"] a.request-link').click()
    frame.locator("#signing-links").wait_for()
    assert frame.locator("#signing-links input.link").nth(0).input_value() == links["anna@customer.test"]["url"]
    copy = frame.locator("#signing-links button.copy").nth(0)
    copy.click()
    frame.locator("#signing-links button.copy", has_text="\u2713").wait_for()
    assert frame.locator("#new-links").count() == 0  # the memory provider hands out no links
    shot(page, "signing-links.png")
