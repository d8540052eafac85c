"""Duplicate and reordered deliveries: robot calls (queue server, broker redelivery) and provider webhooks.

Every robot call is answered exactly once and nothing is sent to the provider twice, however often or
in whatever order the same messages arrive.
"""
from __future__ import annotations

import threading

import pytest
from django.db import connection

from bizproc_ext import pipeline
from bizproc_ext.models import RobotCall
from signing import states
from signing.models import SignatureRequest
from signing.tasks import refresh_request_status
from tests.robots.helpers import SEND_PROPS, deal_doc, run_worker

from .conftest import connect_signnow, invites


@pytest.mark.django_db
def test_a_call_delivered_again_after_it_was_answered_is_not_run_again(portal_a, memory_account, memory_provider,
                                                                       deal):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    portal_a.emu.post_robot_call(wf)  # duplicate while still queued
    run_worker()
    for _ in range(3):  # late duplicates, after the answer
        response = portal_a.emu.post_robot_call(wf)
        assert response.status_code == 200 and b"duplicate" in response.content
    run_worker()
    assert RobotCall.objects.count() == 1
    assert len(wf.answers) == 1
    assert memory_provider.sends == 1


@pytest.mark.django_db
def test_calls_delivered_in_reverse_order_are_each_answered_once(portal_a, memory_account, memory_provider, deal):
    emu = portal_a.emu
    # Four distinct calls for the same deal and document: "send another" keeps each its own request
    # (the default would return the first open one: tests/providers/test_e2e_open_requests.py).
    props = {**SEND_PROPS, "if_open_exists": "another"}
    flows = [emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=props, deliver=False)
             for _ in range(4)]
    for wf in reversed(flows):  # the queue server posts the later ones first ...
        emu.post_robot_call(wf)
    for wf in flows:            # ... and then everything again
        emu.post_robot_call(wf)
    run_worker()
    assert RobotCall.objects.count() == 4
    assert [len(wf.answers) for wf in flows] == [1, 1, 1, 1]
    assert memory_provider.sends == 4


@pytest.mark.reliability
@pytest.mark.django_db(transaction=True)
def test_the_broker_redelivering_a_task_to_two_workers_at_once_runs_it_once(live_portal_a, memory_provider,
                                                                            fast_portal_limits, pdf_bytes):
    """acks_late + a lost ack = the same message on two workers; the conditional claim lets one through."""
    from signing.models import ProviderAccount

    fast_portal_limits(live_portal_a)
    ProviderAccount.objects.create(portal=live_portal_a.db, provider="memory", is_default=True)
    emu = live_portal_a.emu
    anna = emu.crm.add_contact("Anna", "Buyer", emails=["anna@customer.test"])
    deal = emu.crm.add_deal("D", contact_ids=[anna], files={"ufCrmContract": ("c.pdf", pdf_bytes)})
    wf = emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    call = RobotCall.objects.get()
    barrier = threading.Barrier(4)
    errors = []

    def deliver():
        try:
            barrier.wait(10)
            pipeline.run(call.pk)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    call.refresh_from_db()
    assert call.attempts == 1 and call.state == RobotCall.DONE
    assert len(wf.answers) == 1
    assert memory_provider.sends == 1


# --- provider webhooks ----------------------------------------------------------------------------------
@pytest.fixture
def signed_request(portal_a, signnow, deal, eager_tasks, django_capture_on_commit_callbacks, settings):
    """A waiting robot whose signNow document both signers have signed; the callbacks are captured, not
    delivered yet (``signnow.webhooks_out``)."""
    account = connect_signnow(portal_a.db)
    account.provider_impl().on_connected(account.webhook_url())  # subscribe, as connecting in the UI does
    props = {**SEND_PROPS, "signer_contacts": "all", "wait": "Y"}
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=props)
    run_worker()
    req = SignatureRequest.objects.get()
    assert req.status == states.SENT and wf.answers == []
    signnow.webhooks_out.clear()
    for email in ("anna@customer.test", "boris@customer.test"):
        signnow.sign(req.external_id, email)
    assert len(signnow.webhooks_out) >= 2
    return wf, req


def _deliver(client, url, body, headers):
    from urllib.parse import urlsplit

    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k.lower() != "content-type"}
    return client.post(urlsplit(url).path, body, content_type="application/json", **extra)


@pytest.mark.django_db
def test_webhooks_replayed_and_reordered_finish_the_request_once(client, signed_request, signnow, portal_a, deal,
                                                                 django_capture_on_commit_callbacks):
    wf, req = signed_request
    deliveries = list(signnow.webhooks_out)
    with django_capture_on_commit_callbacks(execute=True):
        for url, body, headers in reversed(deliveries):  # newest first ...
            assert _deliver(client, url, body, headers).status_code == 200
        for _ in range(2):                                # ... then every one replayed twice
            for url, body, headers in deliveries:
                assert _deliver(client, url, body, headers).status_code == 200
    req.refresh_from_db()
    assert req.status == states.COMPLETED
    assert len(portal_a.emu.crm.comments_for("deal", deal)) == 1  # signed copy attached once
    assert req.events.filter(kind="webhook").count() == len({d[1] for d in deliveries})
    assert len(wf.answers) == 1 and wf.return_values["status"] == "completed"
    assert len(invites(signnow)) == 2  # one per signer, nothing re-sent


@pytest.mark.django_db
def test_a_replayed_webhook_with_a_tampered_body_is_refused(client, signed_request, signnow):
    wf, req = signed_request
    url, body, headers = signnow.webhooks_out[0]
    tampered = body.replace(b'"document_id": "', b'"document_id": "0')
    assert _deliver(client, url, tampered, headers).status_code == 403
    req.refresh_from_db()
    assert req.status == states.SENT and wf.answers == []
    assert len(invites(signnow)) == 2


@pytest.mark.django_db
def test_a_late_webhook_after_the_poller_finished_the_request_changes_nothing(
        client, signed_request, signnow, portal_a, django_capture_on_commit_callbacks):
    wf, req = signed_request
    with django_capture_on_commit_callbacks(execute=True):
        refresh_request_status.apply(args=[req.pk, "poll"])  # the poller got there first
    assert len(wf.answers) == 1
    with django_capture_on_commit_callbacks(execute=True):
        for url, body, headers in signnow.webhooks_out:
            assert _deliver(client, url, body, headers).status_code == 200
    req.refresh_from_db()
    assert req.status == states.COMPLETED
    assert len(wf.answers) == 1
    assert len(invites(signnow)) == 2
