"""The send robot's settings slider in a real browser (issue 13): the document template of the deal's type,
signer fields, a signNow template with its roles, role mapping and prefill, the "open request" option —
each change handed to ``BX24.placement.call('setPropertyValue')``.  English and Russian; screenshots for
the README (``B24SIGN_SCREENSHOTS=1``).
"""
from __future__ import annotations

import html
import json
from urllib.parse import urlencode

import pytest

from tests.emulators.base import Response
from tests.emulators.bitrix24.docgen import add_template
from tests.providers.flows import SIGNNOW_LOGIN, Courier, connect, signnow_emulator

from .test_browser import BX24_STUB, PORTAL_PAGE, SHOTS, browser  # noqa: F401  (browser: the shared fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PLACEMENT_STUB = BX24_STUB + """
window.BX24.placementCalls = [];
window.BX24.placement = {call: function (name, values) { window.BX24.placementCalls.push([name, values]); }};
"""

DEAL_FIELDS = {
    "UF_CRM_CONTRACT": {"Name": "Contract", "Type": "file"},
    "ASSIGNED_BY_ID": {"Name": "Responsible person", "Type": "user"},
    "UF_CRM_BUYER": {"Name": "Buyer", "Type": "UF:crm", "Options": {"CONTACT": "Y"}},
    "UF_CRM_LAWYER_EMAIL": {"Name": "Lawyer's e-mail", "Type": "string"},
}


def _slider_page(emu, app_url: str):
    def page(req):
        options = {"code": "b24sign_send", "activity_name": "A1_2_3_4", "document_type": ["crm", "CCrmDocumentDeal",
                                                                                         "DEAL"],
                   "current_values": {}, "document_fields": DEAL_FIELDS}
        lang = req.query.get("lang", "en")
        query, body = emu.app_page_request(1, "BIZPROC_ACTIVITY_PROPERTIES_DIALOG", options=options, lang=lang)
        inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in body.items())
        action = f"{app_url}/bizproc/settings/b24sign_send/?{urlencode({**query, 'LANG': lang})}"
        return Response(200, PORTAL_PAGE.format(action=html.escape(action), inputs=inputs),
                        {"Content-Type": "text/html; charset=utf-8"})

    emu.server.add_route("GET", r"^/bizproc/robot-settings/$", page)
    return f"{emu.base_url}/bizproc/robot-settings/"


@pytest.fixture
def slider(browser, live_portal_a, live_server, settings, client):  # noqa: F811
    add_template(live_portal_a.emu, "Sales contract", entity_type_ids=("2_category_0",))
    add_template(live_portal_a.emu, "Lead questionnaire", entity_type_ids=(1,))
    with signnow_emulator(settings, Courier(client)) as signnow:
        connect(live_portal_a, "signnow", *SIGNNOW_LOGIN, "--default")
        signnow.add_template("Sales agreement", [
            {"type": "signature", "role": "Buyer", "name": "b"}, {"type": "signature", "role": "Seller", "name": "s"},
            {"type": "text", "role": "Seller", "name": "Price"}])
        url = _slider_page(live_portal_a.emu, live_server.url)
        contexts = []

        def opener(lang: str = "en"):
            context = browser.new_context(viewport={"width": 420, "height": 900}, locale=lang)
            context.route("https://api.bitrix24.com/**", lambda route: route.fulfill(
                status=200, content_type="application/javascript", body=PLACEMENT_STUB))
            contexts.append(context)
            page = context.new_page()
            page.goto(f"{url}?{urlencode({'lang': lang})}")
            frame = page.frame_locator("#app-frame")
            frame.locator("#robot-settings").wait_for()
            return page, frame

        yield opener
        for context in contexts:
            context.close()


def _frame(page):
    return next(f for f in page.frames if "/bizproc/settings/" in f.url)


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    frame = _frame(page)
    height = frame.evaluate("() => Math.ceil(document.body.getBoundingClientRect().height) + 16")
    page.evaluate(f"document.getElementById('app-frame').style.height = '{height}px'")
    page.set_viewport_size({"width": 420, "height": height + 60})
    page.wait_for_timeout(300)
    page.screenshot(path=str(SHOTS / name))


def _sent(page) -> dict:
    merged = {}
    for batch in _frame(page).evaluate("window.b24signSent"):
        merged.update(batch)
    return merged


def test_template_role_mapping_and_prefill_controls_write_the_robot_properties(slider):
    page, frame = slider("en")
    frame.locator("#p-document_source").select_option("template")
    templates = frame.locator("#p-template_id option").all_inner_texts()
    assert "Sales contract" in templates and "Lead questionnaire" not in templates
    frame.locator("#p-template_id").select_option(label="Sales contract")
    frame.locator('#p-signer_fields input[value="user:ASSIGNED_BY_ID"]').check()
    frame.locator("#p-provider_template_id").select_option(label="Sales agreement (signNow)")
    assert "Buyer, Seller" in frame.locator("#template-parts").inner_text()
    frame.locator("#p-template_roles").fill("Buyer=primary_contact\nSeller=user_2")
    frame.locator("#p-prefill_fields").fill("Price=OPPORTUNITY")
    frame.locator("#p-if_open_exists").select_option("replace")
    frame.locator("#p-delivery").select_option("link")
    page.wait_for_function("() => true")
    _frame(page).wait_for_function("() => window.b24signSent.length > 0 && "
                                   "JSON.stringify(window.b24signSent).indexOf('link') > 0")
    sent = _sent(page)
    assert sent["document_source"] == "template" and sent["template_id"]
    assert sent["signer_fields"] == ["user:ASSIGNED_BY_ID"]
    assert sent["provider_template_id"] and sent["template_roles"] == "Buyer=primary_contact\nSeller=user_2"
    assert sent["prefill_fields"] == "Price=OPPORTUNITY" and sent["if_open_exists"] == "replace"
    calls = _frame(page).evaluate("BX24.placementCalls")
    assert calls and all(name == "setPropertyValue" for name, _ in calls)
    assert json.dumps(calls).count("provider_template_id") >= 1
    _shot(page, "robot-settings.png")


def test_the_slider_speaks_russian(slider):
    page, frame = slider("ru")
    labels = " ".join(frame.locator("label").all_inner_texts())
    assert "Шаблон документа" in labels and "Роли шаблона" in labels and "Заполнить поля шаблона" in labels
    assert "Вернуть его, ничего не отправлять" in frame.locator("#p-if_open_exists").inner_text()
    frame.locator("#p-provider_template_id").select_option(label="Sales agreement (signNow)")
    _shot(page, "robot-settings-ru.png")
