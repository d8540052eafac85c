"""A robot call's task that meets an unreachable database is tried again at once (issue 14, found by the
500-call bench: PostgreSQL at max_connections failed group tasks before they claimed anything, and their
calls waited for the sweeper).

Persona: portal A's queue server delivered calls while PostgreSQL refused new connections for a moment.
"""
from __future__ import annotations

import pytest
from django.db import OperationalError

from bizproc_ext import coalesce, drainer, tasks
from bizproc_ext.models import RobotCall
from tests.robots.helpers import SEND_PROPS, deal_doc

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def refused_once(monkeypatch):
    """The first portal lookup of a task fails as psycopg does when PostgreSQL is at max_connections (a lone
    call's task looks up only its portal's id, a group's task the portal)."""
    failures = []

    def refusing(real, ids_of):
        def lookup(arg):
            if not failures:
                failures.append(ids_of(arg))
                raise OperationalError('connection failed: FATAL:  sorry, too many clients already')
            return real(arg)
        return lookup
    monkeypatch.setattr(coalesce, "_portal_of", refusing(coalesce._portal_of, list))
    monkeypatch.setattr(coalesce, "_portal_id_of", refusing(coalesce._portal_id_of, lambda pk: [pk]))
    return failures


@pytest.mark.parametrize("task", ["process_robot_call", "process_robot_calls"])
def test_a_task_that_cannot_reach_the_database_is_retried_and_the_call_answered(
        task, portal_a, memory_account, memory_provider, deal, refused_once):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    drainer.drain_once()
    pk = RobotCall.objects.get().pk
    result = getattr(tasks, task).apply(args=[pk] if task == "process_robot_call" else [[pk]])
    assert refused_once == [[pk]]  # it did fail once
    assert result.successful()
    assert len(wf.answers) == 1 and wf.return_values["status"] == "sent"
    assert RobotCall.objects.get().state == RobotCall.DONE and memory_provider.sends == 1
