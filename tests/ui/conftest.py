"""Opening the app page the way Bitrix24 does, as portal A's admin, portal A's manager or portal B."""
from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.conftest import ADMIN_ID, MANAGER_ID


def open_app(client, emu, user_id: int = ADMIN_ID, lang: str = "en", body_overrides: dict | None = None):
    """POST /app/ with exactly what Bitrix24 sends when ``user_id`` opens the application."""
    query, body = emu.app_page_request(user_id, "DEFAULT", lang=lang)
    body.update(body_overrides or {})
    return client.post(f"/app/?{urlencode(query)}", body)


def token_of(response) -> str:
    assert response.status_code == 303, response.content[:400]
    return parse_qs(urlsplit(response["Location"]).query)["t"][0]


@pytest.fixture
def admin_token(client, portal_a):
    return token_of(open_app(client, portal_a.emu, ADMIN_ID))


@pytest.fixture
def manager_token(client, portal_a):
    return token_of(open_app(client, portal_a.emu, MANAGER_ID))


@pytest.fixture
def b_admin_token(client, portal_b):
    return token_of(open_app(client, portal_b.emu, ADMIN_ID))


def make_request(portal, account, *, title="Supply contract", status="sent", signers=("anna@customer.test",),
                 entity=(2, 42), created_at=None, external_id="mem-x"):
    """A signature request row as the pipeline would leave it (no provider call)."""
    from django.utils import timezone

    from signing.models import SignatureRequest, SignerRow

    req = SignatureRequest.objects.create(
        portal=portal, account=account, provider=account.provider, title=title, status=status,
        entity_type_id=entity[0] if entity else None, entity_id=entity[1] if entity else None,
        external_id=external_id, send_phase="sent", created_at=created_at or timezone.now())
    for i, email in enumerate(signers, 1):
        SignerRow.objects.create(request=req, email=email, order=i)
    return req
