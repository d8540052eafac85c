"""Coalescing the REST requests of many concurrent jobs of one portal into shared ``batch`` requests.

Bitrix24 allows a portal about 2 requests/s and counts a ``batch`` of 50 commands as one (spec §6), so 50
robot calls that each need one batch of reads and one answer can share two requests instead of making 100.
A :class:`Coalescer` belongs to one portal (two portals never share one).  Each job is announced with
:meth:`Coalescer.expect` and runs on a thread inside :meth:`Coalescer.participate`; while it does, its
``B24Client(portal).batch(...)`` and its ``call()`` of a method in ``COALESCED`` are handed to the coalescer,
which sends what all participants submitted together:

* each job's commands are keyed ``j<n>_<key>`` and its ``$result[key]`` references rewritten to match, and
  one job's commands of one round always travel in the same request (references resolve within one batch);
* ``halt=True`` is emulated per job: its *first* command (the event-token proof) goes in one round and the
  job's other commands join a later request only if it succeeded; after the first failing command of a
  job its later results are dropped, as Bitrix24's halt would.  So one job's bad input or forged token
  never fails its neighbours, and a refused proof means no read of that job ever runs;
* a request goes out with one token: the portal's stored one, or a robot's run-as user's.  A run-as
  client joins only once its call is proven (``B24Client.shares_as``: the queue server's signed event
  token vouches for the user id it sent with the token) and shares requests only with clients proven to be
  the same user, sent with one of their tokens: the same rights either way, never the admin's lent;
* a request that fails as a whole (rate limit after its retries, network) fails every job in it with the
  same :class:`B24Error` the job would have got alone; each job handles it as before (retry, answer).

One request is formed at a time.  Its leader first waits for partners (at most ``window`` seconds, or
``burst_window`` while many jobs are running, ``sustained_window`` once that has lasted ``sustained_after``
seconds, and not at all once every live participant is waiting, so a lone job is never delayed; a run-as
user's reads wait at most ``window``: their partners come out of one proof round together), then for the
portal's rate-limit slot, and only then takes what is pending (up to 50 commands).  Jobs that become ready
while the leader waits for the slot ride in that request: the harder the portal's limit bites, the fuller
each request, which is what keeps a 500-deal burst at a fraction of a request per call.  A thread may
submit several independent jobs at once (:meth:`Coalescer.submit_each`, :func:`batch_each`: a portal's CRM
cards), counting as one participant.
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
    done: bool = False
    failed: bool = False  # halt: a command failed, later ones are not run / dropped


@dataclass
class _Part:
    """The commands of one job that go in one request; ``then``: the ones that follow if these succeed."""
    job: _Job
    commands: dict
    then: dict | None = None
    client: B24Client | None = None  # a run-as user's client (None: the portal's stored token)
    at: float = field(default_factory=time.monotonic)  # when it became pending
    rider: bool = False  # Coalescer.ride: goes last in its request

    @property
    def credential(self):
        return None if self.client is None else self.client.shares_as


class Coalescer:
    # In a burst (this many jobs running) a request waits up to ``burst_window`` to fill: the
    # jobs are many, so its 50 commands come quickly, and each request saved is one the portal keeps.
    # A burst that lasts (``sustained_after`` seconds: a provider pacing the sends, so the answers trickle)
    # waits up to ``sustained_window``: about what a request of the portal's token needs to fill at that pace.
    BURST_JOBS = 8

    def __init__(self, client: B24Client, window: float = 0.2, burst_window: float | None = None,
                 sustained_window: float | None = None, sustained_after: float = 10.0):
        self.client = client
        self.portal_pk = client.portal.pk
        self.window = window
        self.burst_window = max(window, burst_window if burst_window is not None else window)
        self.sustained_window = max(self.burst_window, sustained_window or 0.0)
        self.sustained_after = sustained_after
        self.burst_since: float | None = None  # since when BURST_JOBS or more jobs have been running
        self.cond = threading.Condition()
        self.pending: list[_Part] = []
        self.participants = 0
        self.expected = 0  # jobs handed to this coalescer's process that have not started yet
        self.inside = 0  # participants blocked in submit(): pending or in flight, doing no work of their own
        self.leading = False
        self.seq = 0
        self.requests = 0  # REST requests this coalescer sent (bench and tests)

    # -- participants ----------------------------------------------------------------------------------
    def expect(self, n: int = 1) -> None:
        """Jobs that will participate soon (queued for a thread): this coalescer is kept for them."""
        with self.cond:
            self.expected += n

    @contextlib.contextmanager
    def participate(self):
        """A job announced with :meth:`expect` runs: its requests go through this coalescer meanwhile."""
        with self.cond:
            self.expected -= 1
            self.participants += 1
            if self.participants >= self.BURST_JOBS and self.burst_since is None:
                self.burst_since = time.monotonic()
        token = _active.set(self)
        try:
            yield
        finally:
            _active.reset(token)
            with self.cond:
                self.participants -= 1
                if self.participants < self.BURST_JOBS:
                    self.burst_since = None
                self.cond.notify_all()

    # -- submissions -----------------------------------------------------------------------------------
    def call(self, method: str, params: dict, client: B24Client | None = None):
        result = self.submit({"one": (method, params)}, halt=False, client=client)
        err = result.errors.get("one")
        if err:
            raise B24Error(str(err.get("error") or "ERROR"), str(err.get("error_description", "")), method=method)
        return result.results.get("one")

    def submit(self, commands: dict, halt: bool, client: B24Client | None = None) -> BatchResult:
        """``client``: a proven run-as user's client whose requests these are (None: the stored token)."""
        [result] = self.submit_each([commands], halt, client)
        if isinstance(result, BaseException):
            raise result
        return result

    def submit_each(self, batches: list[dict], halt: bool = False,
                    client: B24Client | None = None) -> list[BatchResult | BaseException]:
        """Several independent jobs from one thread (a card sync's cards): each is keyed, gated and answered
        on its own as if a thread of its own had submitted it; a request that failed as a whole is returned
        in its job's place.  The thread counts as one participant waiting, not as one per job."""
        return self.collect(self._enqueue(batches, halt, client))

    def ride(self, batches: list[dict], client: B24Client | None = None) -> list:
        """Independent jobs (no halt) put in the next request without waiting for it: they board whichever
        request goes out next, the one this thread is about to submit included (a card change riding in its
        call's answer), and go last in it.  Their results come from :meth:`collect`, which this thread must
        call (it sends them itself if no request took them)."""
        return self._enqueue(batches, False, client, rider=True)

    def collect(self, jobs: list) -> list[BatchResult | BaseException]:
        """Wait for ``jobs`` (from :meth:`ride` or :meth:`submit_each`), leading requests while a part of
        theirs is pending and nobody else leads."""
        with self.cond:
            self.inside += 1
            self.cond.notify_all()
        try:
            while True:
                with self.cond:
                    while not all(job.done for job in jobs) and (self.leading or not self._owns_pending(jobs)):
                        self.cond.wait()
                    if all(job.done for job in jobs):
                        break
                    # Nobody leads and a part of this thread's is pending: it forms the request.  (A thread whose
                    # parts are all in flight never leads: it would wait out the next request's window before
                    # it could return with its own results.)
                    self.leading = True
                self._lead()
        finally:
            with self.cond:
                self.inside -= 1
        return [job.error if job.error is not None else job.result for job in jobs]

    def _enqueue(self, batches: list[dict], halt: bool, client: B24Client | None, rider: bool = False) -> list:
        client = client if client is not None and client.user_token else None
        jobs = []
        with self.cond:
            for commands in batches:
                items = list(commands.items())
                gated = halt and len(items) > 1
                self.seq += 1
                job = _Job(prefix=f"j{self.seq}_", commands=dict(items), halt=halt)
                self.pending.append(_Part(job, dict(items[:1]) if gated else dict(items),
                                          dict(items[1:]) if gated else None, client, rider=rider))
                jobs.append(job)
            self.cond.notify_all()
        return jobs

    # -- sending ---------------------------------------------------------------------------------------
    def _lead(self) -> None:
        with self.cond:
            # Only running partners are waited for: a job still queued for a thread cannot come while this
            # one holds its thread (a spread of many portals would otherwise wait out every window).  The
            # request is for the credential that goes next (it may change while waiting: a run-as user's
            # reads arriving go first), and waits from when its oldest part became pending.
            while True:
                credential = self._next_credential()
                group = [p for p in self.pending if p.credential == credential]
                left = min(p.at for p in group) + self._window(credential) - time.monotonic()
                if left <= 0 or self.inside >= self.participants or \
                        sum(len(p.commands) for p in group) >= BATCH_LIMIT:
                    break
                self.cond.wait(left)
        error = None
        try:
            self.client.wait_for_slot()  # partners keep joining while the portal's bucket refills
        except Exception as exc:  # noqa: BLE001  (the rate-limit store down too: every job in it hears it, and
            error = exc  # the lead is given back below, or the others would wait for it forever)
        with self.cond:
            parts = self._take_pending(self._next_credential())
            self.leading = False
            self.cond.notify_all()
        if error is None:
            error = self._send(parts)
        with self.cond:
            for part in parts:
                job = part.job
                if error is not None:
                    job.error = error
                if part.then and job.error is None and not job.failed:  # the gated reads: the next request
                    self.pending.insert(0, _Part(job, part.then, client=part.client))
                else:
                    job.done = True
            self.cond.notify_all()

    def _owns_pending(self, jobs: list[_Job]) -> bool:
        ids = {id(job) for job in jobs}
        return any(id(part.job) in ids for part in self.pending)

    def _next_credential(self):
        """Whose request is formed next: the oldest pending run-as user's reads if there are any (they wait
        only the base window, so they never queue behind a request of the portal's token filling up), else
        the portal's token's (None)."""
        return next((p.credential for p in self.pending if p.credential is not None), None)

    def _window(self, credential) -> float:
        """How long a request for ``credential`` may wait for partners (called under ``cond``)."""
        if credential is not None:
            # A run-as user's reads: their only partners are that user's calls proven in the same earlier
            # request, which come together; waiting out a burst window would only hold the calls back.
            return self.window
        if self.participants < self.BURST_JOBS:
            return self.window
        if self.burst_since is not None and time.monotonic() - self.burst_since >= self.sustained_after:
            return self.sustained_window
        return self.burst_window

    def _take_pending(self, credential) -> list[_Part]:
        """The pending parts of ``credential``, oldest first, up to 50 commands (the first one always)."""
        parts, size, rest = [], 0, []
        for part in self.pending:
            n = len(part.commands)
            if part.credential == credential and (not parts or size + n <= BATCH_LIMIT):
                parts.append(part)
                size += n
            else:
                rest.append(part)
        self.pending = rest
        return parts

    def _send(self, parts: list[_Part]) -> BaseException | None:
        """One request for ``parts`` (at most 50 commands); each job takes its own results back."""
        combined = {}
        for part in sorted(parts, key=lambda p: p.rider):  # riders after the jobs they ride with
            keys = set(part.job.commands)
            for key, (method, params) in part.commands.items():
                combined[part.job.prefix + key] = (method, _rewrite(params, part.job.prefix, keys))
        token = _active.set(None)  # this request itself goes straight out
        try:
            sender = parts[0].client or self.client  # same user for all parts, or the stored token
            out = sender.batch(combined, halt=False, slot_taken=True)
        except Exception as exc:  # the request as a whole: every job in it hears it
            return exc
        finally:
            _active.reset(token)
        self.requests += out.requests
        for part in parts:
            self._take(part, out)
        return None

    @staticmethod
    def _take(part: _Part, out: BatchResult) -> None:
        job = part.job
        for key in part.commands:
            if job.failed:
                break  # halt: Bitrix24 would not have run it
            full = job.prefix + key
            if full in out.errors:
                job.result.errors[key] = out.errors[full]
                job.failed = job.halt
            elif full in out.results:
                job.result.results[key] = out.results[full]
        job.result.requests += 1


def batch_each(client: B24Client, batches: list[dict]) -> list[BatchResult | BaseException]:
    """Independent batches (no halt) in as few requests as their commands fit: through the portal's coalescer
    when this thread has one (sharing the requests of every job running beside it), else packed together
    here, up to 50 commands a request, one batch never split.  A request that failed as a whole is returned
    in the place of each batch it carried; the others' results stand."""
    small = [i for i, commands in enumerate(batches) if len(commands) <= BATCH_LIMIT]
    out: list[BatchResult | BaseException] = [BatchResult() for _ in batches]
    for i in set(range(len(batches))) - set(small):  # more than one request anyway: its own chunks
        try:
            out[i] = client.batch(batches[i])
        except B24Error as exc:
            out[i] = exc
    co = client._coalescer()
    if co is None:
        co = Coalescer(client, window=0.0)  # nobody else participates: nothing is waited for but the slot
    for i, result in zip(small, co.submit_each([batches[i] for i in small], halt=False, client=client)):
        out[i] = result
    return out


def _rewrite(value, prefix: str, keys: set):
    if isinstance(value, str):
        return _REF.sub(lambda m: f"$result[{prefix}{m.group(1)}]" if m.group(1) in keys else m.group(0), value)
    if isinstance(value, dict):
        return {k: _rewrite(v, prefix, keys) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rewrite(v, prefix, keys) for v in value]
    return value
