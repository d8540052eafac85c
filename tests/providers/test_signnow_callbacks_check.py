"""The hourly check of signNow's webhook subscriptions: one deleted at signNow (dashboard, expiry) is made again
and portal A's admin hears it once, with a link to Settings; an outage tells nobody and breaks nothing.
Personas: portal A's admin connected signNow with ``manage.py providers connect`` (tests/providers/flows.py).
"""
import pytest

from signing.models import SignatureRequest
from signing.providers.signnow.provider import EVENTS
from signing.tasks import check_callbacks
from tests.conftest import ADMIN_ID
from tests.providers.flows import ANNA, SEND_TO_BOTH, SIGNNOW_LOGIN, account_of, connect, settle
from tests.robots.helpers import deal_doc, run_worker


@pytest.fixture
def connected(portal_a, signnow):
    connect(portal_a, "signnow", *SIGNNOW_LOGIN, "--default")
    return account_of(portal_a, "signnow")


def run_check() -> dict:
    with settle():
        return check_callbacks.apply().get()


def ours(signnow, account) -> set[str]:
    return {s["event"] for s in signnow.subscriptions.values()
            if s["json_attributes"]["callback_url"] == account.webhook_url()}


def loss_notices(portal) -> list[dict]:
    return [n for n in portal.emu.notifications if "webhook subscription was gone" in n["message"]]


def test_a_subscription_deleted_at_signnow_is_restored_and_the_admin_told_once(portal_a, signnow, connected):
    assert ours(signnow, connected) == set(EVENTS)
    assert run_check() == {"ok": 1} and loss_notices(portal_a) == []

    assert signnow.lose_subscription(event="user.document.fieldinvite.signed")
    assert run_check() == {"restored": 1}
    assert ours(signnow, connected) == set(EVENTS)
    [note] = loss_notices(portal_a)
    assert note["user_id"] == ADMIN_ID and "subscribed again" in note["message"]
    assert "/app/" in note["message"] and "Settings[/URL]" in note["message"]

    assert run_check() == {"ok": 1}  # the next run finds everything in place: nothing more to say
    assert len(loss_notices(portal_a)) == 1
    connected.refresh_from_db()
    assert connected.callbacks_lost_at is None and connected.callbacks_checked_at is not None


def test_a_restored_subscription_delivers_again(eager_tasks, portal_a, signnow, courier, connected, deal):
    signnow.lose_subscription()  # every one of them gone
    run_check()
    portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_TO_BOTH)
    run_worker()
    courier.flush()
    req = SignatureRequest.objects.get()
    signnow.sign(req.external_id, ANNA)
    req.refresh_from_db()
    assert req.status == "partially_signed"  # by the callback, not the poller
    assert len(loss_notices(portal_a)) == 1


def test_an_outage_during_the_check_tells_nobody(portal_a, signnow, connected):
    signnow.lose_subscription(event="user.document.complete")
    signnow.outage(60, status=503)
    assert run_check() == {"unreachable": 1}
    signnow.outage(0)
    signnow.fail_next(1, status=500)
    assert run_check() == {"unreachable": 1}
    assert loss_notices(portal_a) == [] and "user.document.complete" not in ours(signnow, connected)

    assert run_check() == {"restored": 1}  # signNow is back: the loss is repaired and told once
    assert len(loss_notices(portal_a)) == 1
    assert run_check() == {"ok": 1} and len(loss_notices(portal_a)) == 1


def test_a_subscription_signnow_refuses_to_make_again_is_told_once(portal_a, signnow, connected):
    signnow.lose_subscription(event="user.document.open")
    # signNow's owner check: a subscription for a user id the token does not belong to is refused (403).
    connected.credentials = {**connected.credentials, "user_id": "f" * 40}
    connected.save()
    assert run_check() == {"failed": 1}
    [note] = loss_notices(portal_a)
    assert "subscribing again failed" in note["message"] and "reconnect" in note["message"]
    assert run_check() == {"failed": 1}  # the same loss, still not repaired: not told again
    assert len(loss_notices(portal_a)) == 1
