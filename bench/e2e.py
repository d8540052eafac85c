"""End to end: P portals x N "Send for e-signature" calls through the emulated Bitrix24 (rate limits on),
gunicorn, Celery and an in-memory provider (or the signNow emulator); our batched REST use against a naive
one-call-each baseline.

    .venv/bin/python bench/e2e.py --portals 20 --calls 50            # both modes, side by side
    .venv/bin/python bench/e2e.py --portals 100 --calls 100 --mode optimized
    .venv/bin/python bench/e2e.py --portals 1 --calls 500 --mode optimized --provider signnow \
        --provider-rate 10 --provider-burst 10

Each portal is installed through the real install page (the emulator's basic plan: burst 50, 2 req/s),
gets an in-memory provider account and one deal per call (a PDF in a file field, one contact); then the queue server
fires N robot calls per portal, round-robin across portals, into gunicorn.  The worker (threads) reads the
CRM, downloads the PDF, sends it and answers each workflow with ``bizproc.event.send``.

Reported: time from the first robot call to the last answer, Bitrix24 REST requests per robot call (all
HTTP requests the portals received, batch = 1), 503s the emulator returned, and the checks: every
workflow answered exactly once, one signature request per call, no QUERY_LIMIT_EXCEEDED in any answer.
The naive baseline (``B24SIGN_BENCH_NAIVE=1``, bench/naive.py) runs every batched command as its own call.

``--provider signnow``: every portal's default account is a signNow account, connected through the product's
connect path to the signNow emulator, which runs as an HTTP server in this process (bench/signnow.py) with its
rate limit on, per account (``--signnow-limit`` requests per second, 429 + ``Retry-After`` beyond; default the
pacing's own ceiling, rate + burst).  The app paces each account at ``--provider-rate`` calls/s with
``--provider-burst`` (``PROVIDER_PACING=signnow=rate/burst`` in the worker and gunicorn).  Reported besides:
signNow calls per send (counted by the emulator, by endpoint), the provider floor ((calls per account − burst)
÷ rate), the ratio of the last answer to it (issue 14's target: ≤ 1.10) and the 429s.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import signnow as sn  # noqa: E402
from bench.breakdown import breakdown  # noqa: E402
from bench.common import (  # noqa: E402
    CLIENT_ID,
    CLIENT_SECRET,
    bench_env,
    free_port,
    reset_state,
    setup_django,
    start_gunicorn,
    start_worker,
)
from tests.emulators.bitrix24 import Bitrix24Cloud  # noqa: E402
from tests.emulators.bitrix24.core import Stats  # noqa: E402
from tests.emulators.pdf import make_pdf  # noqa: E402

PROPS = {"provider": "default", "document_source": "field", "document_field": "UF_CRM_CONTRACT",
         "signer_contacts": "primary", "signing_order": "sequential", "subject": "Please sign", "wait": "N"}


def install(cloud: Bitrix24Cloud, app_url: str, i: int, deals: int):
    """One portal, installed through the install page, with ``deals`` deals (one per robot call: a manager
    moving 500 deals fires one call per deal; calls for the same deal would find its open request and
    send nothing again, issue 13)."""
    emu = cloud.add_portal(f"p{i:03d}")
    query, body = emu.install_request()
    resp = requests.post(f"{app_url}/b24/install/", params=query, data=body, timeout=60)
    if resp.status_code != 200:
        raise SystemExit(f"install of portal {i} failed: {resp.status_code} {resp.text[:200]}")
    emu.finish_install()
    contact = emu.crm.add_contact("Anna", f"Buyer{i}", emails=[f"anna{i}@customer.test"])
    pdf = make_pdf([f"Contract {i}", "Terms"])
    return emu, [emu.crm.add_deal(f"Deal {i}-{n}", contact_ids=[contact], files={"ufCrmContract": ("contract.pdf", pdf)})
                 for n in range(deals)]


def run_mode(mode: str, args, tmp: Path) -> dict:
    import redis
    from django.db.models import F

    from b24app.models import Portal
    from bench.common import REDIS_URL
    from bizproc_ext.models import RobotCall
    from crmcard.models import CardState
    from signing.models import PortalSettings, ProviderAccount, SignatureRequest

    reset_state()
    port = free_port()
    app_url = f"http://127.0.0.1:{port}"
    cloud = Bitrix24Cloud(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, app_url=app_url).start()
    # optimized: calls of one portal ready together share batches (bizproc_ext/coalesce.py);
    # percall: each call alone (its own proof+reads batch and its own answer), as before issue 14.
    extra = {"B24SIGN_BENCH_NAIVE": "1", "ROBOT_COALESCE_MAX": "1"} if mode == "naive" else \
        {"ROBOT_COALESCE_MAX": "1"} if mode == "percall" else {}
    signnow = None
    if args.provider == "signnow":
        signnow = sn.start()
        extra.update(SIGNNOW_API_BASE=signnow.base_url,
                     PROVIDER_PACING=f"signnow={args.provider_rate}/{args.provider_burst}")
    env = bench_env(APP_BASE_URL=app_url, B24_OAUTH_URL=cloud.oauth_url, **extra)
    web = start_gunicorn(port, args.gunicorn, env, tmp / f"gunicorn-{mode}.log")
    workers = []
    try:
        with ThreadPoolExecutor(8) as pool:
            portals = list(pool.map(lambda i: install(cloud, app_url, i, args.calls), range(args.portals)))
        for p in Portal.objects.all():
            if signnow is None:
                ProviderAccount.objects.create(portal=p, provider="memory", is_default=True)
            else:
                sn.connect(p, signnow, app_url)  # password grant, GET /user, callback subscriptions (not counted)
            if args.invite == "freeform":  # no expiry, no reminders: one signer gets a freeform invite
                PortalSettings.objects.update_or_create(portal=p, defaults={"expiry_days": 0, "reminder_days": 0})
        if signnow is not None:
            sn.reset_counts(signnow)
            signnow.account_limit_per_s = args.signnow_limit
        # Start from full buckets on both sides, and count only the robot calls' requests.
        redis.Redis.from_url(REDIS_URL).flushdb()
        for emu, _ in portals:
            emu.bucket.reset()
            emu.stats = Stats()
            emu.rest_log_start = len(emu.rest_log)
        workers = [start_worker(env, tmp / f"worker-{mode}-{k}.log", concurrency=args.threads)
                   for k in range(args.workers)]
        time.sleep(3)  # workers up
        total = args.portals * args.calls
        print(f"[{mode}] {args.portals} portals installed; firing {total} robot calls "
              f"({args.workers} worker process(es) x {args.threads} threads, gunicorn x{args.gunicorn})", flush=True)
        order = [(emu, deals[n]) for n in range(args.calls) for emu, deals in portals]  # round-robin
        t0, t0_wall = time.monotonic(), time.time()
        with ThreadPoolExecutor(8) as pool:
            flows = list(pool.map(lambda pd: pd[0].start_robot(
                "b24sign_send", document_id=("crm", "CCrmDocumentDeal", f"DEAL_{pd[1]}"), properties=PROPS,
                user_id=1), order))
        delivered = time.monotonic() - t0
        refused = sum(1 for wf in flows if wf.response_status != 200)
        deadline = t0 + args.timeout
        last = -1
        while time.monotonic() < deadline:
            answered = sum(1 for wf in flows if wf.answers)
            if answered == total:
                break
            if int(time.monotonic() - t0) // 10 != last:
                last = int(time.monotonic() - t0) // 10
                print(f"[{mode}]   {time.monotonic() - t0:5.0f}s: {answered}/{total} answered", flush=True)
            time.sleep(0.5)
        elapsed = time.monotonic() - t0
        answered = sum(1 for wf in flows if wf.answers)
        at_answers = sum(emu.stats.requests for emu, _ in portals)
        # The deal cards (timeline card, status fields) are brought up to date just after: count them too,
        # once every card is current (or the portals have heard nothing for 30 s).
        quiet_since, seen = time.monotonic(), at_answers

        def cards_current() -> bool:
            return CardState.objects.count() >= total and not CardState.objects.filter(due__gt=F("synced")).exists()

        while not (cards_current() and time.monotonic() - quiet_since >= 3.0) \
                and time.monotonic() - quiet_since < 30.0 and time.monotonic() < deadline + 120:
            time.sleep(0.5)
            now_seen = sum(emu.stats.requests for emu, _ in portals)
            if now_seen != seen:
                quiet_since, seen = time.monotonic(), now_seen
        settled = time.monotonic() - t0 - 3.0
        requests_total = sum(emu.stats.requests for emu, _ in portals)
        by_method = Counter()
        for emu, _ in portals:
            by_method.update(emu.stats.by_method)
        r503 = sum(emu.stats.rejected_503 for emu, _ in portals)
        log = sorted((e for emu, _ in portals for e in emu.rest_log[emu.rest_log_start:]), key=lambda e: e["at"])
        kinds = breakdown(log, tmp / f"requests-{mode}.tsv", t0_wall)
        statuses = Counter(str(wf.return_values.get("status")) for wf in flows if wf.answers)
        errors = Counter(str(wf.return_values.get("error"))[:80] for wf in flows
                         if wf.answers and wf.return_values.get("status") != "sent")
        result = {
            "mode": mode, "portals": args.portals, "calls": total, "elapsed": elapsed, "delivered": delivered,
            "answered": answered, "lost": total - answered,
            "duplicated": sum(1 for wf in flows if len(wf.answers) > 1 or wf.ignored_sends),
            "refused": refused, "rows": RobotCall.objects.count(), "requests": SignatureRequest.objects.count(),
            "rest": requests_total, "rest_per_call": requests_total / max(1, total), "r503": r503,
            "rest_at_answers": at_answers, "settled": settled,
            "cards": sum(len(emu.activities) for emu, _ in portals),
            "cards_due": CardState.objects.filter(due__gt=F("synced")).count(), "card_rows": CardState.objects.count(),
            "query_limit_surfaced": sum(1 for wf in flows if "QUERY_LIMIT" in str(wf.return_values.get("error"))),
            "statuses": dict(statuses), "errors": dict(errors), "by_method": dict(by_method),
            "kinds": kinds,
            "provider": args.provider,
        }
        if signnow is not None:
            result.update(sn.summary(signnow, total, args.portals, args.provider_rate, args.provider_burst))
            result["sn_limit"] = args.signnow_limit
            result["sn_first_to_answer"] = t0_wall + elapsed - result["sn_first"] if result["sn_first"] else None
        print_result(result)
        return result
    finally:
        for w in workers:
            w.stop()
        web.stop()
        cloud.stop()
        if signnow is not None:
            signnow.stop()


def print_result(r: dict) -> None:
    ok = (r["lost"] == 0 and r["duplicated"] == 0 and r["query_limit_surfaced"] == 0 and r["refused"] == 0
          and r["requests"] == r["calls"] and r["rows"] == r["calls"])
    print(f"[{r['mode']}] {r['calls']} calls ({r['portals']} portals): all answered after {r['elapsed']:.1f}s "
          f"(delivered in {r['delivered']:.1f}s) -> {r['calls'] / r['elapsed']:.1f} calls/s", flush=True)
    print(f"[{r['mode']}]   Bitrix24 REST: {r['rest']} requests = {r['rest_per_call']:.2f} per robot call, deal cards "
          f"included ({r['cards']} timeline cards, settled after {r['settled']:.1f}s; {r['rest_at_answers']} requests "
          f"at the last answer; card rows {r['card_rows']}, still due {r['cards_due']}); 503 QUERY_LIMIT_EXCEEDED from the portals: {r['r503']}", flush=True)
    print(f"[{r['mode']}]   methods (batch commands counted inside): "
          + ", ".join(f"{m}x{n}" for m, n in sorted(r["by_method"].items())), flush=True)
    print(f"[{r['mode']}]   requests by what they carried (bench/breakdown.py): "
          + ", ".join(f"{k} x{n}" for k, n in sorted(r["kinds"]["requests"].items(), key=lambda kv: -kv[1]))
          + "; commands: " + ", ".join(f"{k} x{n}" for k, n in sorted(r["kinds"]["commands"].items())), flush=True)
    print(f"[{r['mode']}]   lost {r['lost']}, duplicated {r['duplicated']}, refused {r['refused']}, rows {r['rows']}, "
          f"signature requests {r['requests']}, QUERY_LIMIT_EXCEEDED in answers {r['query_limit_surfaced']}, "
          f"answers {r['statuses']} {r['errors'] or ''}: {'OK' if ok else 'FAILED'}", flush=True)
    if r.get("provider") == "signnow":
        ratio = r["elapsed"] / r["floor"] if r["floor"] else float("nan")
        print(f"[{r['mode']}]   signNow: {r['sn_ok']} calls = {r['sn_per_send']:.2f} per send ("
              + ", ".join(f"{e} x{n}" for e, n in sorted(r["sn_by_endpoint"].items())) + f"); 429s {r['sn_429']} "
              f"(limit {r['sn_limit']}/s per account; statuses {r['sn_statuses']}); first to last signNow call "
              f"{r['sn_span']:.1f}s, first signNow call to the last answer {r['sn_first_to_answer'] or 0:.1f}s", flush=True)
        print(f"[{r['mode']}]   provider floor ({r['sn_ok']}/{r['portals']} calls per account - burst "
              f"{r['burst']:g}) / {r['rate']:g} per s = {r['floor']:.1f}s; last answer {r['elapsed']:.1f}s after "
              f"the first call = {ratio:.2f} x the floor (target <= 1.10: "
              f"{'met' if ratio <= 1.10 else 'NOT met'})", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description="end-to-end robot calls through the emulated Bitrix24")
    ap.add_argument("--portals", type=int, default=20)
    ap.add_argument("--calls", type=int, default=50, help="robot calls per portal")
    ap.add_argument("--mode", choices=("both", "all", "optimized", "percall", "naive"), default="both",
                    help="both: optimized and naive; all: optimized, percall and naive")
    ap.add_argument("--workers", type=int, default=1, help="Celery worker processes")
    ap.add_argument("--threads", type=int, default=48, help="threads per worker (I/O bound: rate-limit waits)")
    ap.add_argument("--gunicorn", type=int, default=2, help="gunicorn sync workers")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--provider", choices=("memory", "signnow"), default="memory",
                    help="memory: the in-memory test provider; signnow: the signNow emulator over HTTP")
    ap.add_argument("--provider-rate", type=float, default=1.0,
                    help="signNow: our pacing per account, calls/s (SIGNNOW_RATE_PER_S's default: 1)")
    ap.add_argument("--provider-burst", type=float, default=10.0,
                    help="signNow: our pacing's burst per account (SIGNNOW_RATE_BURST's default: 10)")
    ap.add_argument("--invite", choices=("field", "freeform"), default="field",
                    help="field: the portal's default settings (expiry 30 days, reminders every 3: a field invite, "
                         "4 signNow calls); freeform: expiry and reminders off, a freeform invite (2 calls)")
    ap.add_argument("--signnow-limit", type=float, default=None,
                    help="signNow emulator: requests per second per account before 429 "
                         "(default: rate + burst, pacing at the limit; 0: off)")
    args = ap.parse_args()
    if args.signnow_limit is None:
        args.signnow_limit = sn.default_limit(args.provider_rate, args.provider_burst)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up the servers on `timeout`/kill too
    setup_django()
    tmp = Path(tempfile.mkdtemp(prefix="b24sign-e2e-"))
    modes = {"both": ("optimized", "naive"), "all": ("optimized", "percall", "naive")}.get(args.mode, (args.mode,))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; command: {' '.join(sys.argv)}",
          flush=True)
    results = [run_mode(m, args, tmp) for m in modes]
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    if len(results) > 1 or args.provider == "signnow":
        sncols = " signNow calls per send | provider floor | ratio | 429s |" if args.provider == "signnow" else ""
        print(f"\n| mode | calls | last answer | REST requests per call | 503s | lost/dup/refused |{sncols}")
        print("|---|---|---|---|---|---|" + "---|" * sncols.count("|"))
        for r in results:
            sn_row = (f" {r['sn_per_send']:.2f} | {r['floor']:.1f} s | {r['elapsed'] / r['floor']:.2f} | {r['sn_429']} |"
                      if args.provider == "signnow" and r["floor"] else " – | – | – | – |" * bool(sncols))
            print(f"| {r['mode']} | {r['calls']} | {r['elapsed']:.1f} s | {r['rest_per_call']:.2f} | {r['r503']} | "
                  f"{r['lost']}/{r['duplicated']}/{r['refused']} |{sn_row}")
    print(f"(logs in {tmp})")
    reset_state()
    bad = [r for r in results if r["lost"] or r["duplicated"] or r["query_limit_surfaced"] or r["refused"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
