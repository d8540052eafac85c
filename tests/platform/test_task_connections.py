"""A Celery thread keeps its PostgreSQL connection from task to task, as Django keeps one from request to request
(config/celery.py, docs/decisions.md "2026-12-02 — Celery's threads keep their connection").

Persona: the operator of a worker.  Celery's Django fixup used to close the connection before and after every
task, so every task started a PostgreSQL backend; now the next task on a thread runs on the same backend,
unless the connection has outlived CONN_MAX_AGE or is broken.  The tasks here run on the test's thread the way a
worker's pool thread runs them: Celery's tracer with a non-eager request (``task_prerun`` and ``task_postrun``
sent around each), with the worker's Django fixup connected as a worker connects it at ``worker_init``.
"""
from __future__ import annotations

import time
import uuid

import psycopg
import pytest
from celery.app.trace import trace_task_ret
from celery.fixups.django import DjangoWorkerFixup
from celery.signals import task_postrun, task_prerun
from django.db import connection, transaction

from config.celery import app

pytestmark = pytest.mark.django_db(transaction=True)

_seen: list[int] = []


@app.task(name="tests.platform.backend_pid")
def backend_pid(then=None):
    """Records the PostgreSQL backend it runs on, then does ``then(pid)`` (what the task goes on to do)."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    _seen.append(pid)
    if then is not None:
        then(pid)


@pytest.fixture
def worker_thread():
    """``run(then=None)`` runs ``backend_pid`` on this thread as a worker does: (backend pid, whether it failed)."""
    fixup = DjangoWorkerFixup(app)  # what the worker installs at worker_init (its task_prerun/task_postrun part)
    task_prerun.connect(fixup.on_task_prerun, weak=False)
    task_postrun.connect(fixup.on_task_postrun, weak=False)
    backend_pid.__trace__ = None  # a tracer built now sees the receivers connected now

    def run(then=None) -> tuple[int, bool]:
        _seen.clear()
        failed, _, _ = trace_task_ret(backend_pid.name, str(uuid.uuid4()), {}, ((), {"then": then}, None),
                                      None, None, app=app)
        return _seen[0], bool(failed)
    yield run
    task_prerun.disconnect(fixup.on_task_prerun)
    task_postrun.disconnect(fixup.on_task_postrun)
    backend_pid.__trace__ = None


def terminate(pid: int) -> None:
    """PostgreSQL drops that backend (failover, idle kill), from a connection of its own."""
    s = connection.settings_dict
    with psycopg.connect(host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, user=s["USER"],
                         password=s.get("PASSWORD") or None, dbname="postgres", autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]


def test_the_next_task_on_a_thread_runs_on_the_same_backend(worker_thread):
    first, failed = worker_thread()
    assert not failed
    assert [worker_thread() for _ in range(3)] == [(first, False)] * 3


def test_a_connection_older_than_conn_max_age_is_replaced_before_the_next_task(worker_thread):
    first, _ = worker_thread()
    connection.close_at = time.monotonic() - 1  # its CONN_MAX_AGE ran out while the thread waited for work
    second, failed = worker_thread()
    assert not failed and second != first
    assert worker_thread() == (second, False)  # and the new one is kept in turn


def test_a_connection_that_ran_out_of_age_during_a_task_is_closed_after_it(worker_thread):
    first, _ = worker_thread(then=lambda pid: setattr(connection, "close_at", time.monotonic() - 1))
    assert connection.connection is None  # an idle thread holds no connection that is too old
    second, failed = worker_thread()
    assert not failed and second != first


def test_a_connection_that_failed_under_a_task_is_dropped_and_the_next_task_runs(worker_thread):
    first, _ = worker_thread()

    def dropped_mid_task(pid):
        terminate(pid)
        with connection.cursor() as cur:
            cur.execute("SELECT 1")  # OperationalError: the connection is marked errored
    assert worker_thread(then=dropped_mid_task) == (first, True)
    assert connection.connection is None  # the broken connection is not kept while the thread waits
    second, failed = worker_thread()
    assert not failed and second != first


def test_a_connection_dropped_while_the_thread_waited_is_replaced_by_the_next_task(worker_thread):
    first, _ = worker_thread()
    terminate(first)  # between tasks: nothing noticed yet
    second, failed = worker_thread()  # CONN_HEALTH_CHECKS: the task's first query checks it and reconnects
    assert not failed and second != first


def test_a_task_whose_sql_failed_keeps_a_connection_that_still_works(worker_thread):
    def bad_sql(pid):
        with connection.cursor() as cur:
            cur.execute("SELECT * FROM no_such_table")  # ProgrammingError: errored, but the connection is fine
    first, failed = worker_thread(then=bad_sql)
    assert failed
    assert worker_thread() == (first, False)


def test_an_eager_task_leaves_its_callers_connection_and_transaction_alone():
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid(), txid_current()")
            pid, txid = cur.fetchone()
        connection.close_at = time.monotonic() - 1  # what a worker's thread would replace
        seen = []

        def same_transaction(pid):
            with connection.cursor() as cur:
                cur.execute("SELECT txid_current()")
                seen.append(cur.fetchone()[0])
        backend_pid.apply(kwargs={"then": same_transaction}).get()
        with connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid(), txid_current()")
            assert cur.fetchone() == (pid, txid)
    assert _seen[-1] == pid and seen == [txid]
