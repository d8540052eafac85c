"""The app in a real browser, framed the way a portal frames it.

The emulated portal serves a page from its own origin with an ``<iframe>`` and a form that auto-POSTs
exactly what Bitrix24 posts (``app_page_request``) into it, so the app runs cross-origin, without
cookies, under its CSP ``frame-ancestors``.  BX24.js is stubbed: ``fitWindow`` resizes the iframe
through postMessage, as Bitrix24 does.  Screenshots go to docs/screenshots/ (B24SIGN_SCREENSHOTS=1).
"""
from __future__ import annotations

import html
import json
import os
import tempfile
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.conftest import ADMIN_ID, MANAGER_ID
from tests.emulators.base import Response
from tests.robots.helpers import SEND_PROPS, deal_doc

from .conftest import make_request

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# The README's screenshots are refreshed with `B24SIGN_SCREENSHOTS=1 make test`; ordinary runs write
# them to a temporary folder so the working tree stays clean.
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots" if os.environ.get("B24SIGN_SCREENSHOTS") \
    else Path(tempfile.gettempdir()) / "b24sign-screenshots"

# What api.bitrix24.com/api/v1/ provides, reduced to what the pages use; it talks to the portal page
# with postMessage like the real library.
BX24_STUB = """
window.BX24 = {
  fits: 0,
  init: function (cb) { setTimeout(cb, 0); },
  fitWindow: function () {
    this.fits++;
    this.lastHeight = Math.ceil(document.body.getBoundingClientRect().height) + 16;
    parent.postMessage({b24: "fit", height: this.lastHeight}, "*");
  },
  resizeWindow: function (w, h) { parent.postMessage({b24: "fit", height: h}, "*"); },
  setTitle: function (t) { parent.postMessage({b24: "title", title: t}, "*"); },
  openPath: function (p) { parent.postMessage({b24: "open", path: p}, "*"); },
  isAdmin: function () { return true; }, getLang: function () { return "en"; }
};
"""

PORTAL_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Bitrix24</title>
<style>
  body {{ margin: 0; background: #eef2f4; font: 14px "Open Sans", Helvetica, Arial, sans-serif; }}
  .slider-title {{ padding: 14px 20px 6px; font-size: 24px; color: #333; font-weight: 300; }}
  iframe {{ border: 0; width: 100%; height: 400px; display: block; }}
</style></head>
<body>
  <div class="slider-title" id="slider-title">b24sign</div>
  <iframe name="app-frame" id="app-frame" title="b24sign"></iframe>
  <form id="opener" method="post" target="app-frame" action="{action}">{inputs}</form>
  <script>
    window.opened = [];
    window.addEventListener("message", function (ev) {{
      var m = ev.data || {{}};
      if (m.b24 === "fit") {{ document.getElementById("app-frame").style.height = Math.max(200, m.height) + "px"; }}
      if (m.b24 === "title") {{ document.getElementById("slider-title").textContent = m.title; }}
      if (m.b24 === "open") {{ window.opened.push(m.path); }}
    }});
    document.getElementById("opener").submit();
  </script>
</body></html>"""


def _portal_page(emu, app_url: str):
    """A route on the emulated portal: the slider page that opens our app for ?user=&lang=."""
    def page(req):
        user = int(req.query.get("user", ADMIN_ID))
        query, body = emu.app_page_request(user, "DEFAULT", lang=req.query.get("lang", "en"))
        inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in body.items())
        return Response(200, PORTAL_PAGE.format(action=html.escape(f"{app_url}/app/?{urlencode(query)}"),
                                                inputs=inputs), {"Content-Type": "text/html; charset=utf-8"})

    emu.server.add_route("GET", r"^/marketplace/view/b24sign/$", page)
    return f"{emu.base_url}/marketplace/view/b24sign/"


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls are still
    # synchronous, so Django's async-safety guard is lifted for these tests only.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def open_portal(browser, live_portal_a, live_server):
    """``open_portal(user, lang, width)`` -> (page, frame) with the app loaded in the portal's slider."""
    url = _portal_page(live_portal_a.emu, live_server.url)
    contexts = []

    def opener(user: int = ADMIN_ID, lang: str = "en", width: int = 1100, height: int = 800):
        context = browser.new_context(viewport={"width": width, "height": height}, locale=lang)
        context.route("https://api.bitrix24.com/**", lambda route: route.fulfill(
            status=200, content_type="application/javascript", body=BX24_STUB))
        contexts.append(context)
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(f"{url}?{urlencode({'user': user, 'lang': lang})}")
        frame = page.frame_locator("#app-frame")
        frame.locator("#app").wait_for()
        return page, frame

    yield opener
    for context in contexts:
        context.close()


def shot(page, name: str) -> None:
    """The whole slider once the frame has loaded and been fitted to its content."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    frame = app_frame(page)
    frame.wait_for_load_state("load")
    height = frame.evaluate("() => { BX24.fitWindow(); return BX24.lastHeight; }")
    page.wait_for_function("h => document.getElementById('app-frame').style.height === h + 'px'",
                           arg=max(200, height))
    # A cross-origin frame paints only inside the viewport: grow the viewport to the page for the shot.
    size = page.viewport_size
    total = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], total)})
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(400)
    page.screenshot(path=str(SHOTS / name))
    page.set_viewport_size(size)


def app_frame(page):
    return next(f for f in page.frames if "/app/" in f.url)


@pytest.fixture
def live_deal(live_portal_a, pdf_bytes):
    crm = live_portal_a.emu.crm
    anna = crm.add_contact("Anna", "Buyer", emails=["anna@customer.test"])
    return crm.add_deal("Big deal", contact_ids=[anna], files={"ufCrmContract": ("contract.pdf", pdf_bytes)})


def test_admin_connects_a_provider_sees_the_robots_request_and_cancels_it(
        eager_tasks, open_portal, live_portal_a, memory_provider, live_deal):
    from bizproc_ext import drainer
    from signing.models import SignatureRequest

    page, frame = open_portal(ADMIN_ID)
    # No provider yet: the admin lands on the settings.
    assert "/app/settings/" in app_frame(page).url
    frame.locator("#connect-memory").click()
    frame.get_by_text("In-memory test provider is connected.").wait_for()
    frame.locator("#test-memory").click()
    frame.locator("#verdict-memory.ok").wait_for()
    assert "ok" in frame.locator("#verdict-memory").inner_text()
    assert app_frame(page).evaluate("BX24.fits") > 0
    assert int(page.evaluate("parseInt(document.getElementById('app-frame').style.height)")) > 800
    shot(page, "settings.png")

    # A deal reaches the stage: Bitrix24's queue server calls our robot; the worker (eager) sends it.
    live_portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(live_deal),
                                  properties={**SEND_PROPS, "wait": "Y", "title": "Supply contract #42"})
    drainer.drain_once()  # what a worker's drainer does: publish the recorded call (eager: runs it)
    req = SignatureRequest.objects.get(portal__member_id=live_portal_a.emu.member_id)
    assert req.status == "sent"
    other = make_request(req.portal, req.account, title="NDA with Boris", status="completed", entity=(1, 7),
                         signers=("boris@customer.test", "ceo@alpha.test"))
    other.signers.update(status="signed")
    make_request(req.portal, req.account, title="Framework agreement", status="declined", entity=(177, 3),
                 signers=("carol@client.test",))

    frame.locator("#tab-dashboard").click()
    row = frame.locator(f'tr[data-id="{req.public_id}"]')
    row.wait_for()
    assert "anna@customer.test" in row.inner_text()
    href = row.locator("a.crm-link").get_attribute("href")
    assert href.endswith(f"/crm/deal/details/{live_deal}/")
    shot(page, "dashboard.png")

    row.locator("a.request-link").click()
    frame.locator("#detail").wait_for()
    assert frame.locator("#history li").count() >= 2
    shot(page, "detail.png")

    frame.locator("#cancel").click()  # confirm() is accepted
    frame.get_by_text("The request was cancelled.").wait_for()
    assert frame.locator("#detail").get_attribute("data-status") == "cancelled"
    req.refresh_from_db()
    assert req.status == "cancelled" and memory_provider.documents[req.external_id]["status"] == "cancelled"
    # The waiting workflow got its answer (finalize ran on commit, eagerly).
    frame.locator("#tab-dashboard").click()
    frame.locator(f'tr[data-id="{req.public_id}"] a.request-link').click()
    frame.locator('.call[data-answer-state="sent"]').wait_for()
    shot(page, "detail-cancelled.png")
    crm_link = frame.locator("#crm-link")
    crm_link.click()  # inside Bitrix24 a CRM link opens in the portal's slider (BX24.openPath)
    assert page.evaluate("window.opened") == [f"/crm/deal/details/{live_deal}/"]


def test_the_app_fits_a_narrow_slider_and_speaks_russian(open_portal, live_portal_a, memory_provider):
    from signing.models import ProviderAccount

    portal = live_portal_a.db
    account = ProviderAccount.objects.create(portal=portal, provider="memory", is_default=True)
    crm = live_portal_a.emu.crm  # CRM items the manager can read: they see the requests of those alone
    items = [(2, crm.add_deal("Поставка 1")), (2, crm.add_deal("Поставка 2")), (1, crm.add_item(1, "Лид"))]
    for i, (status, entity) in enumerate(zip(["sent", "partially_signed", "completed"], items)):
        r = make_request(portal, account, title=f"Договор поставки №{i + 1}", status=status, entity=entity,
                         signers=("anna@customer.test", "boris@customer.test"))
        if status != "sent":
            r.signers.filter(email="anna@customer.test").update(status="signed")

    page, frame = open_portal(MANAGER_ID, width=480)
    frame.locator("#requests").wait_for()
    assert app_frame(page).evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    assert frame.locator("#requests thead").is_hidden()  # rows became cards
    shot(page, "narrow.png")

    page, frame = open_portal(MANAGER_ID, lang="ru")
    frame.get_by_text("Запросы на подпись").first.wait_for()
    assert "Частично подписан" in frame.locator("#requests").inner_text()
    shot(page, "ru.png")
    frame.locator("#tab-settings").click()
    frame.locator("#readonly-note").wait_for()
    assert frame.locator("#connect-memory").is_disabled()  # a manager sees settings read-only


def test_a_page_from_another_origin_cannot_frame_the_app(browser, live_portal_a, live_server):
    """The CSP names only the verified portal: a different origin gets a blocked frame."""
    from tests.emulators.base import EmulatorServer

    evil = EmulatorServer("evil").start()
    try:
        query, body = live_portal_a.emu.app_page_request(ADMIN_ID)
        inputs = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in body.items())
        evil.add_route("GET", r"^/$", lambda req: Response(200, PORTAL_PAGE.format(
            action=f"{live_server.url}/app/?{urlencode(query)}", inputs=inputs), {"Content-Type": "text/html"}))
        context = browser.new_context()
        context.route("https://api.bitrix24.com/**", lambda route: route.fulfill(body=BX24_STUB))
        page = context.new_page()
        blocked = []
        page.on("console", lambda msg: blocked.append(msg.text) if "frame-ancestors" in msg.text else None)
        page.goto(evil.base_url + "/")
        page.wait_for_timeout(1500)
        frame = next((f for f in page.frames if "/app/" in f.url), None)
        content = frame.evaluate("document.getElementById('app') ? 'app' : ''") if frame else ""
        assert content != "app" or blocked, json.dumps(blocked)
        assert blocked
        context.close()
    finally:
        evil.stop()
