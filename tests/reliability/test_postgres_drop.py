"""PostgreSQL drops the app's connections (failover, pgbouncer restart, idle kill) in the middle of work.

Only connections to this test's own database are terminated.  The web side reconnects on the next
request (CONN_HEALTH_CHECKS); a task that lost its connection mid-send fails, the sweeper re-runs it,
and the send resumes from its checkpoints: one answer per call, one invite per request.
"""
from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from bizproc_ext.models import RobotCall
from bizproc_ext.tasks import sweep_robot_calls
from tests.robots.helpers import SEND_PROPS, deal_doc

from .conftest import connect_signnow, invited_documents, invites
from .support import Gate, wait_until

# Many calls for one deal and one document, each meant as its own send (the default would return the
# first open request: tests/providers/test_e2e_open_requests.py).
SEND_EACH = {**SEND_PROPS, "if_open_exists": "another"}

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]


def terminate_app_connections() -> int:
    """pg_terminate_backend every connection to the test database except this test thread's own."""
    s = connection.settings_dict
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        own = cur.fetchone()[0]
    with psycopg.connect(host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, user=s["USER"],
                         password=s.get("PASSWORD") or None, dbname="postgres", autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> %s AND pid <> pg_backend_pid()", (s["NAME"], own)).fetchall()
    return len(rows)


def test_connections_killed_mid_run_are_recovered(settings, live_portal_a, signnow, fast_portal_limits, worker_env,
                                                  workers, pdf_bytes):
    settings.ROBOT_CALL_LEASE = settings.ROBOT_CALL_REPUBLISH_AFTER = 3
    fast_portal_limits(live_portal_a)
    connect_signnow(live_portal_a.db)
    emu = live_portal_a.emu
    anna = emu.crm.add_contact("Anna", "Buyer", emails=["anna@customer.test"])
    deal = emu.crm.add_deal("Deal", contact_ids=[anna], files={"ufCrmContract": ("c.pdf", pdf_bytes)})
    worker = workers(worker_env())

    def start():
        wf = emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_EACH)
        assert wf.response_status == 200, wf.response_body
        return wf

    flows = [start() for _ in range(2)]
    wait_until(lambda: all(wf.answers for wf in flows), 60, 0.1, lambda: worker.log()[-3000:])

    gate = Gate(signnow, "POST", r"^/document/[0-9a-f]+/invite$")
    flows.append(start())
    assert gate.arrived.wait(60)
    assert terminate_app_connections() >= 1  # at least the worker's persistent connection
    gate.release()  # the invite lands; the worker's next query finds its connection gone

    flows += [start() for _ in range(2)]  # the web side reconnects by itself

    def finished():
        if all(wf.answers for wf in flows) and not RobotCall.objects.exclude(state=RobotCall.DONE).exists():
            return True
        sweep_robot_calls.delay()
        return False
    wait_until(finished, 90, 1.0, lambda: f"every call answered; worker log:\n{worker.log()[-4000:]}")

    assert terminate_app_connections() >= 0
    flows.append(start())  # and once more after a second drop, now with everything idle
    wait_until(lambda: flows[-1].answers, 60, 0.2, lambda: worker.log()[-3000:])

    assert len(invited_documents(signnow)) == len(flows)
    assert [len(wf.answers) for wf in flows] == [1] * len(flows)
    assert len(invites(signnow)) == len(flows)
