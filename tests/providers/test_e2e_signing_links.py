"""Signing links (issue 13, item 4): "I send the link myself" makes signNow embedded invites instead of
invitation e-mails; the robot answers ``signing_links``; the request page shows them with "Copy" and
issues new ones (signNow links live 45 minutes at most, as documented).  Strict signNow emulator.
"""
import time

import pytest

from signing import states
from signing.models import SignatureRequest
from tests.providers.flows import ANNA, BORIS, EVIA_ID, EVIA_KEY, SEND_TO_BOTH, SIGNNOW_LOGIN, account_of, connect
from tests.robots.helpers import deal_doc, run_worker
from tests.ui.conftest import ADMIN_ID, MANAGER_ID, open_app, token_of

BY_LINK = {**SEND_TO_BOTH, "wait": "N", "delivery": "link"}


@pytest.fixture
def connected(portal_a, signnow):
    connect(portal_a, "signnow", *SIGNNOW_LOGIN, "--default")
    return account_of(portal_a, "signnow")


@pytest.fixture
def linked(eager_tasks, portal_a, connected, signnow, deal):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=BY_LINK)
    run_worker()
    return SignatureRequest.objects.get(), wf


def parse_links(text: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in text.splitlines() if line)


def test_the_robot_answers_links_and_signnow_emails_nobody(portal_a, signnow, linked):
    req, wf = linked
    assert wf.return_values["status"] == "sent", wf.return_values
    links = parse_links(wf.return_values["signing_links"])
    assert set(links) == {ANNA, BORIS}
    assert [e for e in signnow.sent_emails if e["kind"] == "invite"] == []
    assert signnow.calls_to("POST", r"^/document/[0-9a-f]+/invite$") == []
    created = signnow.calls_to("POST", r"/embedded-invites$")[0]["json"]["invites"]
    assert [(i["email"], i["delivery_type"]) for i in created] == [(ANNA, "link"), (BORIS, "link")]
    assert {c["json"]["link_expiration"] for c in signnow.calls_to("POST", r"/embedded-invites/[0-9a-f]+/link$")} \
        == {45}  # the documented maximum
    assert signnow.open_link(links[ANNA]) == (req.external_id, ANNA)
    assert "http" not in " ".join(e.message for e in req.events.all())  # links never in the history

    signnow.sign(req.external_id, ANNA)
    signnow.sign(req.external_id, BORIS)
    req.refresh_from_db()
    assert req.status == states.COMPLETED


def test_the_request_page_shows_the_links_with_copy_and_issues_new_ones(client, portal_a, signnow, linked):
    req, wf = linked
    old = parse_links(wf.return_values["signing_links"])
    token = token_of(open_app(client, portal_a.emu, ADMIN_ID))
    html = client.get(f"/app/requests/{req.public_id}/?t={token}").content.decode()
    section = html.split('id="signing-links"')[1].split("</table>")[0]
    assert old[ANNA] in section and old[BORIS] in section and section.count('class="btn btn-small copy"') == 2

    for token_ in list(signnow.embedded_links):  # 45 minutes later ...
        signnow.embedded_links[token_]["expires_at"] = time.time() - 1
    with pytest.raises(ValueError, match="expired"):
        signnow.open_link(old[ANNA])
    response = client.post(f"/app/requests/{req.public_id}/links/", {"t": token})
    assert response.status_code == 200 and "New signing links were issued" in response.content.decode()
    req.refresh_from_db()
    fresh = req.signing_links[ANNA.lower()]["url"]
    assert fresh != old[ANNA] and signnow.open_link(fresh) == (req.external_id, ANNA)

    manager = token_of(open_app(client, portal_a.emu, MANAGER_ID))
    assert fresh not in client.get(f"/app/requests/{req.public_id}/?t={manager}").content.decode()
    assert client.post(f"/app/requests/{req.public_id}/links/", {"t": manager}).status_code == 403


def test_cancelling_withdraws_the_embedded_invites(portal_a, signnow, linked, deal):
    req, _ = linked
    wf = portal_a.emu.start_robot("b24sign_cancel", document_id=deal_doc(deal),
                                  properties={"request_id": str(req.public_id), "reason": "Deal lost"})
    run_worker()
    assert wf.return_values["status"] == "cancelled"
    assert len(signnow.calls_to("DELETE", r"/embedded-invites$")) == 1
    with pytest.raises(ValueError):
        signnow.sign(req.external_id, ANNA)


def test_evia_says_it_cannot_hand_out_links(eager_tasks, portal_a, evia, deal):
    connect(portal_a, "evia", f"client_id={EVIA_ID}", f"client_secret={EVIA_KEY}", f"code={evia.issue_auth_code()}",
            "--default")
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=BY_LINK)
    run_worker()
    assert wf.return_values["status"] == "error"
    assert "Evia Sign cannot hand out signing links" in wf.return_values["error"]
