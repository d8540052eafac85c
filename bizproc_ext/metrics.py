"""What the automation layer counts: robot calls received, refused and answered, how long answers take,
and (on scrape) the oldest call still waiting for its answer.  Mechanism and endpoint: b24app/metrics.py."""
from __future__ import annotations

from django.db.models import Count, Min
from django.utils import timezone

from b24app import metrics

from .models import OPEN_STATES, RobotCall

RECEIVED = metrics.declare("b24sign_robot_calls_received_total", "counter",
                           "Robot calls recorded by the handler (duplicates not included)", ("robot",))
DUPLICATES = metrics.declare("b24sign_robot_calls_duplicate_total", "counter",
                             "Robot calls delivered again with a known event token", ("robot",))
REFUSED = metrics.declare("b24sign_robot_calls_refused_total", "counter",
                          "Robot calls the handler refused, by HTTP status", ("status",))
ANSWERED = metrics.declare("b24sign_robot_calls_answered_total", "counter",
                           "Robot calls finished: sent (bizproc.event.send accepted), failed (refused by "
                           "Bitrix24), skipped (the workflow did not wait)", ("robot", "outcome"))
LATENCY = metrics.declare("b24sign_robot_answer_latency_seconds", "histogram",
                          "From the call's arrival to its answer (waiting robots: until the signers finished)",
                          ("robot", "wait"))


def received(code: str) -> None:
    metrics.inc(RECEIVED, robot=code)


def duplicate(code: str) -> None:
    metrics.inc(DUPLICATES, robot=code)


def refused(status: int) -> None:
    metrics.inc(REFUSED, status=str(status))


def answered(call: RobotCall, outcome: str) -> None:
    metrics.inc(ANSWERED, robot=call.code, outcome=outcome)
    if outcome == "sent" and call.created_at:
        wait = "Y" if (call.properties or {}).get("wait") else "N"
        metrics.observe(LATENCY, (timezone.now() - call.created_at).total_seconds(), robot=call.code, wait=wait)


@metrics.collector
def unanswered():
    from prometheus_client.core import GaugeMetricFamily  # noqa: PLC0415  (scrape only)

    open_calls = RobotCall.objects.filter(state__in=OPEN_STATES,  # named, not "all but done": the partial index
                                          answer_state__in=("pending", "sending"), use_subscription=True)
    oldest = open_calls.exclude(state=RobotCall.WAITING).aggregate(t=Min("created_at"))["t"]
    age = GaugeMetricFamily("b24sign_oldest_unanswered_call_seconds",
                            "Age of the oldest robot call not answered yet and not waiting for signers (0: none)")
    age.add_metric([], (timezone.now() - oldest).total_seconds() if oldest else 0.0)
    yield age
    by_state = GaugeMetricFamily("b24sign_unanswered_calls", "Robot calls not answered yet, by state",
                                 labels=["state"])
    for row in open_calls.values("state").annotate(n=Count("id")).order_by():
        by_state.add_metric([row["state"]], row["n"])
    yield by_state
