"""The robot calls' own entry under a WSGI server (bizproc_ext/wsgi.py, issue 14): a queue-server POST goes from
gunicorn straight to the handler, past Django's request cycle, and keeps what that cycle gave it.  These tests
call ``config.wsgi.application`` as gunicorn does (the test client never reaches it), with no outer transaction
(``transaction=True``): the entry closes obsolete connections as Django's ``request_finished`` does.

Personas: portal A's queue server; a stranger naming a host we do not serve.
"""
from __future__ import annotations

import io
import json
import logging
import time
from urllib.parse import urlencode

import pytest
from django.core.signals import request_started
from django.db import connection

from bizproc_ext.models import RobotCall
from config.wsgi import application
from tests.robots.helpers import SEND_PROPS, deal_doc

URL = "/bizproc/robots/b24sign_send/"


def wsgi(path: str, body: bytes = b"", method: str = "POST", host: str = "testserver", length: str | None = None):
    """One request as gunicorn hands it over: (status, headers, body)."""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
               "SERVER_NAME": "testserver", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": host,
               "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(),
               "CONTENT_TYPE": "application/x-www-form-urlencoded",
               "CONTENT_LENGTH": str(len(body)) if length is None else length}
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen.update(status=int(status.split()[0]), headers=dict(headers))
    chunks = application(environ, start_response)
    try:
        content = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    return seen["status"], seen["headers"], content


@pytest.fixture
def call_body(portal_a, deal):
    def make():
        wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS, deliver=False)
        return wf, urlencode(wf.pairs).encode()
    return make


@pytest.fixture
def django_cycles():
    """How many requests entered Django's request cycle."""
    count = []

    def seen(**kwargs):
        count.append(1)
    request_started.connect(seen, weak=False)
    yield count
    request_started.disconnect(seen)


@pytest.mark.django_db(transaction=True)
def test_a_robot_call_is_recorded_past_djangos_request_cycle(call_body, django_cycles):
    wf, body = call_body()
    status, headers, content = wsgi(URL, body)
    assert (status, json.loads(content)) == (200, {"status": "queued"})
    assert headers["Content-Type"] == "application/json" and headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Length"] == str(len(content))  # a sized answer: gunicorn does not chunk it
    assert list(RobotCall.objects.values_list("event_token", flat=True)) == [wf.event_token]
    status, _, content = wsgi(URL, body)  # the queue server's duplicate: absorbed
    assert (status, json.loads(content)) == (200, {"status": "duplicate"}) and RobotCall.objects.count() == 1
    assert django_cycles == []  # neither went through Django's handler


@pytest.mark.django_db(transaction=True)
def test_everything_else_still_goes_through_django(call_body, django_cycles):
    _, body = call_body()
    assert wsgi("/healthz/", method="GET")[0] == 200
    assert wsgi(URL, body, method="GET")[0] == 405  # require_POST, the normal way
    status, _, content = wsgi(URL, body, length="12abc")  # content_length_guard, before anything reads the body
    assert status == 400 and b"Content-Length" in content
    assert len(django_cycles) == 3 and RobotCall.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_forged_or_foreign_call_is_refused_as_before(call_body, portal_a):
    wf, body = call_body()
    forged = urlencode([(k, "forged" if k == "auth[application_token]" else v) for k, v in wf.pairs]).encode()
    status, headers, content = wsgi(URL, forged)
    assert status == 403 and headers["Content-Length"] == str(len(content))
    status, _, _ = wsgi(URL, body, host="evil.example")  # ALLOWED_HOSTS, as CommonMiddleware checked it
    assert status == 400 and RobotCall.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_failure_inside_the_handler_is_djangos_logged_500_and_the_next_call_is_recorded(
        call_body, monkeypatch, caplog):
    _, first = call_body()
    real = RobotCall.insert

    def broken(**fields):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(RobotCall, "insert", broken)
    with caplog.at_level(logging.ERROR, logger="django.request"):
        status, _, _ = wsgi(URL, first)
    assert status == 500 and any("disk on fire" in str(r.exc_info) for r in caplog.records)
    monkeypatch.setattr(RobotCall, "insert", real)
    wf, second = call_body()
    assert wsgi(URL, second)[0] == 200
    assert list(RobotCall.objects.values_list("event_token", flat=True)) == [wf.event_token]


@pytest.mark.django_db(transaction=True)
def test_connections_are_kept_and_closed_as_after_a_django_request(call_body):
    """CONN_MAX_AGE: a connection is reused from call to call, and closed once it has outlived its age."""
    _, body = call_body()
    assert wsgi(URL, body)[0] == 200
    kept = connection.connection
    assert kept is not None and not kept.closed
    connection.close_at = time.monotonic() - 1  # its CONN_MAX_AGE has run out
    _, body = call_body()
    assert wsgi(URL, body)[0] == 200 and RobotCall.objects.count() == 2
    assert kept.closed  # closed after the answer, as close_old_connections does on request_finished
