"""What the signing layer counts (b24app/metrics.py has the mechanism and the endpoint)."""
from __future__ import annotations

from django.db.models import Count

from b24app import metrics

from . import states
from .models import SignatureRequest

PROVIDER_CALLS = metrics.declare("b24sign_provider_calls_total", "counter",
                                 "HTTP calls to e-signature providers", ("provider",))
PROVIDER_ERRORS = metrics.declare("b24sign_provider_errors_total", "counter",
                                  "Failed provider calls, by provider and kind (network, 429, 5xx, 4xx)",
                                  ("provider", "kind"))


def provider_call(provider: str) -> None:
    metrics.inc(PROVIDER_CALLS, provider=provider)


def provider_error(provider: str, kind: str) -> None:
    metrics.inc(PROVIDER_ERRORS, provider=provider, kind=kind)


@metrics.collector
def open_requests():
    from prometheus_client.core import GaugeMetricFamily  # noqa: PLC0415  (scrape only)

    family = GaugeMetricFamily("b24sign_open_requests", "Signature requests not finished yet, by status",
                               labels=["status", "provider"])
    rows = (SignatureRequest.objects.exclude(status__in=states.TERMINAL).values("status", "provider")
            .annotate(n=Count("id")).order_by())
    for row in rows:
        family.add_metric([row["status"], row["provider"]], row["n"])
    yield family
