"""The dashboard and a request's detail: listing, filters, paging, CRM links, remind/cancel/download."""
from __future__ import annotations

from datetime import timedelta

from django.core.files.base import ContentFile
from django.utils import timezone

from bizproc_ext.models import RobotCall
from signing.models import SignatureRequest
from tests.conftest import MANAGER_ID
from tests.robots.helpers import SEND_PROPS, deal_doc, run_worker

from .conftest import make_request


def rows(response) -> list[str]:
    html = response.content.decode()
    return [chunk.split('"', 1)[0] for chunk in html.split('class="request-row" data-id="')[1:]]


def test_requests_are_listed_newest_first_with_signers_and_crm_links(client, portal_a, memory_account, admin_token):
    now = timezone.now()
    old = make_request(portal_a.db, memory_account, title="Old lead", entity=(1, 7), created_at=now - timedelta(days=2))
    new = make_request(portal_a.db, memory_account, title="New deal", entity=(2, 42),
                       signers=("anna@customer.test", "boris@customer.test"), created_at=now)
    smart = make_request(portal_a.db, memory_account, title="Smart", entity=(177, 5), created_at=now - timedelta(days=1))
    response = client.get(f"/app/requests/?t={admin_token}")
    assert rows(response) == [str(new.public_id), str(smart.public_id), str(old.public_id)]
    html = response.content.decode()
    domain = portal_a.emu.domain
    assert f'href="https://{domain}/crm/deal/details/42/"' in html
    assert f'href="https://{domain}/crm/lead/details/7/"' in html
    assert f'href="https://{domain}/crm/type/177/details/5/"' in html
    assert "boris@customer.test" in html and "In-memory test provider" in html


def test_filters_by_status_provider_date_and_signer_email(client, portal_a, memory_account, admin_token):
    now = timezone.now()
    a = make_request(portal_a.db, memory_account, status="completed", signers=("Anna@Customer.test",))
    b = make_request(portal_a.db, memory_account, status="sent", signers=("boris@customer.test",),
                     created_at=now - timedelta(days=10))
    url = f"/app/requests/?t={admin_token}"
    assert rows(client.get(url + "&status=completed")) == [str(a.public_id)]
    assert rows(client.get(url + "&provider=memory")) == [str(a.public_id), str(b.public_id)]
    assert rows(client.get(url + "&provider=signnow")) == []
    day = (now - timedelta(days=10)).date().isoformat()
    assert rows(client.get(url + f"&date_from={day}&date_to={day}")) == [str(b.public_id)]
    assert rows(client.get(url + "&email=anna@customer.TEST")) == [str(a.public_id)]
    assert rows(client.get(url + "&email=bor")) == [str(b.public_id)]


def test_keyset_pages_walk_forward_and_back(client, portal_a, memory_account, admin_token):
    now = timezone.now()
    made = [make_request(portal_a.db, memory_account, title=f"R{i}", created_at=now - timedelta(minutes=i % 3))
            for i in range(60)]  # many share a timestamp: the id breaks ties
    expected = [str(r.public_id) for r in sorted(made, key=lambda r: (r.created_at, r.pk), reverse=True)]
    seen, url = [], f"/app/requests/?t={admin_token}"
    pages = []
    while url:
        response = client.get(url)
        pages.append(response)
        seen += rows(response)
        html = response.content.decode()
        url = html.split('href="', 1)[0] and (html.split('id="older"')[0].rsplit('href="', 1)[1].split('"')[0]
                                               .replace("&amp;", "&") if 'id="older"' in html else "")
    assert seen == expected and len(pages) == 3
    back = pages[-1].content.decode().split('id="newer"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    assert rows(client.get(back)) == expected[25:50]


def test_detail_shows_history_and_the_answer_sent_to_the_workflow(eager_tasks, client, portal_a, memory_account,
                                                                 memory_provider, deal, admin_token):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    run_worker()
    req = SignatureRequest.objects.get(portal=portal_a.db)
    call = RobotCall.objects.get(signature_request=req)
    assert call.answer_state == "sent" and wf.event_token
    html = client.get(f"/app/requests/{req.public_id}/?t={admin_token}").content.decode()
    assert "anna@customer.test" in html and 'data-kind="created"' in html and 'data-kind="status"' in html
    assert "b24sign_send" in html and str(req.public_id) in html and 'data-answer-state="sent"' in html


def test_admin_cancels_through_the_provider_and_the_workflow_hears_it(eager_tasks, client, portal_a, memory_account,
                                                                     memory_provider, deal, admin_token,
                                                                     django_capture_on_commit_callbacks):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties={**SEND_PROPS, "wait": "Y"})
    run_worker()
    req = SignatureRequest.objects.get(portal=portal_a.db)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/app/requests/{req.public_id}/cancel/", {"t": admin_token, "reason": "wrong file"})
    assert response.status_code == 200 and b"The request was cancelled." in response.content
    req.refresh_from_db()
    assert req.status == "cancelled"
    assert memory_provider.documents[req.external_id]["status"] == "cancelled"
    assert req.events.filter(kind="status", to_status="cancelled", source="admin").exists()
    assert RobotCall.objects.get(signature_request=req).answer_state == "sent"  # the waiting robot was answered
    assert portal_a.emu.workflow(wf.event_token).closed
    again = client.post(f"/app/requests/{req.public_id}/cancel/", {"t": admin_token})
    assert again.status_code == 409


def test_admin_reminds_the_signers(client, portal_a, memory_account, memory_provider, admin_token):
    req = make_request(portal_a.db, memory_account, external_id="mem-7")
    memory_provider.documents["mem-7"] = {"status": "sent", "signers": {}, "reminders": 0}
    response = client.post(f"/app/requests/{req.public_id}/remind/", {"t": admin_token})
    assert response.status_code == 200 and memory_provider.documents["mem-7"]["reminders"] == 1
    assert req.events.filter(kind="remind", source="admin").exists()


def test_a_manager_sees_requests_but_cannot_act_on_them(client, portal_a, memory_account, memory_provider,
                                                        manager_token):
    deal_id = portal_a.emu.crm.add_deal("Supply deal")  # a deal the manager can read
    req = make_request(portal_a.db, memory_account, entity=(2, deal_id))
    page = client.get(f"/app/requests/{req.public_id}/?t={manager_token}")
    html = page.content.decode()
    assert page.status_code == 200 and "Supply contract" in html
    assert 'id="cancel"' not in html and 'id="remind"' not in html
    assert client.post(f"/app/requests/{req.public_id}/cancel/", {"t": manager_token}).status_code == 403
    assert client.post(f"/app/requests/{req.public_id}/remind/", {"t": manager_token}).status_code == 403
    req.refresh_from_db()
    assert req.status == "sent"


def test_the_signed_pdf_downloads_from_the_detail(client, portal_a, memory_account, manager_token, pdf_bytes):
    # The manager is the deal's responsible user, so the signed copy is theirs to download.
    deal_id = portal_a.emu.crm.add_deal("Lease deal", assigned_by_id=MANAGER_ID)
    req = make_request(portal_a.db, memory_account, status="completed", title="Lease", entity=(2, deal_id))
    assert client.get(f"/app/requests/{req.public_id}/signed.pdf?t={manager_token}").status_code == 404
    req.signed_file.save("x.pdf", ContentFile(pdf_bytes))
    html = client.get(f"/app/requests/{req.public_id}/?t={manager_token}").content.decode()
    assert 'id="download"' in html
    response = client.get(f"/app/requests/{req.public_id}/signed.pdf?t={manager_token}")
    assert response.status_code == 200 and b"".join(response.streaming_content) == pdf_bytes
    assert 'filename="Lease - signed.pdf"' in response["Content-Disposition"]
