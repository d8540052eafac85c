"""The end-to-end demo behind ``make demo``.

It starts the emulated Bitrix24 cloud and the signNow emulator (threads of this process), then the app
(runserver), a Celery worker and Celery beat as child processes, all on the embedded defaults (SQLite,
filesystem broker, file locks) inside a throwaway directory.  Then it plays one sale:

  install the app into a portal -> connect signNow -> a deal's "Send for e-signature" robot fires ->
  the worker sends the contract -> both signers sign -> the webhook arrives -> the signed PDF lands on
  the deal's timeline -> the workflow gets its answer (bizproc.event.send with the return values).

Scene 2 (demo/scene2.py): a contract made from a signNow template, two roles mapped to the deal's contact
and its manager, the Amount field prefilled from the deal and visible in the signed PDF on the timeline.

Every step is printed with its time.  Exit 0 on success; on failure a message and the tail of the
process logs, exit 1.  Child processes are stopped and the directory removed either way (``--keep``
keeps the directory, to look at the database and logs).
"""
from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from demo import scene2  # noqa: E402
from tests.emulators.bitrix24 import Bitrix24Cloud  # noqa: E402
from tests.emulators.pdf import make_pdf  # noqa: E402
from tests.emulators.signnow import SignNowEmulator  # noqa: E402

CLIENT_ID, CLIENT_SECRET = "local.b24sign.demo", "demo-client-secret"
SIGNNOW_BASIC = base64.b64encode(b"demo-client:demo-secret").decode()
SIGNNOW_OWNER, SIGNNOW_PASSWORD = "sales@acme.test", "demo-password"
SIGNERS = [("Anna", "Buyer", "anna@customer.test"), ("Boris", "Director", "boris@customer.test")]
ROBOT_PROPS = {
    "provider": "default", "document_source": "field", "document_field": "UF_CRM_CONTRACT",
    "signer_contacts": "all", "signing_order": "sequential", "subject": "Please sign: supply contract",
    "message": "Hello! Here is the contract we discussed.", "wait": "Y",
}


class DemoFailed(Exception):
    pass


class Trace:
    def __init__(self):
        self.t0 = time.monotonic()

    def __call__(self, step: str, text: str = "", *more: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {step:<22} {text}", flush=True)
        for line in more:
            print(f"{'':32}{line}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {what}")


class Processes:
    """Child processes, each in its own session so stopping one stops its children too."""

    def __init__(self, workdir: Path, env: dict):
        self.workdir, self.env, self.running = workdir, env, []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")
        proc = subprocess.Popen(list(args), cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.running.append((name, proc, log))
        return proc

    def check_alive(self) -> None:
        for name, proc, _ in self.running:
            if proc.poll() is not None:
                raise DemoFailed(f"{name} exited with code {proc.returncode}")

    def stop(self) -> None:
        for _, proc, _ in self.running:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, proc, log in self.running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()

    def tails(self, lines: int = 25) -> str:
        out = []
        for name, _, _ in self.running:
            text = (self.workdir / f"{name}.log").read_text(errors="replace").splitlines()
            out.append(f"--- {name}.log (last {lines} lines) ---")
            out.extend(text[-lines:])
        return "\n".join(out)


def demo_env(workdir: Path, port: int, cloud: Bitrix24Cloud, signnow: SignNowEmulator) -> dict:
    (workdir / "broker" / "processed").mkdir(parents=True)
    env = {
        **os.environ,
        "B24SIGN_ENV_FILE": "/nonexistent",  # a developer's .env must not point the demo elsewhere
        "DEBUG": "1", "ALLOW_HTTP_PORTALS": "1", "SECURE_SSL_REDIRECT": "0",
        "FETCH_PRIVATE_HOSTS": "127.0.0.1,localhost",
        "APP_BASE_URL": f"http://127.0.0.1:{port}",
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "REDIS_URL": "", "CELERY_BROKER_URL": "filesystem://",
        "CELERY_BROKER_DIR": str(workdir / "broker"),
        "CELERY_BEAT_SCHEDULE_FILENAME": str(workdir / "celerybeat-schedule"),
        "COORDINATION_DIR": str(workdir / "coord"), "MEDIA_ROOT": str(workdir / "media"),
        "B24_CLIENT_ID": CLIENT_ID, "B24_CLIENT_SECRET": CLIENT_SECRET, "B24_OAUTH_URL": cloud.oauth_url,
        "SIGNNOW_API_BASE": signnow.base_url, "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1",
    }
    return env


def connect_signnow(portal_db):
    """What the settings page does when an admin connects signNow: grant, store, subscribe webhooks."""
    from signing.models import ProviderAccount

    account = ProviderAccount(portal=portal_db, provider="signnow", label="signNow", is_default=True)
    account.credentials = account.provider_impl().connect(
        {"basic_token": SIGNNOW_BASIC, "username": SIGNNOW_OWNER, "password": SIGNNOW_PASSWORD})
    account.save()
    account.provider_impl().on_connected(account.webhook_url())
    return account


def play(trace: Trace, procs: Processes, cloud: Bitrix24Cloud, signnow: SignNowEmulator, app_url: str) -> None:
    from b24app.models import Portal
    from bizproc_ext.models import RobotCall
    from signing.models import SignatureRequest

    wait_for("the app to answer /healthz/", lambda: procs.check_alive() or _healthy(app_url), 40)
    trace("app up", f"{app_url}  (runserver + Celery worker + Celery beat; SQLite, filesystem broker)")

    # -- 1. install --------------------------------------------------------------------------------
    emu = cloud.add_portal("acme")
    emu.add_user(2, "maria@acme.test", name="Maria", last_name="Manager")
    query, body = emu.install_request(user_id=1)
    resp = requests.post(f"{app_url}/b24/install/", params=query, data=body, timeout=30)
    if resp.status_code != 200:
        raise DemoFailed(f"install page answered {resp.status_code}: {resp.text[:300]}")
    emu.finish_install()
    trace("install", f"portal {emu.domain} (member_id {emu.member_id[:8]}…) installed by its admin",
          f"robots registered: {', '.join(sorted(emu.robots))}",
          f"events bound: {', '.join(sorted({h['event'] for h in emu.event_handlers}))}",
          f"CRM card: {len(emu.placements)} placements bound (tab, timeline menu, document generator button for "
          f"deals, leads, invoices), triggers {', '.join(sorted(emu.triggers))}",
          f"status fields: {', '.join(sorted(emu.userfields.get('CRM_DEAL', {})))} (deals; leads and invoices too)")

    # -- 2. connect signNow --------------------------------------------------------------------------
    account = connect_signnow(Portal.objects.get(member_id=emu.member_id))
    subs = len(signnow.subscriptions)
    trace("connect signNow", f"account {SIGNNOW_OWNER} connected (password grant), {subs} webhook subscriptions",
          f"callback {account.webhook_url().rsplit('/', 2)[0]}/<secret>/")

    # -- 3. a deal, and the manager's robot ---------------------------------------------------------
    crm = emu.crm
    contacts = [crm.add_contact(first, last, emails=[email]) for first, last, email in SIGNERS]
    pdf = make_pdf(["Supply contract No. 42", "Terms and conditions", "Signatures"], title="Supply contract")
    deal = crm.add_deal("Supply contract with Customer Ltd", contact_ids=contacts,
                        files={"ufCrmContract": ("supply-contract.pdf", pdf)})
    trace("deal", f"DEAL_{deal} with contacts {', '.join(e for _, _, e in SIGNERS)} and a {len(pdf)}-byte PDF")
    wf = emu.start_robot("b24sign_send", document_id=("crm", "CCrmDocumentDeal", f"DEAL_{deal}"),
                         properties=ROBOT_PROPS, user_id=2)
    trace("robot call", f"queue server POST /bizproc/robots/b24sign_send/ -> {wf.response_status} "
          f"{(wf.response_body or '')[:60]}", f"workflow {wf.workflow_id}, use_subscription={wf.use_subscription}")
    if wf.response_status != 200:
        raise DemoFailed("the robot handler did not accept the call")

    # -- 4. the worker sends it -------------------------------------------------------------------------
    req = wait_for("the worker to send the document", lambda: procs.check_alive() or SignatureRequest.objects.filter(
        send_phase="sent").first(), 45)
    call = RobotCall.objects.get(event_token=wf.event_token)
    calls = [f"{c['method']} {c['path']} -> {c['status']}" for c in signnow.calls
             if not c["path"].startswith(("/oauth2", "/api/v2/events", "/user"))]
    invites = [e["to"] for e in signnow.sent_emails if e["kind"] == "invite"]
    trace("provider send", f"signNow document {req.external_id} ({req.document_size} bytes), "
          f"robot call {call.pk} is {call.state}", *calls, f"invite e-mailed to: {', '.join(invites)}",
          *[f"workflow log: {line}" for line in wf.log])

    card = wait_for("the timeline card", lambda: procs.check_alive() or next(iter(emu.activities.values()), None), 30)
    trace("timeline card", _card_line(card), *_card_rows(card))

    # -- 5. the signers sign; signNow posts webhooks -----------------------------------------------------
    before = len(signnow.webhook_deliveries)
    for _, _, email in SIGNERS:
        signnow.sign(req.external_id, email)
        trace("signer signs", email)
    hooks = signnow.webhook_deliveries[before:]
    trace("webhook", f"{len(hooks)} signNow callbacks delivered to the app",
          *[f"{d.get('event')} -> HTTP {d.get('status', d.get('error'))}" for d in hooks])

    # -- 6. finalized: signed PDF on the timeline, the workflow answered -----------------------------
    wait_for("the workflow's answer", lambda: procs.check_alive() or wf.answers, 45)
    req.refresh_from_db()
    comments = crm.comments_for("deal", deal)
    files = [f"{name} ({len(data)} bytes{', a PDF' if data.startswith(b'%PDF-') else ''})"
             for c in comments for name, data in c["files"]]
    trace("timeline", f"{len(comments)} comment on DEAL_{deal}: {comments[0]['comment'] if comments else '-'}",
          *[f"attached: {f}" for f in files])
    history = [f"{e.created_at:%H:%M:%S} {e.kind:<9} {e.from_status or ''}{' -> ' if e.to_status else ''}"
               f"{e.to_status or ''} [{e.source}] {e.message[:70]}" for e in req.events.order_by("created_at", "pk")]
    trace("request history", f"{req.public_id}: {req.status}", *history)
    values = wf.return_values
    trace("bizproc.event.send", f"workflow closed={wf.closed}; return values:",
          *[f"{k} = {v}" for k, v in values.items()], *[f"workflow log: {line}" for line in wf.log[-1:]])
    stats = emu.stats
    trace("Bitrix24 REST", f"{stats.requests} HTTP requests from the app in all (install included), "
          f"{stats.rejected_503} rate-limited; methods, batch commands included:",
          ", ".join(f"{m}×{n}" for m, n in sorted(stats.by_method.items())))
    if len(wf.answers) != 1 or values.get("status") != "completed" or not comments or \
            not comments[0]["files"][0][1].startswith(b"%PDF-"):
        raise DemoFailed(f"unexpected outcome: answers={len(wf.answers)} values={values} comments={len(comments)}")
    if not str(values.get("signed_file_url", "")).startswith("http"):
        raise DemoFailed("no signed file link in the return values")
    link = requests.get(values["signed_file_url"], timeout=10)
    trace("signed copy link", f"GET signed_file_url -> {link.status_code}, {len(link.content)} bytes "
          f"({link.headers.get('Content-Type', '')})")
    _show_card(trace, procs, emu, deal, app_url)
    scene2.play(trace, procs, emu, signnow, wait_for, DemoFailed)
    trace("dashboard", f"{app_url}/app/  (the app's page inside the portal; opened from Bitrix24, not directly)")


def _card_line(card: dict) -> str:
    tag = next(iter((card["layout"]["header"].get("tags") or {}).values()), {})
    buttons = [b["title"] for b in (card["layout"].get("footer") or {}).get("buttons", {}).values()]
    return f"activity {card['id']} \"{card['layout']['header']['title']}\" [{tag.get('title')}] " \
           f"buttons: {', '.join(buttons)} (updates: {card['updates']})"


def _card_rows(card: dict) -> list[str]:
    rows = []
    for block in card["layout"]["body"]["blocks"].values():
        p = block.get("properties") or {}
        if block.get("type") == "withTitle":
            rows.append(f"{p['title']}: {p['block']['properties'].get('value')}")
    return rows


def _show_card(trace, procs, emu, deal: int, app_url: str) -> None:
    """The outcome in the deal card: the timeline card signed, log messages, fields, trigger, notification, the tab."""
    wait_for("the CRM card's outcome", lambda: procs.check_alive() or emu.trigger_runs, 45)
    card = next(iter(emu.activities.values()))
    item = emu.crm.get(2, deal)
    trace("timeline card", _card_line(card), *_card_rows(card),
          *[f"log message: {m['title']} — {m['text']}" for m in emu.log_messages],
          *[f"field {k} = {v}" for k, v in sorted(item.items()) if k.startswith("ufCrm_B24SIGN")],
          *[f"trigger fired: {r['code']} on DEAL_{r['entityId']}" for r in emu.trigger_runs],
          *[f"notification to user {n['user_id']}: {n['message'][:90]}" for n in emu.notifications])
    query, body = emu.app_page_request(2, "CRM_DEAL_DETAIL_TAB", {"ID": str(deal)})
    page = requests.post(f"{app_url}/card/tab/", params=query, data=body, timeout=30)
    main = page.text.split('id="card-tab"', 1)[-1].split(">", 1)[-1].split("</main>")[0]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", main))
    trace("E-signatures tab", f"POST /card/tab/ as the deal's manager (CRM_DEAL_DETAIL_TAB) -> {page.status_code}",
          text.strip()[:300])
    if page.status_code != 200 or "Signed" not in text and "Completed" not in text:
        raise DemoFailed("the E-signatures tab does not show the signed request")


def _healthy(app_url: str) -> bool:
    try:
        return requests.get(f"{app_url}/healthz/", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="app port (default: a free one)")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway directory (DB, logs)")
    args = parser.parse_args(argv)

    trace = Trace()
    workdir = Path(tempfile.mkdtemp(prefix="b24sign-demo-"))
    port = args.port or free_port()
    app_url = f"http://127.0.0.1:{port}"
    cloud = Bitrix24Cloud(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, app_url=app_url).start()
    signnow = SignNowEmulator(basic_token=SIGNNOW_BASIC, users={SIGNNOW_OWNER: SIGNNOW_PASSWORD}).start()
    env = demo_env(workdir, port, cloud, signnow)
    os.environ.update(env)
    trace("emulators", f"Bitrix24 OAuth {cloud.oauth_url}; signNow {signnow.base_url}", f"state in {workdir}")

    procs = Processes(workdir, env)
    py = sys.executable
    celery = str(Path(py).with_name("celery"))
    code = 1
    try:
        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        procs.start("web", py, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload")
        procs.start("worker", celery, "-A", "config", "worker", "--loglevel=INFO", "--pool=threads",
                    "--concurrency=4", "--without-gossip", "--without-mingle", "--without-heartbeat")
        procs.start("beat", celery, "-A", "config", "beat", "--loglevel=INFO")
        play(trace, procs, cloud, signnow, app_url)
        trace("done", f"success in {time.monotonic() - trace.t0:.1f}s")
        code = 0
    except DemoFailed as exc:
        print(f"\nDEMO FAILED: {exc}\n", file=sys.stderr)
        print(procs.tails(), file=sys.stderr)
    except Exception as exc:  # an unexpected error still gets the logs and a clean-up
        print(f"\nDEMO FAILED: {exc.__class__.__name__}: {exc}\n", file=sys.stderr)
        import traceback

        traceback.print_exc()
        print(procs.tails(), file=sys.stderr)
    finally:
        procs.stop()
        signnow.stop()
        cloud.stop()
        if args.keep:
            print(f"(kept {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
