"""Coalescing the REST requests of many concurrent jobs of one portal into shared ``batch`` requests.

Bitrix24 allows a portal about 2 requests/s and counts a ``batch`` of 50 commands as one (spec §6), so 50
robot calls that each need one batch of reads and one answer can share two requests instead of making 100.
A :class:`Coalescer` belongs to one portal (two portals never share one).  Each job runs in its own thread
inside :meth:`Coalescer.participate`; while it does, its ``B24Client(portal).batch(...)`` and its
``call()`` of a method in ``COALESCED`` are handed to the coalescer, which sends what all participants
submitted together:

* each job's commands are keyed ``j<n>_<key>`` and its ``$result[key]`` references rewritten to match, and
  one job's commands always travel in the same request (references resolve within one batch only);
* ``halt=True`` is emulated per job: its *first* command (the event-token proof) goes in a first round
  and the job's other commands run in a second round only if it succeeded; after the first failing command
  of a job its later results are dropped, as Bitrix24's halt would.  So one job's bad input or forged token
  never fails its neighbours, and a refused proof means no read of that job ever runs;
* a request that fails as a whole (rate limit after its retries, network) fails every job in it with the
  same :class:`B24Error` the job would have got alone; each job handles it as before (retry, answer).

A submission waits for partners at most ``window`` seconds, and not at all once every live participant is
waiting (a lone job is never delayed).
"""
from __future__ import annotations

import contextlib
import re
import threading
import time
from dataclasses import dataclass, field

from .client import BATCH_LIMIT, B24Client, BatchResult
from .coalescing import _active
from .errors import B24Error

_REF = re.compile(r"\$result\[([A-Za-z0-9_]+)\]")


@dataclass
class _Job:
    prefix: str
    commands: dict
    halt: bool
    result: BatchResult = field(default_factory=BatchResult)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    failed: bool = False  # halt: a command failed, later ones are not run / dropped


class Coalescer:
    def __init__(self, client: B24Client, window: float = 0.2):
        self.client = client
        self.portal_pk = client.portal.pk
        self.window = window
        self.cond = threading.Condition()
        self.pending: list[_Job] = []
        self.participants = 0
        self.leading = False
        self.seq = 0
        self.requests = 0  # REST requests this coalescer sent (bench and tests)

    # -- participants ----------------------------------------------------------------------------------
    def expect(self, n: int) -> None:
        """Count ``n`` participants before their threads start (or a first one would think it is alone);
        each then enters ``participate(expected=True)``."""
        with self.cond:
            self.participants += n

    @contextlib.contextmanager
    def participate(self, expected: bool = False):
        if not expected:
            with self.cond:
                self.participants += 1
        token = _active.set(self)
        try:
            yield
        finally:
            _active.reset(token)
            with self.cond:
                self.participants -= 1
                self.cond.notify_all()

    # -- submissions -----------------------------------------------------------------------------------
    def call(self, method: str, params: dict):
        result = self.submit({"one": (method, params)}, halt=False)
        err = result.errors.get("one")
        if err:
            raise B24Error(str(err.get("error") or "ERROR"), str(err.get("error_description", "")), method=method)
        return result.results.get("one")

    def submit(self, commands: dict, halt: bool) -> BatchResult:
        with self.cond:
            self.seq += 1
            job = _Job(prefix=f"j{self.seq}_", commands=dict(commands), halt=halt)
            self.pending.append(job)
            self.cond.notify_all()
            lead = not self.leading
            if lead:
                self.leading = True
                deadline = time.monotonic() + self.window
                while (left := deadline - time.monotonic()) > 0 and len(self.pending) < self.participants \
                        and sum(len(j.commands) for j in self.pending) < BATCH_LIMIT:
                    self.cond.wait(left)
                jobs, self.pending, self.leading = self.pending, [], False
        if lead:
            self._run(jobs)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    # -- sending ---------------------------------------------------------------------------------------
    def _run(self, jobs: list[_Job]) -> None:
        try:
            gated = [j for j in jobs if j.halt and len(j.commands) > 1]
            first = {j.prefix: (dict(list(j.commands.items())[:1]) if j in gated else j.commands) for j in jobs}
            self._send(jobs, first)
            second = [j for j in gated if j.error is None and not j.failed]
            self._send(second, {j.prefix: dict(list(j.commands.items())[1:]) for j in second})
        finally:
            for j in jobs:
                j.done.set()

    def _send(self, jobs: list[_Job], parts: dict[str, dict]) -> None:
        """Pack whole jobs into requests of at most 50 commands and spread the answers back."""
        packs: list[list[_Job]] = [[]]
        size = 0
        for j in jobs:
            n = len(parts[j.prefix])
            if packs[-1] and size + n > BATCH_LIMIT:
                packs.append([])
                size = 0
            packs[-1].append(j)
            size += n
        for pack in packs:
            if not pack:
                continue
            combined = {}
            for j in pack:
                keys = set(j.commands)
                for key, (method, params) in parts[j.prefix].items():
                    combined[j.prefix + key] = (method, _rewrite(params, j.prefix, keys))
            token = _active.set(None)  # this request itself goes straight out
            try:
                out = self.client.batch(combined, halt=False)
                self.requests += out.requests
            except Exception as exc:  # the request as a whole: every job in it hears it
                for j in pack:
                    j.error = exc
                continue
            finally:
                _active.reset(token)
            for j in pack:
                self._take(j, parts[j.prefix], out)

    @staticmethod
    def _take(job: _Job, part: dict, out: BatchResult) -> None:
        for key in part:
            if job.failed:
                break  # halt: Bitrix24 would not have run it
            full = job.prefix + key
            if full in out.errors:
                job.result.errors[key] = out.errors[full]
                job.failed = job.halt
            elif full in out.results:
                job.result.results[key] = out.results[full]
        job.result.requests += 1


def _rewrite(value, prefix: str, keys: set):
    if isinstance(value, str):
        return _REF.sub(lambda m: f"$result[{prefix}{m.group(1)}]" if m.group(1) in keys else m.group(0), value)
    if isinstance(value, dict):
        return {k: _rewrite(v, prefix, keys) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rewrite(v, prefix, keys) for v in value]
    return value
