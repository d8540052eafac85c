"""How a refused ``bizproc.event.send`` is handled: by Bitrix24's code, every retry loop capped.

Personas: portal A (Maria's deal rule sends the contract; the workflow waits for b24sign's answer)."""
from datetime import timedelta

import pytest
from django.utils import timezone

from b24app.models import Portal
from bizproc_ext import answers
from bizproc_ext.models import RobotCall
from tests.robots.helpers import SEND_PROPS, deal_doc, run_worker


def start(portal_a, deal):
    return portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)


def sends(portal_a) -> int:
    return portal_a.emu.stats.by_method["bizproc.event.send"]


def rerun_due(portal_a, rounds: int = 1) -> None:
    """The next retries, as if their countdown (and the portal's slow-retry pause) had passed."""
    for _ in range(rounds):
        Portal.objects.filter(pk=portal_a.db.pk, access_problem_at__isnull=False).update(
            access_problem_at=timezone.now() - timedelta(seconds=answers.BLOCKED_RETRY + 1))
        run_worker(max_rounds=1)


@pytest.mark.django_db
@pytest.mark.parametrize("status,code,text", [
    (403, "ACCESS_DENIED", "Access denied!"),               # e.g. the plan no longer allows the app
    (401, "insufficient_scope", "The request requires higher privileges than provided by the access token"),
    (401, "NO_AUTH_FOUND", "Wrong authorization data"),
    (401, "INVALID_CREDENTIALS", "Invalid request credentials"),
    (403, "OVERLOAD_LIMIT", "REST API is blocked due to overload."),
])
def test_a_portal_refusing_the_app_keeps_the_answer_pending_and_flags_the_portal(
        portal_a, memory_account, memory_provider, deal, client, status, code, text):
    portal_a.emu.refuse_method("bizproc.event.send", status, code, text, times=2)
    wf = start(portal_a, deal)
    run_worker(max_rounds=1)
    call = RobotCall.objects.get()
    assert call.answer_state == "pending" and wf.answers == []  # not "failed": the workflow still waits
    portal_a.db.refresh_from_db()
    assert code in portal_a.db.access_problem

    run_worker(max_rounds=1)  # within the slow-retry pause: no call to Bitrix24 at all
    assert sends(portal_a) == 1

    rerun_due(portal_a, 2)  # the admin fixed it; the next slow retry answers
    assert len(wf.answers) == 1 and wf.return_values["status"] == "sent"
    assert memory_provider.sends == 1  # the answer was retried, not the send
    portal_a.db.refresh_from_db()
    assert portal_a.db.access_problem == ""


@pytest.mark.django_db
def test_the_settings_page_names_the_refusal(portal_a, memory_account, memory_provider, deal, client):
    from tests.ui.conftest import ADMIN_ID, open_app, token_of

    portal_a.emu.refuse_method("bizproc.event.send", 403, "ACCESS_DENIED", "Access denied!")
    start(portal_a, deal)
    run_worker(max_rounds=1)
    token = token_of(open_app(client, portal_a.emu, ADMIN_ID))
    page = client.get(f"/app/settings/?t={token}").content.decode()
    assert 'data-problem="access"' in page and "ACCESS_DENIED" in page


@pytest.mark.django_db
@pytest.mark.parametrize("status,code,text", [
    (400, "404", "Бизнес-процесс не найден"),
    (400, "ERROR_CORE", "Workflow instance not found"),
])
def test_an_answer_to_a_workflow_that_is_gone_is_final(portal_a, memory_account, memory_provider, deal, status,
                                                       code, text):
    portal_a.emu.refuse_method("bizproc.event.send", status, code, text)
    start(portal_a, deal)
    run_worker()
    call = RobotCall.objects.get()
    assert call.answer_state == "failed" and call.state == RobotCall.DONE and code in call.answer_error
    assert sends(portal_a) == 1
    portal_a.db.refresh_from_db()
    assert portal_a.db.access_problem == ""  # nothing for the admin to fix


@pytest.mark.django_db
def test_a_second_send_to_a_finished_workflow_is_answered_like_the_core_and_ends_the_call(
        portal_a, memory_account, memory_provider, deal):
    wf = start(portal_a, deal)
    portal_a.emu.terminate_workflow(wf)  # someone stopped the workflow before we answered
    run_worker()
    call = RobotCall.objects.get()
    assert call.answer_state == "failed" and "Бизнес-процесс не найден" in call.answer_error


@pytest.mark.django_db
@pytest.mark.parametrize("status,code", [(500, "INTERNAL_SERVER_ERROR"), (502, "BAD_GATEWAY"),
                                         (400, "SOMETHING_NEW")])
def test_transient_refusals_are_retried_then_given_up_after_a_cap(portal_a, memory_account, memory_provider,
                                                                  deal, status, code):
    portal_a.emu.refuse_method("bizproc.event.send", status, code, "try later")
    start(portal_a, deal)
    run_worker(max_rounds=1)
    call = RobotCall.objects.get()
    assert call.answer_state == "pending" and call.state == RobotCall.QUEUED  # retried, not "failed" at once
    for _ in range(answers.RETRY_ATTEMPTS + 5):
        run_worker(max_rounds=1)
    call.refresh_from_db()
    assert call.answer_state == "failed" and call.state == RobotCall.DONE and "gave up" in call.answer_error
    assert call.answer_attempts == answers.RETRY_ATTEMPTS  # the loop ends
    assert memory_provider.sends == 1


@pytest.mark.django_db
def test_a_portal_that_never_comes_back_is_given_up_too(portal_a, memory_account, memory_provider, deal,
                                                        monkeypatch):
    monkeypatch.setattr(answers, "BLOCKED_ATTEMPTS", 6)  # a day of slow tries, shortened
    portal_a.emu.refuse_method("bizproc.event.send", 403, "ACCESS_DENIED", "Access denied!")
    start(portal_a, deal)
    rerun_due(portal_a, answers.BLOCKED_ATTEMPTS + 3)
    call = RobotCall.objects.get()
    assert call.answer_state == "failed" and call.answer_attempts == answers.BLOCKED_ATTEMPTS
