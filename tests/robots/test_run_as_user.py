"""The worker acts with the rights of the user the robot runs as (issue 11, item 5).

A manager whose rule names a confidential Drive file or a generated document they cannot read must
not get it sent for signature by b24sign acting with the admin's token.
"""
import pytest
from django.db import connection

from b24app.rest import B24Client, B24Error
from bizproc_ext.models import RobotCall
from signing.models import SignatureRequest
from tests.robots.helpers import SEND_PROPS, deal_doc, run_worker

MANAGER = 2


def _drive_call(portal_a, deal, file_id, **kw):
    props = {**SEND_PROPS, "document_source": "disk", "document_id": str(file_id)}
    return portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=props, **kw)


@pytest.mark.django_db
def test_a_drive_file_the_run_as_user_cannot_read_is_refused(portal_a, memory_account, memory_provider, deal,
                                                             pdf_bytes):
    secret = portal_a.emu.crm.add_disk_file("salaries.pdf", pdf_bytes, owner=1)
    wf = _drive_call(portal_a, deal, secret, user_id=MANAGER)
    run_worker()
    assert wf.return_values["status"] == "error"
    assert "the user this rule runs as cannot read the Drive file" in wf.return_values["error"]
    assert portal_a.emu.stats.downloads == 0 and memory_provider.sends == 0
    assert not SignatureRequest.objects.exists()


@pytest.mark.django_db
def test_a_shared_drive_file_is_read_and_downloaded_as_the_run_as_user(portal_a, memory_account, memory_provider,
                                                                       deal, pdf_bytes):
    shared = portal_a.emu.crm.add_disk_file("contract.pdf", pdf_bytes, owner=1, shared_with=[MANAGER])
    wf = _drive_call(portal_a, deal, shared, user_id=MANAGER)
    portal_a.emu.rest_log.clear()
    run_worker()
    assert wf.return_values["status"] == "sent" and memory_provider.sends == 1
    reads = [r for r in portal_a.emu.rest_log if r["method"] == "batch" and any(
        str(c).startswith("disk.file.get") for c in r["params"]["cmd"].values())]
    assert reads and all(r["user_id"] == MANAGER for r in reads)
    assert portal_a.emu.stats.downloads == 1
    assert RobotCall.objects.get().auth_access_token == ""  # forgotten once the call no longer needs it


@pytest.mark.django_db
def test_a_generated_document_the_run_as_user_cannot_read_is_refused(portal_a, memory_account, memory_provider,
                                                                     deal, pdf_bytes):
    doc = portal_a.emu.crm.add_generated_document(2, deal, pdf_bytes, created_by=1)  # deal's responsible: user 1
    props = {**SEND_PROPS, "document_source": "docgen", "document_id": str(doc)}
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=props, user_id=MANAGER)
    run_worker()
    assert "the user this rule runs as cannot read the generated document" in wf.return_values["error"]
    assert portal_a.emu.stats.downloads == 0 and memory_provider.sends == 0


@pytest.mark.django_db
def test_a_call_without_a_token_falls_back_to_the_stored_token(portal_a, memory_account, memory_provider, deal,
                                                               pdf_bytes):
    secret = portal_a.emu.crm.add_disk_file("contract.pdf", pdf_bytes, owner=1)
    wf = _drive_call(portal_a, deal, secret, user_id=MANAGER, send_access_token=False)
    run_worker()
    assert wf.return_values["status"] == "sent" and memory_provider.sends == 1


@pytest.mark.django_db
def test_the_run_as_token_is_stored_encrypted(portal_a, deal, pdf_bytes):
    wf = _drive_call(portal_a, deal, 1, user_id=MANAGER)
    token = dict(wf.pairs)["auth[access_token]"]
    call = RobotCall.objects.get()
    assert call.auth_access_token == token and call.auth_expires_at is not None
    with connection.cursor() as cur:
        cur.execute("SELECT auth_access_token FROM bizproc_ext_robotcall WHERE id = %s", [call.pk])
        raw = cur.fetchone()[0]
    assert token not in raw


@pytest.mark.django_db
def test_admin_only_methods_never_run_on_a_users_token(portal_a):
    user_token = portal_a.emu.issue_tokens(MANAGER)["access_token"]
    before = portal_a.emu.stats.requests
    for method in ("bizproc.robot.list", "placement.bind", "event.bind", "event.get"):
        with pytest.raises(B24Error) as info:
            B24Client(portal_a.db, user_token=user_token).call(method, {})
        assert info.value.error == "ADMIN_ONLY"
    assert portal_a.emu.stats.requests == before


@pytest.mark.django_db
def test_an_expired_run_as_token_is_renewed_with_the_calls_own_refresh_token(portal_a, memory_account,
                                                                            memory_provider, deal, pdf_bytes):
    shared = portal_a.emu.crm.add_disk_file("contract.pdf", pdf_bytes, owner=1, shared_with=[MANAGER])
    wf = _drive_call(portal_a, deal, shared, user_id=MANAGER)
    portal_a.emu.expire_access_tokens()  # Bitrix24 says expired, although the call's expiry says fresh
    portal_a.emu.rest_log.clear()
    run_worker()
    assert wf.return_values["status"] == "sent" and memory_provider.sends == 1
    reads = [r for r in portal_a.emu.rest_log if r["method"] == "batch" and any(
        str(c).startswith("disk.file.get") for c in r["params"]["cmd"].values())]
    assert reads and all(r["user_id"] == MANAGER for r in reads)  # never the admin's token instead


@pytest.mark.django_db
def test_an_expired_run_as_token_without_a_refresh_token_fails_clearly(portal_a, memory_account, memory_provider,
                                                                      deal, pdf_bytes):
    secret = portal_a.emu.crm.add_disk_file("salaries.pdf", pdf_bytes, owner=1)
    wf = _drive_call(portal_a, deal, secret, user_id=MANAGER, send_refresh_token=False)
    portal_a.emu.expire_access_tokens()
    run_worker()
    assert wf.return_values["status"] == "error"
    assert "run-as user's authorization" in wf.return_values["error"]
    assert portal_a.emu.stats.downloads == 0 and memory_provider.sends == 0


@pytest.mark.django_db
def test_admin_only_methods_inside_a_batch_never_run_on_a_users_token(portal_a):
    user_token = portal_a.emu.issue_tokens(MANAGER)["access_token"]
    before = portal_a.emu.stats.requests
    with pytest.raises(B24Error) as info:
        B24Client(portal_a.db, user_token=user_token).batch({"me": ("user.current", {}),
                                                             "robots": ("bizproc.robot.list", {})})
    assert info.value.error == "ADMIN_ONLY"
    assert portal_a.emu.stats.requests == before


@pytest.mark.django_db
@pytest.mark.parametrize("admin_only_log", [False, True])
def test_the_proof_works_for_a_non_admin_run_as_user_under_both_readings(portal_a, memory_account, memory_provider,
                                                                        deal, pdf_bytes, admin_only_log):
    """The core lets any user log with a valid token (one request: proof and reads); the docs say
    administrators only (then the proof goes again with the stored token, and the reads as the user)."""
    portal_a.cloud.activity_log_requires_admin = admin_only_log
    shared = portal_a.emu.crm.add_disk_file("contract.pdf", pdf_bytes, owner=1, shared_with=[MANAGER])
    wf = _drive_call(portal_a, deal, shared, user_id=MANAGER)
    portal_a.emu.rest_log.clear()
    run_worker()
    assert wf.return_values["status"] == "sent" and wf.log[0] == "received by b24sign"
    batches = [r for r in portal_a.emu.rest_log if r["method"] == "batch"]
    reads = [r for r in batches if any(str(c).startswith("disk.file.get") for c in r["params"]["cmd"].values())]
    assert reads[-1]["user_id"] == MANAGER
    assert len(batches[:batches.index(reads[-1]) + 1]) == (3 if admin_only_log else 1)


@pytest.mark.django_db
def test_a_forged_call_of_a_non_admin_is_still_refused_when_logging_is_admin_only(portal_a, memory_account,
                                                                                  memory_provider, deal, pdf_bytes):
    portal_a.cloud.activity_log_requires_admin = True
    secret = portal_a.emu.crm.add_disk_file("salaries.pdf", pdf_bytes, owner=1, shared_with=[MANAGER])
    wf = _drive_call(portal_a, deal, secret, user_id=MANAGER, deliver=False)
    forged = [(k, wf.event_token[:-4] + "0000" if k == "event_token" else v) for k, v in wf.pairs]
    assert portal_a.emu.post_robot_call(wf, forged).status_code == 200
    portal_a.emu.stats.by_method.clear()
    run_worker()
    assert portal_a.emu.stats.by_method["disk.file.get"] == 0 and portal_a.emu.stats.downloads == 0
    assert memory_provider.sends == 0 and RobotCall.objects.get().answer_state == "refused"
