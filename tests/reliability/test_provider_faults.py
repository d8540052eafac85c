"""The provider failing: 5xx, lost responses and timeouts.  Retries resume from the send's checkpoints,
so a signature request is never sent twice and the workflow is answered once."""
from __future__ import annotations

import re
import time

import pytest

from bizproc_ext import pipeline
from bizproc_ext.models import RobotCall
from tests.emulators.base import json_response
from tests.robots.helpers import SEND_PROPS, deal_doc, run_worker

from .conftest import connect_signnow, invited_documents, invites
from .support import Gate

INVITE = r"^/document/[0-9a-f]+/invite$"


@pytest.fixture
def start(portal_a, signnow, deal):
    connect_signnow(portal_a.db)

    def go():
        wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
        assert wf.response_status == 200
        return wf
    return go


def run_once() -> pipeline.Outcome:
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        return pipeline.run(RobotCall.objects.get().pk)


@pytest.mark.django_db
def test_provider_5xx_is_retried_until_it_recovers(start, signnow):
    signnow.fail_next(3, 503)
    wf = start()
    run_worker(max_rounds=6)
    assert RobotCall.objects.get().attempts == 4
    assert wf.return_values["status"] == "sent"
    assert len(wf.answers) == 1
    assert len(invites(signnow)) == 1


@pytest.mark.django_db
def test_an_invite_whose_response_was_lost_is_not_sent_again(start, signnow):
    original = signnow.dispatch
    lost = []

    def lossy(req):
        resp = original(req)
        if req.method == "POST" and not lost and re.search(INVITE, req.path):
            lost.append(req.path)
            return json_response({"error": "Bad Gateway"}, 502)  # signNow did it; we never hear back
        return resp
    signnow.dispatch = lossy
    wf = start()
    run_worker()
    assert lost and RobotCall.objects.get().attempts == 2
    assert len(invited_documents(signnow)) == 1
    assert len(wf.answers) == 1
    assert len(invites(signnow)) == 1


@pytest.mark.django_db
def test_a_provider_slower_than_our_timeout_is_retried_without_a_second_send(start, signnow, settings):
    settings.PROVIDER_HTTP_TIMEOUT = 0.3
    signnow.delay = 0.8  # every request outlives our timeout (uploads have their own, longer one)
    wf = start()
    for _ in range(2):
        assert run_once().retry_in is not None
    assert wf.answers == [] and "unreachable" in RobotCall.objects.get().last_error
    signnow.delay = 0
    time.sleep(1.0)  # what timed out on our side still lands on theirs
    assert run_once().retry_in is None
    assert wf.return_values["status"] == "sent"
    assert len(invited_documents(signnow)) == 1
    assert len(wf.answers) == 1
    assert len(invites(signnow)) == 1


@pytest.mark.django_db
def test_an_invite_that_timed_out_but_landed_is_found_on_retry(start, signnow, settings):
    settings.PROVIDER_HTTP_TIMEOUT = 0.3
    Gate(signnow, "POST", INVITE, hold=1.0)  # only the invite is slow; signNow still does it
    wf = start()
    assert run_once().retry_in is not None
    time.sleep(1.2)  # the task's retry countdown is far longer than this
    assert run_once().retry_in is None
    assert len(signnow.calls_to("POST", INVITE)) == 1
    assert len(wf.answers) == 1
    assert len(invites(signnow)) == 1
