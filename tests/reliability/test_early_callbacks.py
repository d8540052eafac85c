"""No callback lost to a race (issue 11, item 11).

Both signers sign the instant their invite exists, so signNow's callbacks reach our webhook URL (real
HTTP, the live server) while the worker is still inside ``send()``, before ``external_id`` is written.
They must still find their request and be applied as soon as the send is recorded: the workflow is
answered within a minute, not at the first poll.
"""
from __future__ import annotations

import time

import pytest

from bizproc_ext.models import RobotCall
from signing import callbacks, services, states
from signing.models import RequestEvent, SignatureRequest
from tests.robots.helpers import SEND_PROPS, deal_doc, run_worker

from .conftest import BASIC, OWNER, invites
from .support import wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("order", ["sequential", "parallel"])
def test_signers_who_sign_the_instant_the_invite_exists_get_the_workflow_answered_within_a_minute(
        live_portal_a, signnow, fast_portal_limits, pdf_bytes, eager_tasks, order):
    signnow.webhook_sender = None  # deliver callbacks over HTTP to the webhook URL, as signNow does
    fast_portal_limits(live_portal_a)
    _, warning = services.connect_account(live_portal_a.db, "signnow",
                                          {"basic_token": BASIC, "username": OWNER, "password": "pw"},
                                          make_default=True)
    assert not warning
    crm = live_portal_a.emu.crm
    anna = crm.add_contact("Anna", "Buyer", emails=["anna@customer.test"])
    boris = crm.add_contact("Boris", "Second", emails=["boris@customer.test"])
    deal = crm.add_deal("Big deal", contact_ids=[anna, boris], files={"ufCrmContract": ("c.pdf", pdf_bytes)})
    signed = []

    def sign_at_once(doc_id, email):
        assert not SignatureRequest.objects.filter(external_id=doc_id).exists()  # the send is not recorded yet
        signnow.sign(doc_id, email)
        signed.append(email)

    signnow.on_invite = sign_at_once
    props = {**SEND_PROPS, "signer_contacts": "all", "signing_order": order, "wait": "Y"}
    started = time.monotonic()
    wf = live_portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=props)
    assert wf.response_status == 200
    run_worker()

    wait_until(lambda: wf.answers, 60, 0.2, "the workflow's answer")
    answered_in = time.monotonic() - started
    print(f"\nanswered {answered_in:.1f}s after the robot call ({order})")
    assert answered_in < 60
    assert sorted(signed) == ["anna@customer.test", "boris@customer.test"]
    assert wf.return_values["status"] == states.COMPLETED and len(wf.answers) == 1
    req = SignatureRequest.objects.get()
    assert req.status == states.COMPLETED and req.send_phase == "sent"
    assert RequestEvent.objects.filter(request=req, kind=callbacks.REPLAYED).exists()  # the race did happen
    assert not RequestEvent.objects.filter(request=req, kind=callbacks.EARLY).exists()  # nothing left behind
    assert len(invites(signnow)) == 2 and RobotCall.objects.get().state == RobotCall.DONE


def test_a_lost_callback_is_noticed_by_the_first_poll_within_five_minutes():
    assert 2 * 60 <= services.POLL_FIRST.total_seconds() <= 5 * 60
    assert services.POLL_MAX.total_seconds() == 6 * 3600
