"""Redis (broker and coordination) crashes and comes back empty while calls keep arriving.

The handler must keep answering 200 (it only records the row; the drainer publishes it when the broker
is back), and the sweeper must get every call answered once Redis is back, without a second send.  A private
redis-server is used: the shared one on 6379 is never touched.
"""
from __future__ import annotations

import threading
import time

import pytest

from bizproc_ext.models import RobotCall
from bizproc_ext.tasks import sweep_robot_calls
from tests.robots.helpers import SEND_PROPS, deal_doc

from .conftest import connect_signnow, invited_documents, invites
from .support import celery_broker, wait_until

# Many calls for one deal and one document, each meant as its own send (the default would return the
# first open request: tests/providers/test_e2e_open_requests.py).
SEND_EACH = {**SEND_PROPS, "if_open_exists": "another"}

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

CALLS = 18


def test_redis_restarted_under_load_loses_no_call(settings, private_redis, live_portal_a, signnow, fast_portal_limits,
                                                 worker_env, workers, pdf_bytes):
    settings.REDIS_URL = f"{private_redis.url}/0"
    settings.CELERY_BROKER_URL = f"{private_redis.url}/1"
    settings.ROBOT_CALL_LEASE = settings.ROBOT_CALL_REPUBLISH_AFTER = 5
    fast_portal_limits(live_portal_a)
    connect_signnow(live_portal_a.db)
    emu = live_portal_a.emu
    anna = emu.crm.add_contact("Anna", "Buyer", emails=["anna@customer.test"])
    deal = emu.crm.add_deal("Deal", contact_ids=[anna], files={"ufCrmContract": ("c.pdf", pdf_bytes)})

    with celery_broker(settings.CELERY_BROKER_URL):
        worker = workers(worker_env(), concurrency=2)
        flows = []

        def queue_server():
            for _ in range(CALLS):
                flows.append(emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_EACH))
                time.sleep(0.15)

        poster = threading.Thread(target=queue_server)
        poster.start()
        wait_until(lambda: len(flows) >= 5, 30, 0.05, "the first calls")
        private_redis.restart(down_for=1.5)  # crash: queued and unacked messages are gone
        poster.join(120)
        assert not poster.is_alive()

        assert [wf.response_status for wf in flows] == [200] * CALLS  # the queue server never saw a failure
        assert RobotCall.objects.count() == CALLS

        def all_answered():
            if all(wf.answers for wf in flows):
                return True
            sweep_robot_calls.delay()
            return False
        wait_until(all_answered, 120, 1.0, lambda: f"every call answered; worker log:\n{worker.log()[-4000:]}")

        def all_finished():
            # An answered call can still be running: its task writes "done" after the answer went out (now in
            # one batch with its card), and a task the crash took stays claimed until its lease runs out; the
            # sweeper then finishes it, without a second answer or send (asserted below).
            if not RobotCall.objects.exclude(state=RobotCall.DONE).exists():
                return True
            sweep_robot_calls.delay()
            return False
        wait_until(all_finished, 60, 1.0,
                   lambda: f"every call finished: {list(RobotCall.objects.values_list('state', 'answer_state'))}")

    assert len(invited_documents(signnow)) == CALLS
    assert [len(wf.answers) for wf in flows] == [1] * CALLS
    assert len(invites(signnow)) == CALLS
