"""End to end: P portals x N "Send for e-signature" calls through the emulated Bitrix24 (rate limits on),
gunicorn, Celery and an in-memory provider; our batched REST use against a naive one-call-each baseline.

    .venv/bin/python bench/e2e.py --portals 20 --calls 50            # both modes, side by side
    .venv/bin/python bench/e2e.py --portals 100 --calls 100 --mode optimized

Each portal is installed through the real install page (the emulator's basic plan: burst 50, 2 req/s),
gets an in-memory provider account and one deal per call (a PDF in a file field, one contact); then the queue server
fires N robot calls per portal, round-robin across portals, into gunicorn.  The worker (threads) reads the
CRM, downloads the PDF, sends it and answers each workflow with ``bizproc.event.send``.

Reported: time from the first robot call to the last answer, Bitrix24 REST requests per robot call (all
HTTP requests the portals received, batch = 1), 503s the emulator returned, and the checks: every
workflow answered exactly once, one signature request per call, no QUERY_LIMIT_EXCEEDED in any answer.
The naive baseline (``B24SIGN_BENCH_NAIVE=1``, bench/naive.py) runs every batched command as its own call.
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
    from signing.models import ProviderAccount, SignatureRequest

    reset_state()
    port = free_port()
    app_url = f"http://127.0.0.1:{port}"
    cloud = Bitrix24Cloud(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, app_url=app_url).start()
    # optimized: calls of one portal ready together share batches (bizproc_ext/coalesce.py);
    # percall: each call alone (its own proof+reads batch and its own answer), as before issue 14.
    extra = {"B24SIGN_BENCH_NAIVE": "1", "ROBOT_COALESCE_MAX": "1"} if mode == "naive" else \
        {"ROBOT_COALESCE_MAX": "1"} if mode == "percall" else {}
    env = bench_env(APP_BASE_URL=app_url, B24_OAUTH_URL=cloud.oauth_url, **extra)
    web = start_gunicorn(port, args.gunicorn, env, tmp / f"gunicorn-{mode}.log")
    workers = []
    try:
        with ThreadPoolExecutor(8) as pool:
            portals = list(pool.map(lambda i: install(cloud, app_url, i, args.calls), range(args.portals)))
        for p in Portal.objects.all():
            ProviderAccount.objects.create(portal=p, provider="memory", is_default=True)
        # Start from full buckets on both sides, and count only the robot calls' requests.
        redis.Redis.from_url(REDIS_URL).flushdb()
        for emu, _ in portals:
            emu.bucket.reset()
            emu.stats = Stats()
        workers = [start_worker(env, tmp / f"worker-{mode}-{k}.log", concurrency=args.threads)
                   for k in range(args.workers)]
        time.sleep(3)  # workers up
        total = args.portals * args.calls
        print(f"[{mode}] {args.portals} portals installed; firing {total} robot calls "
              f"({args.workers} worker process(es) x {args.threads} threads, gunicorn x{args.gunicorn})", flush=True)
        order = [(emu, deals[n]) for n in range(args.calls) for emu, deals in portals]  # round-robin
        t0 = time.monotonic()
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
        }
        print_result(result)
        return result
    finally:
        for w in workers:
            w.stop()
        web.stop()
        cloud.stop()


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
    print(f"[{r['mode']}]   lost {r['lost']}, duplicated {r['duplicated']}, refused {r['refused']}, rows {r['rows']}, "
          f"signature requests {r['requests']}, QUERY_LIMIT_EXCEEDED in answers {r['query_limit_surfaced']}, "
          f"answers {r['statuses']} {r['errors'] or ''}: {'OK' if ok else 'FAILED'}", flush=True)


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
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up the servers on `timeout`/kill too
    setup_django()
    tmp = Path(tempfile.mkdtemp(prefix="b24sign-e2e-"))
    modes = {"both": ("optimized", "naive"), "all": ("optimized", "percall", "naive")}.get(args.mode, (args.mode,))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; command: {' '.join(sys.argv)}",
          flush=True)
    results = [run_mode(m, args, tmp) for m in modes]
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    if len(results) > 1:
        print("\n| mode | calls | last answer | REST requests per call | 503s | lost/dup/refused |")
        print("|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['mode']} | {r['calls']} | {r['elapsed']:.1f} s | {r['rest_per_call']:.2f} | {r['r503']} | "
                  f"{r['lost']}/{r['duplicated']}/{r['refused']} |")
    print(f"(logs in {tmp})")
    reset_state()
    bad = [r for r in results if r["lost"] or r["duplicated"] or r["query_limit_surfaced"] or r["refused"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
