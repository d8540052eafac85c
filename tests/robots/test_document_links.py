"""No server-side request forgery through document links (issue 11, item 6).

A "public" document host and an "internal" one both run on 127.0.0.1; only the public one is allowed
to be private (FETCH_PRIVATE_HOSTS, what production never sets), so the internal one stands for our own
network.
"""
import re
import socket

import pytest

from b24app import http
from b24app.rest import B24Client, B24Error
from signing.models import SignatureRequest
from tests.emulators.base import EmulatorServer, Response
from tests.robots.helpers import SEND_PROPS, deal_doc, run_worker


@pytest.fixture
def hosts(settings, pdf_bytes):
    public, internal = EmulatorServer("public-docs").start(), EmulatorServer("internal").start()
    internal.add_route("GET", r"^/internal\.pdf$", lambda req: Response(200, pdf_bytes, {"Content-Type": "application/pdf"}))
    public.add_route("GET", r"^/contract\.pdf$", lambda req: Response(200, pdf_bytes, {"Content-Type": "application/pdf"}))
    public.add_route("GET", r"^/to-internal\.pdf$",
                     lambda req: Response(302, b"", {"Location": f"{internal.base_url}/internal.pdf"}))
    public.add_route("GET", r"^/hop/(?P<n>\d+)$", lambda req, n: Response(
        302, b"", {"Location": f"/hop/{int(n) - 1}" if int(n) > 1 else "/contract.pdf"}))
    settings.FETCH_PRIVATE_HOSTS = [public.host]
    yield public, internal
    public.stop()
    internal.stop()


def _send(portal_a, deal, url):
    props = {**SEND_PROPS, "document_source": "url", "document_url": url}
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=props)
    run_worker()
    return wf


def _internal_hits(internal):
    return [r for r in internal.requests_log if r[1] == "/internal.pdf"]


@pytest.mark.django_db
def test_a_redirect_to_an_internal_address_is_not_followed(portal_a, memory_account, memory_provider, deal, hosts):
    public, internal = hosts
    wf = _send(portal_a, deal, f"{public.base_url}/to-internal.pdf")
    assert _internal_hits(internal) == []
    assert memory_provider.sends == 0
    assert wf.return_values["status"] == "error"
    error = wf.return_values["error"]
    assert "the document could not be downloaded" in error
    for leak in ("127.0.0.1", str(internal.port), str(public.port), "302", "HTTP", "private"):
        assert leak not in error


@pytest.mark.django_db
def test_a_link_straight_to_an_internal_address_names_nothing(portal_a, memory_account, memory_provider, deal, hosts):
    public, internal = hosts
    wf = _send(portal_a, deal, f"{internal.base_url}/internal.pdf")
    assert _internal_hits(internal) == [] and memory_provider.sends == 0
    assert "the document could not be downloaded" in wf.return_values["error"]
    assert str(internal.port) not in wf.return_values["error"]


@pytest.mark.django_db
def test_up_to_three_redirects_are_followed_and_the_fourth_is_not(portal_a, memory_account, memory_provider, deal,
                                                                  hosts):
    public, _ = hosts
    wf = _send(portal_a, deal, f"{public.base_url}/hop/2")  # /hop/2 -> /hop/1 -> /contract.pdf: 2 redirects
    assert wf.return_values["status"] == "sent" and memory_provider.sends == 1
    wf = _send(portal_a, deal, f"{public.base_url}/hop/4")  # 4 redirects
    assert wf.return_values["status"] == "error" and memory_provider.sends == 1
    assert "the document could not be downloaded" in wf.return_values["error"]
    assert ("GET", "/contract.pdf", 200) not in public.requests_log[-4:]


def test_redirect_locations_are_held_to_https(settings, hosts):
    settings.ALLOW_HTTP_PORTALS = False
    with pytest.raises(http.UnsafeURL):
        http.check_target(f"{hosts[0].base_url}/contract.pdf")
    with pytest.raises(http.UnsafeURL):
        http.check_target("https://user:pw@example.com/x.pdf")


@pytest.mark.django_db
def test_the_connection_goes_to_the_address_that_passed_the_check(portal_a, memory_account, memory_provider, deal,
                                                                   hosts, settings, monkeypatch):
    """DNS rebinding: the name answers a permitted address for the check, then another one; the
    download must still go to the checked address."""
    public, _ = hosts
    settings.FETCH_PRIVATE_HOSTS = [f"docs.rebind.test:{public.port}"]
    real = socket.getaddrinfo
    answers = []

    def rebinding(host, *args, **kwargs):
        if host == "docs.rebind.test":
            answers.append(host)
            if len(answers) > 1:  # rebound: anything but the checked address
                raise socket.gaierror("rebound")
            return real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    wf = _send(portal_a, deal, f"http://docs.rebind.test:{public.port}/contract.pdf")
    assert wf.return_values["status"] == "sent", wf.return_values
    assert len(answers) == 1  # resolved once, for the check; the connection used that answer
    assert ("GET", "/contract.pdf", 200) in public.requests_log


@pytest.mark.django_db
@pytest.mark.parametrize("source", ["disk", "field", "docgen"])
def test_portal_file_links_must_be_on_the_portals_own_host(portal_a, memory_account, memory_provider, deal, hosts,
                                                           monkeypatch, pdf_bytes, source):
    public, internal = hosts
    emu = portal_a.emu
    foreign = f"{internal.base_url}/internal.pdf?auth=x"
    monkeypatch.setattr(emu, "download_url", lambda *a, **k: foreign)
    monkeypatch.setattr(emu, "item_file_url", lambda *a, **k: foreign)
    props = {**SEND_PROPS, "document_source": source}
    if source == "disk":
        props["document_id"] = str(emu.crm.add_disk_file("contract.pdf", pdf_bytes))
    elif source == "docgen":
        props["document_id"] = str(emu.crm.add_generated_document(2, deal, pdf_bytes))
    wf = emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=props)
    run_worker()
    assert _internal_hits(internal) == [] and memory_provider.sends == 0
    assert "the document could not be downloaded" in wf.return_values["error"]
    assert not SignatureRequest.objects.filter(send_phase="sent").exists()


# --- a portal that "moves" -------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_302_to_another_domain_is_not_stored_unless_the_oauth_server_confirms_it(portal_a):
    evil = EmulatorServer("evil").start()
    try:
        evil.add_route("*", r"^.*$", lambda req: Response(200, b'{"result": {"ID": "1"}}',
                                                          {"Content-Type": "application/json"}))
        old_domain, old_endpoint = portal_a.db.domain, portal_a.db.client_endpoint
        portal_a.emu.server.routes.insert(0, ("*", re.compile(r"^/rest/"), lambda req: Response(
            302, b"", {"Location": f"{evil.base_url}{req.path}"})))
        with pytest.raises(B24Error) as info:
            B24Client(portal_a.db).call("profile")
        assert info.value.error == "BAD_REDIRECT"
        portal_a.db.refresh_from_db()
        assert (portal_a.db.domain, portal_a.db.client_endpoint) == (old_domain, old_endpoint)
        assert evil.requests_log == []  # our token never went there
    finally:
        evil.stop()


@pytest.mark.django_db
def test_a_real_rename_is_confirmed_and_followed(portal_a):
    new_domain = portal_a.emu.rename()
    assert B24Client(portal_a.db).call("profile")["ID"]
    portal_a.db.refresh_from_db()
    assert portal_a.db.domain == new_domain
