"""The CRM card in a real browser: the "E-signatures" tab and the send form in a narrow slider, framed
cross-origin by the emulated portal exactly as a placement is (the placement POST auto-submitted into an
iframe), in English and Russian; plus the timeline card as the portal draws it.  Screenshots go to
docs/screenshots/ with B24SIGN_SCREENSHOTS=1 (see test_browser.py)."""
from __future__ import annotations

import html
from urllib.parse import urlencode

import pytest

from tests.conftest import ADMIN_ID
from tests.emulators.base import Response
from tests.emulators.bitrix24 import timeline_view
from tests.robots.helpers import SEND_PROPS, deal_doc

from .test_browser import BX24_STUB, PORTAL_PAGE, SHOTS, browser  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _placement_page(emu, app_url: str):
    def page(req):
        placement = req.query.get("placement", "CRM_DEAL_DETAIL_TAB")
        path = "/card/tab/" if placement.endswith("DETAIL_TAB") else "/card/send/"
        query, body = emu.app_page_request(int(req.query.get("user", ADMIN_ID)), placement,
                                           {"ID": req.query["id"]}, lang=req.query.get("lang", "en"))
        inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in body.items())
        return Response(200, PORTAL_PAGE.format(action=html.escape(f"{app_url}{path}?{urlencode(query)}"),
                                                inputs=inputs), {"Content-Type": "text/html; charset=utf-8"})

    emu.server.add_route("GET", r"^/crm/placement/$", page)
    return f"{emu.base_url}/crm/placement/"


def card_frame(page):
    return next(f for f in page.frames if "/card/" in f.url)


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    frame = card_frame(page)
    frame.wait_for_load_state("load")
    height = frame.evaluate("() => { BX24.fitWindow(); return BX24.lastHeight; }")
    page.wait_for_function("h => document.getElementById('app-frame').style.height === h + 'px'",
                           arg=max(200, height))
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": max(size["height"],
                                                                 page.evaluate("document.documentElement.scrollHeight"))})
    page.wait_for_timeout(300)
    page.screenshot(path=str(SHOTS / name))
    page.set_viewport_size(size)


@pytest.fixture
def open_card(browser, live_portal_a, live_server):  # noqa: F811
    url = _placement_page(live_portal_a.emu, live_server.url)
    contexts = []

    def opener(item: int, placement="CRM_DEAL_DETAIL_TAB", lang="en", width=480, height=700):
        context = browser.new_context(viewport={"width": width, "height": height}, locale=lang)
        context.route("https://api.bitrix24.com/**", lambda route: route.fulfill(
            status=200, content_type="application/javascript", body=BX24_STUB))
        contexts.append(context)
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(f"{url}?{urlencode({'placement': placement, 'id': item, 'lang': lang})}")
        frame = page.frame_locator("#app-frame")
        return page, frame

    yield opener
    for context in contexts:
        context.close()


@pytest.fixture
def sent_deal(eager_tasks, live_portal_a, memory_provider, pdf_bytes):
    from bizproc_ext import drainer
    from signing.models import ProviderAccount, SignatureRequest

    emu = live_portal_a.emu
    ProviderAccount.objects.create(portal=live_portal_a.db, provider="memory", is_default=True)
    anna = emu.crm.add_contact("Anna", "Buyer", emails=["anna@customer.test"])
    boris = emu.crm.add_contact("Boris", "Second", emails=["boris@customer.test"])
    deal = emu.crm.add_deal("Big deal", contact_ids=[anna, boris], files={"ufCrmContract": ("contract.pdf", pdf_bytes)})
    emu.start_robot("b24sign_send", document_id=deal_doc(deal),
                    properties={**SEND_PROPS, "signer_contacts": "all", "wait": "Y"})
    drainer.drain_once()  # what a worker's drainer does: publish the recorded call (eager: runs it)
    req = SignatureRequest.objects.get(portal__member_id=emu.member_id)
    memory_provider.sign(req.external_id, "anna@customer.test")
    from signing.tasks import refresh_request_status

    refresh_request_status.apply(args=[req.pk, "webhook"])
    return deal, req


def test_the_tab_and_the_send_form_in_a_narrow_slider(open_card, live_portal_a, sent_deal):
    deal, req = sent_deal
    page, frame = open_card(deal)
    section = frame.locator(f'section[data-request="{req.public_id}"]')
    section.wait_for()
    text = section.inner_text()
    assert "Big deal" in text and "Partially signed" in text and "In-memory test provider" in text
    assert section.locator('[data-signer="anna@customer.test"]').inner_text() == "signed"
    assert section.locator('[data-signer="boris@customer.test"]').inner_text() == "waiting"
    fr = card_frame(page)
    assert fr.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    shot(page, "card-tab.png")

    frame.locator("#new-request").click()
    frame.locator("#send-form").wait_for()
    assert card_frame(page).evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    frame.locator("#p-signer_contacts").select_option("none")
    frame.locator("#p-signer_emails").fill("carol@client.test")
    frame.locator("#p-document_field").fill("UF_CRM_CONTRACT")
    shot(page, "card-send.png")
    frame.locator("#send").click()
    frame.get_by_text("Sent for signature").wait_for()
    assert frame.locator("section.card-request").count() == 2  # the eager worker sent it at once
    assert "carol@client.test" in frame.locator("section.card-request").first.inner_text()


def test_the_tab_speaks_russian(open_card, live_portal_a, sent_deal):
    deal, req = sent_deal
    page, frame = open_card(deal, lang="ru")
    frame.get_by_text("Электронные подписи").first.wait_for()
    assert "новый запрос" in frame.locator("#new-request").inner_text().lower()
    assert "Частично подписан" in frame.locator(f'section[data-request="{req.public_id}"]').inner_text()
    shot(page, "card-tab-ru.png")
    frame.locator("#new-request").click()
    frame.get_by_text("Отправить на подпись").first.wait_for()


def test_the_timeline_card_as_the_portal_draws_it(browser, live_portal_a, sent_deal):  # noqa: F811
    deal, req = sent_deal
    url = timeline_view.install(live_portal_a.emu).format(etid=2, eid=deal)
    context = browser.new_context(viewport={"width": 700, "height": 420})
    page = context.new_page()
    page.goto(url)
    card = page.locator(".activity")
    assert "Partially signed" in card.inner_text() and "Anna Buyer" in card.inner_text()
    assert "Open" in card.inner_text() and "Remind" in card.inner_text() and "Cancel request" in card.inner_text()
    assert "Signed: Anna Buyer" in page.locator(".log").first.inner_text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "timeline-card.png"), full_page=True)
    context.close()
