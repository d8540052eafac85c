"""Robot handler throughput: robot calls/s and p50/p99 under gunicorn + PostgreSQL + Redis, next to a
plain Django view, in the same run.

    .venv/bin/python bench/handler.py                      # 5 sync workers (production), wrk -t1 -c16, 20 s per run
    .venv/bin/python bench/handler.py --workers 2 --runs 3 --duration 15
    .venv/bin/python bench/handler.py --profile 2000       # in-process: queries and cProfile per call

Load comes from ``wrk`` (Debian package) in its own process, with a Lua script that posts unique
form-encoded robot calls (PHP bracket keys, as Bitrix24's queue server sends them) for an installed
portal.  Each robot-call run follows 2 s of robot calls to warm the workers (a server in service is warm;
a worker's first call pays for its connection and caches), counted apart.  After each run the recorded rows
and the Celery queue length are compared with the 2xx responses wrk counted: none may be lost or doubled.  No Celery worker runs (ingest only, like the
reference in the spec's Part C.2), so the tasks stay queued and are counted.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BROKER_URL, bench_env, free_port, reset_state, setup_django, start_gunicorn  # noqa: E402

ROBOT = "b24sign_send"
PROPS = {"provider": "default", "document_source": "field", "document_field": "UF_CRM_CONTRACT",
         "signer_contacts": "primary", "signer_emails": "buyer@customer.test", "signing_order": "sequential",
         "subject": "Please sign", "wait": "Y", "expiry_days": "14"}
TOKEN_MARK = "@@TOKEN@@"

LUA = r"""
local prefix, suffix = %(prefix)s, %(suffix)s
local run = %(run)s
local counter = 0
local n = 0
function setup(thread)
  n = n + 1
  thread:set("id", n)
end
function request()
  counter = counter + 1
  local body = prefix .. run .. "x" .. id .. "x" .. counter .. suffix
  return wrk.format("POST", %(path)s, {["Content-Type"] = "application/x-www-form-urlencoded",
                                      ["User-Agent"] = "Bitrix24 Webhook Engine"}, body)
end
function done(summary, latency, requests)
  io.write(string.format("JSON {\"requests\": %%d, \"non2xx\": %%d, \"socket_errors\": %%d, \"duration_us\": %%d, " ..
    "\"p50\": %%d, \"p90\": %%d, \"p99\": %%d, \"max\": %%d}\n",
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""

LUA_GET = r"""
function done(summary, latency, requests)
  io.write(string.format("JSON {\"requests\": %d, \"non2xx\": %d, \"socket_errors\": %d, \"duration_us\": %d, " ..
    "\"p50\": %d, \"p90\": %d, \"p99\": %d, \"max\": %d}\n",
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""


def robot_script(path: Path, prefix: str, suffix: str, marker: str) -> Path:
    """wrk's Lua script posting robot calls whose event tokens start with ``marker`` (unique per script)."""
    path.write_text(LUA % {"prefix": lua_str(prefix), "suffix": lua_str(suffix),
                           "run": lua_str(f"{marker}{secrets.token_hex(4)}"),
                           "path": lua_str(f"/bizproc/robots/{ROBOT}/")})
    return path


def lua_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def make_portal():
    """An installed portal row (what the install page stores), and its application token."""
    from b24app.models import Portal

    member_id, app_token = secrets.token_hex(16), secrets.token_hex(16)
    portal = Portal(member_id=member_id, domain="bench.bitrix24.test", client_endpoint="http://127.0.0.1:9/rest/",
                    server_endpoint="http://127.0.0.1:9/rest/", status="S", scope="bizproc,crm,user_basic")
    portal.set_application_token(app_token)
    portal.set_tokens("a" * 70, "r" * 70, 3600, 1)
    portal.save()
    return portal, app_token


def robot_body(portal, app_token: str) -> str:
    """One robot call as the queue server encodes it, with TOKEN_MARK where the event_token goes."""
    from urllib.parse import quote, urlencode

    from b24app.rest.encoding import php_pairs

    payload = {
        "workflow_id": "664f1c2a0b3d59.12345678", "code": ROBOT, "document_id": ["crm", "CCrmDocumentDeal", "DEAL_42"],
        "document_type": ["crm", "CCrmDocumentDeal", "DEAL"], "event_token": TOKEN_MARK, "properties": PROPS,
        "use_subscription": "Y", "timeout_duration": "0", "ts": str(int(time.time())),
        "auth": {"access_token": "a" * 70, "expires": str(int(time.time()) + 3600), "expires_in": "3600",
                 "scope": "bizproc,crm,user_basic", "domain": portal.domain,
                 "server_endpoint": "https://oauth.bitrix.info/rest/", "status": "S",
                 "client_endpoint": portal.client_endpoint, "member_id": portal.member_id, "user_id": "2",
                 "refresh_token": "r" * 70, "application_token": app_token},
    }
    body = urlencode(php_pairs(payload), quote_via=quote)
    return body.replace(quote(TOKEN_MARK, safe=""), TOKEN_MARK)


def wrk(url: str, script: Path, duration: int, connections: int) -> dict:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s", "-s", str(script),
                          url], capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("JSON "))
    r = json.loads(line[5:])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def cpu_seconds(pids) -> float:
    """utime + stime of these processes (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def process_groups(server) -> dict:
    """pids by role: gunicorn (master + workers), this benchmark's PostgreSQL backends, redis-server."""
    from django.db import connection

    gunicorn = [server.p.pid] + [int(x) for x in Path(f"/proc/{server.p.pid}/task/{server.p.pid}/children")
                                 .read_text().split()]
    with connection.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        postgres = [row[0] for row in cur.fetchall()]
    redis_pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                  and _cmd(p).startswith("redis-server") and ":6379" in _cmd(p)]
    return {"django (gunicorn)": gunicorn, "postgres backends": postgres, "redis-server": redis_pids}


def cpu_now(server) -> dict:
    """CPU seconds so far, by role (process_groups) and pid."""
    return {k: {pid: cpu_seconds([pid]) for pid in pids} for k, pids in process_groups(server).items()}


def cpu_per_call(server, before: dict, requests: int) -> str:
    # Per pid: a process that ended during the run (a backend whose connection closed) would otherwise take
    # its whole past off the sum; one that started counts from zero.
    used = {k: sum(max(0.0, cpu - before[k].get(pid, 0.0)) for pid, cpu in now.items())
            for k, now in cpu_now(server).items()}
    return "CPU per call: " + ", ".join(f"{k} {v / requests * 1000:.2f} ms" for k, v in used.items())


def _cmd(p: Path) -> str:
    try:
        return (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def server_url(server) -> str:
    return f"http://127.0.0.1:{server.port}"


def fmt(label: str, r: dict) -> str:
    return (f"{label:<34} {r['rps']:8.0f} req/s   p50 {r['p50'] / 1000:6.1f} ms   p90 {r['p90'] / 1000:6.1f} ms   "
            f"p99 {r['p99'] / 1000:6.1f} ms   max {r['max'] / 1000:6.0f} ms   non-2xx {r['non2xx']}   "
            f"socket errors {r['socket_errors']}")


def slow_summary(log_path: Path, offset: int, slow_ms: float) -> str:
    """What bench/wsgi_timed.py logged during the run: calls over ``slow_ms``, and how many of them waited in
    their INSERT (the commit included) while using under a tenth of their time as CPU."""
    with open(log_path, "rb") as f:
        f.seek(offset)
        lines = [ln.split() for ln in f.read().decode(errors="replace").splitlines()]
    lines = [ln for ln in lines if len(ln) == 4 and ln[0] == "SLOW"]  # (workers' lines may interleave: skipped)
    calls = [(float(wall), float(cpu)) for _, what, wall, cpu in lines if what == "request"]
    waits = [(float(wall), float(cpu)) for _, what, wall, cpu in lines if what == "insert"]
    waited = [w for w, c in waits if c < w / 10]
    worst = max((w for w, _ in calls), default=0.0)
    return (f"{'':34} calls over {slow_ms:.0f} ms: {len(calls)} (slowest {worst:.0f} ms); of them waiting on "
            f"PostgreSQL in the INSERT: {len(waited)} (slowest {max(waited, default=0.0):.0f} ms)")


def rows_after_deadline(portal) -> int:
    """The portal's rows once the requests in flight at wrk's deadline have finished (wrk stopped listening)."""
    from bizproc_ext.models import RobotCall

    time.sleep(1.0)
    return RobotCall.objects.filter(portal=portal).count()


def check_counts(portal, ok_requests: int, connections: int, inline_publish: bool = False,
                 warm: tuple[int, int] = (0, 0)) -> str:
    """Rows recorded, and rows - answers within the calls wrk cut off in flight at its deadline (the server
    finished them, wrk stopped listening): nothing lost, nothing doubled, for the warm-up's calls
    (``warm``: its rows, its 2xx answers) and the measured ones.  The handler publishes nothing now (no
    drainer runs here: every row must still be unpublished); the "before" handler published one task per row."""
    import redis

    from bizproc_ext.models import RobotCall

    warm_rows, warm_ok = warm
    rows = rows_after_deadline(portal) - warm_rows
    unpublished = RobotCall.objects.filter(portal=portal, published_at__isnull=True).count()
    unpublished -= 0 if inline_publish else warm_rows
    queued = redis.Redis.from_url(BROKER_URL).llen("celery") - (warm_rows if inline_publish else 0)
    outbox_ok = queued == rows if inline_publish else (queued == 0 and unpublished == rows)
    ok = outbox_ok and 0 <= rows - ok_requests <= connections and 0 <= warm_rows - warm_ok <= connections
    return (f"{'':34} rows {rows}, unpublished {unpublished}, queued tasks {queued}, 2xx answers seen by wrk "
            f"{ok_requests} (+{rows - ok_requests} cut off at the deadline; warm-up {warm_rows} rows, "
            f"{warm_ok} answers): {'OK' if ok else 'MISMATCH'}")


def profile(n: int) -> None:
    """Queries and Python time per handler call, in-process (Django test client, no HTTP)."""
    import cProfile
    import pstats

    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    portal, token = make_portal()
    body = robot_body(portal, token)
    client = Client()
    path = f"/bizproc/robots/{ROBOT}/"
    for i in range(50):  # warm up (imports, connection)
        client.post(path, body.replace(TOKEN_MARK, f"warm{i}"), content_type="application/x-www-form-urlencoded")
    with CaptureQueriesContext(connection) as ctx:
        client.post(path, body.replace(TOKEN_MARK, "one"), content_type="application/x-www-form-urlencoded")
    print(f"queries per robot call: {len(ctx.captured_queries)}")
    for q in ctx.captured_queries:
        print("   ", q["sql"][:150])
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for i in range(n):
        client.post(path, body.replace(TOKEN_MARK, f"p{i}"), content_type="application/x-www-form-urlencoded")
    prof.disable()
    elapsed = time.perf_counter() - t0
    print(f"{n} calls in-process: {elapsed / n * 1000:.2f} ms each (profiler on)")
    pstats.Stats(prof).sort_stats(os.environ.get("BENCH_PROFILE_SORT", "cumulative")).print_stats(30)


def main() -> int:
    ap = argparse.ArgumentParser(description="robot handler throughput (gunicorn + PostgreSQL + Redis, wrk)")
    ap.add_argument("--workers", type=int, default=5, help="gunicorn sync workers (production default, WEB_CONCURRENCY)")
    ap.add_argument("--worker-class", default="sync", choices=("sync", "gthread"))
    ap.add_argument("--threads", type=int, default=1, help="threads per worker (gthread)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--runs", type=int, default=2, help="alternating no-op / robot-call runs")
    ap.add_argument("--compare", action="store_true",
                    help="also run the handler as it was before the benchmark's changes (bench/before.py)")
    ap.add_argument("--slow-ms", type=float, default=0, metavar="MS",
                    help="log calls slower than MS (bench/wsgi_timed.py) and sum up, per run, where they waited")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="profile N calls in-process instead")
    args = ap.parse_args()

    setup_django()
    reset_state()
    if args.profile:
        profile(args.profile)
        return 0
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install wrk")
    portal, token = make_portal()
    body = robot_body(portal, token)
    prefix, suffix = body.split(TOKEN_MARK)
    tmp = Path(tempfile.mkdtemp(prefix="b24sign-bench-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    get_script = tmp / "get.lua"
    get_script.write_text(LUA_GET)
    shape = dict(worker_class=args.worker_class, threads=args.threads)
    timed = dict(BENCH_WSGI_APP="bench.wsgi_timed:application", BENCH_SLOW_MS=args.slow_ms) if args.slow_ms else {}
    servers = {"robot call": start_gunicorn(port, args.workers, bench_env(**timed), tmp / "gunicorn.log", **shape)}
    if args.compare:
        servers["robot call, before"] = start_gunicorn(
            free_port(), args.workers, bench_env(B24SIGN_BENCH_BEFORE=1), tmp / "gunicorn-before.log", **shape)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; command: {' '.join(sys.argv)}")
    print(f"gunicorn {args.workers} {args.worker_class} workers x {args.threads} threads on {base}; wrk -t1 -c{args.connections} -d{args.duration}s; "
          f"PostgreSQL + Redis local; no Celery worker")
    results = {"noop": [], **{label: [] for label in servers}}
    try:
        for run in range(1, args.runs + 1):
            wrk(f"{base}/bench/noop/", get_script, 3, args.connections)  # warm every worker's connections
            before = cpu_now(servers["robot call"])
            r = wrk(f"{base}/bench/noop/", get_script, args.duration, args.connections)
            results["noop"].append(r)
            print(fmt(f"run {run}: GET plain Django view", r), flush=True)
            print(f"{'':34} " + cpu_per_call(servers["robot call"], before, r["requests"]), flush=True)
            for label, server in servers.items():
                url = server_url(server)
                reset_state()
                portal, token = make_portal()
                prefix, suffix = robot_body(portal, token).split(TOKEN_MARK)
                script = robot_script(tmp / f"robot{run}.lua", prefix, suffix, f"r{run}")
                wrk(f"{url}/bench/noop/", get_script, 2, args.connections)
                # A running server is warm: its workers hold their connections, the portal and the INSERT prepared.
                # The calls of this warm-up are counted apart (a worker's first call: docs/decisions.md).
                warm = robot_script(tmp / f"warm{run}.lua", prefix, suffix, f"w{run}")
                w = wrk(f"{url}/bizproc/robots/{ROBOT}/", warm, 2, args.connections)
                warm_rows = rows_after_deadline(portal)
                slow_from = server.log_path.stat().st_size if args.slow_ms else 0
                before = cpu_now(server)
                load0 = os.getloadavg()[0]
                r = wrk(f"{url}/bizproc/robots/{ROBOT}/", script, args.duration, args.connections)
                results[label].append(r)
                print(fmt(f"run {run}: POST {label}", r), flush=True)
                print(f"{'':34} " + cpu_per_call(server, before, r["requests"])
                      + f"; load average {load0:.1f} before the run", flush=True)
                print(check_counts(portal, r["requests"] - r["non2xx"], args.connections,
                                   inline_publish="before" in label, warm=(warm_rows, w["requests"] - w["non2xx"])),
                      flush=True)
                if args.slow_ms:
                    print(slow_summary(server.log_path, slow_from, args.slow_ms), flush=True)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    for kind, rs in results.items():
        rps = sorted(r["rps"] for r in rs)
        ratio = [r["rps"] / n["rps"] * 100 for r, n in zip(rs, results["noop"])] if kind != "noop" else []
        print(f"{kind:<20}: req/s {' / '.join(f'{x:.0f}' for x in rps)}; "
              f"p99 {' / '.join(format(r['p99'] / 1000, '.1f') for r in rs)} ms"
              + (f"; {' / '.join(f'{x:.0f}' for x in ratio)} % of the plain view in the same run" if ratio else ""))
    reset_state()
    return 0


if __name__ == "__main__":
    sys.exit(main())
