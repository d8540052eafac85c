"""A signer opening the document in signNow shows on the deal: one "Viewed" log message on its timeline, the
timeline card's and the E-signatures tab's signer state "viewed" -- once per signer, whatever signNow redelivers
and however often the poller looks.  Personas: see tests/providers/flows.py (Anna signs first, then Boris).
"""
import pytest

from signing.models import SignatureRequest
from tests.providers.flows import ANNA, BORIS, SEND_TO_BOTH, SIGNNOW_LOGIN, SIGNNOW_OWNER, connect, history, poll_now
from tests.robots.helpers import deal_doc, run_worker
from tests.ui.test_card_tab import follow, open_placement


@pytest.fixture
def sent(eager_tasks, portal_a, signnow, courier, deal):
    connect(portal_a, "signnow", *SIGNNOW_LOGIN, "--default")
    portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_TO_BOTH)
    run_worker()
    courier.flush()
    return SignatureRequest.objects.get()


def titles(portal) -> list[str]:
    return [m["title"] for m in portal.emu.log_messages]


def card_of(portal) -> dict:
    [card] = portal.emu.activities.values()
    return card


def signer_state(card: dict, index: int) -> str:
    return card["layout"]["body"]["blocks"][f"signer{index}"]["properties"]["block"]["properties"]["value"]


def test_a_signer_opening_the_document_is_one_log_message_and_a_viewed_state(portal_a, signnow, courier, sent,
                                                                            deal, client):
    req = sent
    assert titles(portal_a) == []
    b24_before, reads_before = portal_a.emu.stats.requests, len(signnow.calls)
    signnow.view(req.external_id, ANNA)

    assert titles(portal_a) == ["Viewed: Anna Buyer"]
    # The cost of a view: one batch to Bitrix24 (card + log message); two reads at signNow (document, history).
    assert portal_a.emu.stats.requests - b24_before == 1
    assert [c["path"] for c in signnow.calls[reads_before:]] == [f"/document/{req.external_id}",
                                                                   f"/document/{req.external_id}/historyfull"]
    [message] = portal_a.emu.log_messages
    assert (message["entityTypeId"], message["entityId"]) == (2, deal)
    card = card_of(portal_a)
    assert (signer_state(card, 0), signer_state(card, 1)) == ("viewed", "waiting")
    assert req.signers.get(email=ANNA).viewed_at is not None
    assert len(history(req, "viewed")) == 1

    tab = follow(client, open_placement(client, portal_a.emu, "CRM_DEAL_DETAIL_TAB", {"ID": str(deal)}))
    html = tab.content.decode()
    assert f'class="badge badge-viewed" data-signer="{ANNA}">viewed<' in html
    assert f'class="badge badge-pending" data-signer="{BORIS}">waiting<' in html

    # signNow delivers the same callback again, Anna opens it a second time, the poller looks: nothing new.
    updates = card["updates"]
    assert courier.replay().json()["handled"] == 0
    signnow.view(req.external_id, ANNA)
    poll_now()
    assert titles(portal_a) == ["Viewed: Anna Buyer"]
    assert card_of(portal_a)["updates"] == updates and len(history(req, "viewed")) == 1

    signnow.sign(req.external_id, ANNA)
    assert titles(portal_a) == ["Viewed: Anna Buyer", "Signed: Anna Buyer"]
    assert signer_state(card_of(portal_a), 0) == "signed"


def test_the_owner_opening_the_document_is_not_a_signer_event(portal_a, signnow, courier, sent):
    signnow.view(sent.external_id, SIGNNOW_OWNER)
    assert courier.delivered[-1][3] == 200  # user.document.open reached us and was read
    assert titles(portal_a) == [] and not sent.signers.exclude(viewed_at=None).exists()


def test_a_view_and_a_signature_caught_up_together_tell_both_in_order(portal_a, signnow, courier, sent):
    courier.losing = True  # both callbacks get lost: the poller finds the view in the document's history
    signnow.view(sent.external_id, ANNA)
    signnow.sign(sent.external_id, ANNA)
    before = portal_a.emu.stats.requests
    poll_now()
    assert titles(portal_a) == ["Viewed: Anna Buyer", "Signed: Anna Buyer"]
    assert portal_a.emu.stats.requests - before == 1  # one batch: card, both log messages, fields
