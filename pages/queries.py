"""The dashboard's reads: one portal's signature requests, newest first, a page at a time.

Keyset pagination on (created_at, id) keeps every page an index range scan of ``req_portal_newest``
(or the status / provider variants when filtered), whatever the page number: no OFFSET, no COUNT(*).
``bench/dashboard_query.py`` seeds 100,000 requests and prints the plans and timings.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as dt_time
from datetime import timezone as dt_timezone

from django.db.models import Exists, OuterRef, Q

from signing.models import SignatureRequest, SignerRow

PAGE_SIZE = 25


@dataclass
class Filters:
    status: str = ""
    provider: str = ""
    date_from: object = None  # datetime.date
    date_to: object = None
    email: str = ""

    def as_params(self) -> dict:
        out = {"status": self.status, "provider": self.provider, "email": self.email,
               "date_from": self.date_from.isoformat() if self.date_from else "",
               "date_to": self.date_to.isoformat() if self.date_to else ""}
        return {k: v for k, v in out.items() if v}


@dataclass
class Page:
    rows: list
    newer: str = ""   # cursor for the page before (newer rows), "" on the first page
    older: str = ""   # cursor for the next page (older rows), "" on the last page


def encode_cursor(req: SignatureRequest) -> str:
    return f"{req.created_at.timestamp():.6f}_{req.pk}"


def decode_cursor(raw: str) -> tuple[datetime, int] | None:
    try:
        ts, pk = raw.split("_", 1)
        return datetime.fromtimestamp(float(ts), tz=dt_timezone.utc), int(pk)
    except (ValueError, OverflowError, OSError):
        return None


def filtered(portal, f: Filters):
    """The portal's requests matching the filters (every query of the dashboard starts here)."""
    qs = SignatureRequest.objects.filter(portal=portal)
    if f.status:
        qs = qs.filter(status=f.status)
    if f.provider:
        qs = qs.filter(provider=f.provider)
    if f.date_from:
        qs = qs.filter(created_at__gte=_day_start(f.date_from))
    if f.date_to:
        qs = qs.filter(created_at__lt=_day_start(f.date_to) + timedelta(days=1))
    if f.email:
        # A full address is an indexed lookup (signer_email_upper); a fragment matches as a prefix.
        lookup = {"email__iexact": f.email} if "@" in f.email else {"email__istartswith": f.email}
        qs = qs.filter(Exists(SignerRow.objects.filter(request=OuterRef("pk"), **lookup)))
    return qs


def _day_start(day) -> datetime:
    return datetime.combine(day, dt_time.min, tzinfo=dt_timezone.utc)


def page(portal, f: Filters, older_than: str = "", newer_than: str = "", size: int = PAGE_SIZE) -> Page:
    qs = filtered(portal, f)
    after = decode_cursor(newer_than) if newer_than else None
    before = decode_cursor(older_than) if older_than and not after else None
    if after:  # walking back towards the newest: ascending from the cursor, then flipped
        ts, pk = after
        qs = qs.filter(created_at__gte=ts).filter(Q(created_at__gt=ts) | Q(pk__gt=pk))
        rows = list(qs.order_by("created_at", "id")[:size + 1])
        more_newer = len(rows) > size
        rows = rows[:size][::-1]
        has_older = True
        has_newer = more_newer
    else:
        if before:
            ts, pk = before
            # created_at <= ts bounds the index range; the OR only breaks ties inside one timestamp.
            qs = qs.filter(created_at__lte=ts).filter(Q(created_at__lt=ts) | Q(pk__lt=pk))
        rows = list(qs.order_by("-created_at", "-id")[:size + 1])
        has_older = len(rows) > size
        rows = rows[:size]
        has_newer = bool(before)
    _attach_signers(rows)
    return Page(rows=rows, newer=encode_cursor(rows[0]) if rows and has_newer else "",
                older=encode_cursor(rows[-1]) if rows and has_older else "")


def _attach_signers(rows: list) -> None:
    """The page's signers in one query (no prefetch of the whole history)."""
    by_request: dict[int, list] = {r.pk: [] for r in rows}
    for signer in SignerRow.objects.filter(request_id__in=list(by_request)).order_by("order", "id"):
        by_request[signer.request_id].append(signer)
    for r in rows:
        r.signer_list = by_request[r.pk]


def crm_path(entity_type_id: int | None, entity_id: int | None) -> str:
    """The CRM item's page inside the portal: deals and leads have their own paths, the rest /crm/type/."""
    if not entity_type_id or not entity_id:
        return ""
    if entity_type_id == 2:
        return f"/crm/deal/details/{entity_id}/"
    if entity_type_id == 1:
        return f"/crm/lead/details/{entity_id}/"
    return f"/crm/type/{entity_type_id}/details/{entity_id}/"


def crm_url(portal, entity_type_id, entity_id) -> str:
    path = crm_path(entity_type_id, entity_id)
    return f"https://{portal.domain}{path}" if path else ""
