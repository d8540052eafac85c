"""How fast is the dashboard with 100,000 signature requests in one portal?

Seeds a throw-away portal (plus a noisy neighbour) on the database of DATABASE_URL, runs the
dashboard's real queries (pages/queries.py) and prints each plan's first lines and its timing.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/b24sign_bench .venv/bin/python bench/dashboard_query.py [N]

The portal is deleted at the end (``--keep`` leaves it for manual EXPLAINs).  PostgreSQL only.
"""
from __future__ import annotations

import os
import random
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "1")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

STATUSES = ["sent"] * 5 + ["partially_signed"] * 2 + ["completed"] * 8 + ["declined", "expired", "cancelled", "error"]


def seed(portal_name: str, n: int, providers=("signnow", "evia", "b24kedo")):
    """A portal with ``n`` requests (one or two signers each) spread over the last two years."""
    from b24app.models import Portal
    from signing.models import ProviderAccount, SignatureRequest, SignerRow

    portal = Portal.objects.create(member_id=f"bench-{portal_name}-{uuid.uuid4().hex[:8]}", domain=f"{portal_name}.test",
                                   client_endpoint=f"https://{portal_name}.test/rest/",
                                   server_endpoint="https://oauth.bitrix.info/rest/", app_token_digest="x")
    accounts = [ProviderAccount.objects.create(portal=portal, provider=p) for p in providers]
    now = timezone.now()
    rng = random.Random(7)
    batch = 5000
    for start in range(0, n, batch):
        reqs = []
        for i in range(start, min(n, start + batch)):
            acc = accounts[i % len(accounts)]
            reqs.append(SignatureRequest(
                portal=portal, account=acc, provider=acc.provider, title=f"Contract {i}", status=rng.choice(STATUSES),
                entity_type_id=2, entity_id=i + 1, send_phase="sent",
                created_at=now - timedelta(seconds=rng.randint(0, 2 * 365 * 86400))))
        SignatureRequest.objects.bulk_create(reqs)
        signers = []
        for r in reqs:
            signers.append(SignerRow(request=r, email=f"client{rng.randint(0, n)}@customer{rng.randint(0, 50)}.test"))
            if rng.random() < 0.4:
                signers.append(SignerRow(request=r, email=f"manager{rng.randint(0, 40)}@{portal_name}.test", order=2))
        SignerRow.objects.bulk_create(signers)
    with connection.cursor() as cur:
        cur.execute("ANALYZE signing_signaturerequest; ANALYZE signing_signerrow;")
    return portal


def timed(label: str, fn, repeat: int = 5):
    fn()  # warm the cache
    best = min(_once(fn) for _ in range(repeat))
    print(f"  {label:<46} {best * 1000:8.2f} ms")
    return best


def _once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str]) -> int:
    if connection.vendor != "postgresql":
        print("bench/dashboard_query.py needs PostgreSQL (set DATABASE_URL)")
        return 2
    n = int(next((a for a in argv if a.isdigit()), 100_000))
    call_command("migrate", verbosity=0)
    from pages import queries
    from signing.models import SignatureRequest, SignerRow

    t0 = time.perf_counter()
    portal = seed("alpha", n)
    neighbour = seed("bravo", n // 4)
    print(f"seeded {n} + {n // 4} requests in {time.perf_counter() - t0:.1f}s")
    deep = SignatureRequest.objects.filter(portal=portal).order_by("-created_at", "-id")[int(n * 0.9)]
    email = SignerRow.objects.filter(request__portal=portal).values_list("email", flat=True).first()
    cases = {
        "first page": (queries.Filters(), ""),
        "page 3,600 (keyset cursor at 90%)": (queries.Filters(), queries.encode_cursor(deep)),
        "status=declined": (queries.Filters(status="declined"), ""),
        "provider=evia": (queries.Filters(provider="evia"), ""),
        "one month": (queries.Filters(date_from=(timezone.now() - timedelta(days=400)).date(),
                                      date_to=(timezone.now() - timedelta(days=370)).date()), ""),
        f"signer email = {email}": (queries.Filters(email=email), ""),
        "signer email prefix 'manager1'": (queries.Filters(email="manager1"), ""),
    }
    worst = 0.0
    for label, (filters, cursor) in cases.items():
        print(f"\n{label}")
        qs = queries.filtered(portal, filters)
        if cursor:
            ts, pk = queries.decode_cursor(cursor)
            from django.db.models import Q

            qs = qs.filter(created_at__lte=ts).filter(Q(created_at__lt=ts) | Q(pk__lt=pk))
        plan = qs.order_by("-created_at", "-id")[:queries.PAGE_SIZE + 1].explain(analyze=True)
        for line in plan.splitlines()[:6]:
            print(f"    {line}")
        worst = max(worst, timed("dashboard page (rows + signers)",
                                 lambda: queries.page(portal, filters, older_than=cursor)))
    print(f"\nworst page: {worst * 1000:.1f} ms")
    if "--keep" not in argv:
        for p in (portal, neighbour):
            SignerRow.objects.filter(request__portal=p)._raw_delete(SignerRow.objects.db)
            SignatureRequest.objects.filter(portal=p)._raw_delete(SignatureRequest.objects.db)
            p.delete()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
