"""``config.wsgi.application`` with each slow request written to stderr (gunicorn's log), for
``bench/handler.py --slow-ms N``: where a slow call spent its time, the INSERT (``_record``: the commit
included) or elsewhere, and how much of it was this worker's CPU.  A slow call with little CPU waited: for
PostgreSQL when its INSERT was slow, else for a core.  Never loaded by the product.

A line: ``SLOW <what> <wall ms> <cpu ms>``, what = ``request`` (the whole call) or ``insert``.
"""
from __future__ import annotations

import os
import sys
import time

from config import wsgi  # first: it sets Django up

# isort: split
from bizproc_ext import views

SLOW_MS = float(os.environ.get("BENCH_SLOW_MS", "40"))


def _timed(what: str, fn):
    def timed(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            ms = (time.perf_counter() - wall) * 1000
            if ms >= SLOW_MS:
                print(f"SLOW {what} {ms:.1f} {(time.process_time() - cpu) * 1000:.1f}", file=sys.stderr, flush=True)
    return timed


views._record = _timed("insert", views._record)
application = _timed("request", wsgi.application)
