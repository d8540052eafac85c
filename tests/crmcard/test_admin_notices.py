"""Admins hear once when a provider connection breaks, however often the failure repeats."""
import pytest

from signing.base import ProviderError
from signing.models import SignatureRequest
from signing.tasks import refresh_request_status
from tests.robots.helpers import SEND_PROPS, deal_doc, run_worker


@pytest.mark.django_db
def test_repeated_401s_notify_the_admin_once(portal_a, memory_account, memory_provider, deal, monkeypatch,
                                             django_capture_on_commit_callbacks):
    from tests.support import memory_provider as mp

    portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal), properties=SEND_PROPS)
    run_worker()
    req = SignatureRequest.objects.get()

    def refused(self, request):
        raise ProviderError("401 after refreshing the token", code="auth")

    monkeypatch.setattr(mp.MemoryProvider, "status", refused)
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            refresh_request_status.apply(args=[req.pk, "poll"])
    notes = [n for n in portal_a.emu.notifications if "stopped working" in n["message"]]
    assert portal_a.emu.notify_sends == 1 and len(notes) == 1
    assert notes[0]["user_id"] == 1 and "/app/" in notes[0]["message"]  # the installing admin, link to Settings
