"""Operational metrics, exposed for Prometheus at ``/metrics`` (issue 14).

Web processes and Celery workers run on several machines, so counters cannot live in one process's memory:
every process adds to Redis hashes (``b24sign:metrics:<name>``, one field per label set, HINCRBYFLOAT), and
``/metrics`` renders them with ``prometheus_client``.  Gauges are computed when scraped, by collectors the
layers register from their ``AppConfig.ready()`` (open requests by status, the oldest unanswered call, the
Celery queue depth).  A metric is never worth a failed robot call: a Redis error while counting is ignored.

Labels are low-cardinality and carry no tenant data: robot codes, plans, providers, statuses, reasons.  No
member id, domain, token or email ever becomes a label.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from functools import lru_cache

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

log = logging.getLogger("b24sign.metrics")

PREFIX = "b24sign:metrics:"
LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

# name -> (kind, help, label names); kind is "counter" or "histogram".
DECLARED: dict[str, tuple[str, str, tuple[str, ...]]] = {}
_collectors: list[Callable[[], Iterable]] = []


def declare(name: str, kind: str, help_text: str, labels: tuple[str, ...] = ()) -> str:
    DECLARED[name] = (kind, help_text, labels)
    return name


def collector(fn: Callable[[], Iterable]) -> Callable[[], Iterable]:
    """Register ``fn`` (yields prometheus_client metric families) to run on every scrape."""
    _collectors.append(fn)
    return fn


def collectors() -> list[Callable[[], Iterable]]:
    return list(_collectors)


@lru_cache(maxsize=2)
def _redis(url: str):
    import redis  # noqa: PLC0415  (optional: `make run` has no Redis and then keeps no metrics)

    return redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)


@lru_cache(maxsize=1)
def _config() -> tuple[object | None, float]:
    """(the Redis client, or None: no metrics; the flush interval), read from settings once per process:
    the robot handler counts every call, and settings lookups were a measurable share of it."""
    url = getattr(settings, "REDIS_URL", "")
    client = _redis(url) if url and settings.METRICS_ENABLED else None
    return client, float(getattr(settings, "METRICS_FLUSH_INTERVAL", 0) or 0)


@receiver(setting_changed)
def _settings_changed(**kwargs) -> None:
    _config.cache_clear()


def store():
    return _config()[0]


def _field(labels: dict) -> str:
    return _label_field(tuple(labels.items()))


@lru_cache(maxsize=4096)  # label sets are few and low-cardinality by design (see above)
def _label_field(items: tuple) -> str:
    return json.dumps(dict(items), sort_keys=True, separators=(",", ":"))


# Counters are added up in the process and written every METRICS_FLUSH_INTERVAL seconds in one pipeline, by a
# thread of their own: a Redis round trip per robot call cost the handler as much as its parsing (issue 14).
# A process that dies loses at most that interval's counts; one that exits writes them (atexit).
_pending: dict[tuple[str, str], float] = {}
_pending_lock = threading.Lock()
_flusher_pid: int | None = None


def inc(name: str, by: float = 1.0, **labels) -> None:
    client, interval = _config()
    if client is None:
        return
    key = (PREFIX + name, _field(labels))
    if interval <= 0:
        _write({key: by})
        return
    with _pending_lock:
        _pending[key] = _pending.get(key, 0.0) + by
    if _flusher_pid != os.getpid():
        _start_flusher(interval)


def flush() -> None:
    """Write the counts this process still holds (the flusher does it every interval; read() first)."""
    with _pending_lock:
        batch = dict(_pending)
        _pending.clear()
    if batch:
        _write(batch)


def _write(batch: dict[tuple[str, str], float]) -> None:
    r = store()
    if r is None:
        return
    try:
        pipe = r.pipeline(transaction=False)
        for (key, field), by in batch.items():
            pipe.hincrbyfloat(key, field, by)
        pipe.execute()
    except Exception as exc:  # noqa: BLE001  (metrics never fail the caller)
        log.debug("%d metric counts not written: %s", len(batch), exc.__class__.__name__)


def _start_flusher(interval: float) -> None:
    global _flusher_pid
    with _pending_lock:
        if _flusher_pid == os.getpid():
            return
        _flusher_pid = os.getpid()  # per process: a forked child (gunicorn/Celery worker) starts its own

    def run():
        while True:
            time.sleep(interval)
            flush()
    threading.Thread(target=run, name="metrics-flush", daemon=True).start()


def _forget_parent_counts() -> None:
    global _pending_lock
    _pending.clear()  # the parent writes its own counts; the child would count them twice
    _pending_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_parent_counts)
atexit.register(flush)


def observe(name: str, value: float, **labels) -> None:
    """One histogram observation: cumulative bucket counts, sum and count, in one round trip."""
    r = store()
    if r is None:
        return
    field = _field(labels)
    try:
        pipe = r.pipeline(transaction=False)
        for le in LATENCY_BUCKETS:
            if value <= le:
                pipe.hincrbyfloat(f"{PREFIX}{name}:bucket:{le}", field, 1)
        pipe.hincrbyfloat(f"{PREFIX}{name}:sum", field, value)
        pipe.hincrbyfloat(f"{PREFIX}{name}:count", field, 1)
        pipe.execute()
    except Exception as exc:  # noqa: BLE001
        log.debug("metric %s not observed: %s", name, exc.__class__.__name__)


def read(key: str) -> dict[tuple, float]:
    """{label values: value} of one hash (for the exposition and for tests)."""
    r = store()
    if r is None:
        return {}
    flush()  # this process's own counts are in what it shows
    out = {}
    for field, value in r.hgetall(PREFIX + key).items():
        out[tuple(json.loads(field).items())] = float(value)
    return out


# --- the exposition ---------------------------------------------------------------------------------------
def families() -> Iterable:
    """Every declared counter and histogram from Redis, then every registered collector's gauges."""
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily  # noqa: PLC0415  (scrape only)

    for name, (kind, help_text, label_names) in sorted(DECLARED.items()):
        if kind == "counter":
            family = CounterMetricFamily(name, help_text, labels=label_names)
            for labels, value in sorted(read(name).items()):
                family.add_metric([str(dict(labels).get(k, "")) for k in label_names], value)
            yield family
            continue
        family = HistogramMetricFamily(name, help_text, labels=label_names)
        counts, sums = read(f"{name}:count"), read(f"{name}:sum")
        buckets = {le: read(f"{name}:bucket:{le}") for le in LATENCY_BUCKETS}
        for labels, count in sorted(counts.items()):
            cumulative = [(str(float(le)), buckets[le].get(labels, 0.0)) for le in LATENCY_BUCKETS]
            cumulative.append(("+Inf", count))
            family.add_metric([str(dict(labels).get(k, "")) for k in label_names], cumulative, sums.get(labels, 0.0))
        yield family
    for fn in collectors():
        try:
            yield from fn()
        except Exception:  # one broken gauge must not hide the rest
            log.exception("metrics collector %s failed", getattr(fn, "__name__", fn))


def exposition() -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest  # noqa: PLC0415  (scrape only)

    class _All:
        def collect(self):
            return families()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_All())
    return generate_latest(registry)


# --- what the platform counts -----------------------------------------------------------------------------
REST_REQUESTS = declare("b24sign_rest_requests_total", "counter",
                        "Bitrix24 REST requests sent, by portal plan", ("plan",))
REST_LIMITED = declare("b24sign_rest_query_limit_exceeded_total", "counter",
                       "Bitrix24 503 QUERY_LIMIT_EXCEEDED answers, by portal plan", ("plan",))
BUCKET_WAITS = declare("b24sign_bucket_waits_total", "counter",
                       "Times a call waited for its leaky bucket (Bitrix24 portal or provider account)", ("bucket",))
BUCKET_WAIT_SECONDS = declare("b24sign_bucket_wait_seconds_total", "counter",
                              "Seconds spent waiting for leaky buckets", ("bucket",))


def waited(bucket: str, seconds: float) -> None:
    inc(BUCKET_WAITS, bucket=bucket)
    inc(BUCKET_WAIT_SECONDS, seconds, bucket=bucket)


CELERY_QUEUES = ("celery",)


@collector
def celery_queue_depth():
    """Messages waiting in the broker (Redis transport: one list per queue)."""
    from prometheus_client.core import GaugeMetricFamily  # noqa: PLC0415  (scrape only)

    url = getattr(settings, "CELERY_BROKER_URL", "")
    if not url.startswith(("redis://", "rediss://")):
        return
    family = GaugeMetricFamily("b24sign_celery_queue_depth", "Celery messages waiting in the broker", labels=["queue"])
    r = _redis(url)
    for queue in CELERY_QUEUES:
        family.add_metric([queue], r.llen(queue))
    yield family
