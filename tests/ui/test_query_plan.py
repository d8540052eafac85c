"""The dashboard's queries stay index range scans on PostgreSQL (bench/dashboard_query.py does 100k)."""
from __future__ import annotations

import pytest
from django.db import connection

from pages import queries
from signing.models import SignatureRequest, SignerRow

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


@pytest.fixture
def big_portal(settings):
    if connection.vendor != "postgresql":
        pytest.skip("query plans are checked on PostgreSQL")
    from bench.dashboard_query import seed

    return seed("plan", 20_000)


def plan(qs) -> str:
    return qs.order_by("-created_at", "-id")[:queries.PAGE_SIZE + 1].explain()


def test_pages_filters_and_deep_cursors_use_the_portal_indexes(big_portal):
    assert "req_portal_newest" in plan(queries.filtered(big_portal, queries.Filters()))
    assert "req_portal_status_newest" in plan(queries.filtered(big_portal, queries.Filters(status="declined")))
    assert "req_portal_provider_newest" in plan(queries.filtered(big_portal, queries.Filters(provider="evia")))
    deep = SignatureRequest.objects.filter(portal=big_portal).order_by("-created_at", "-id")[18_000]
    page = queries.page(big_portal, queries.Filters(), older_than=queries.encode_cursor(deep))
    assert len(page.rows) == queries.PAGE_SIZE and page.rows[0].created_at <= deep.created_at
    for text in (plan(queries.filtered(big_portal, queries.Filters())),):
        assert "Seq Scan on signing_signaturerequest" not in text


def test_search_by_signer_email_uses_the_email_index(big_portal):
    email = SignerRow.objects.filter(request__portal=big_portal).values_list("email", flat=True).first()
    text = plan(queries.filtered(big_portal, queries.Filters(email=email.upper())))
    assert "signer_email_upper" in text, text
    assert "Seq Scan" not in text
