"""Peak memory of a worker process sending a 50 MB PDF to signNow, against the file's size.

    .venv/bin/python bench/memory.py                 # 50 MiB, compared with a 1 KB PDF
    .venv/bin/python bench/memory.py --mb 20

The emulated Bitrix24 portal (serving the PDF from a deal's file field) and the signNow emulator run in
this process; the robot call is recorded here too (install + queue server through Django's test client).
The call is then processed by a fresh child process -- exactly what a Celery worker runs for it,
``bizproc_ext.pipeline.run`` -- whose peak RSS (VmHWM) is read before and after.  The download
streams to a temporary file in 256 KB chunks and the upload streams it from disk (MultipartFile), so the
peak should not grow with the file.

signNow's own documented upload limit is 25 MB (``MAX_PDF_MB``); the child lifts it to 60 for this
measurement only, since the point is the worker's memory, not signNow's limit.
"""
from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CLIENT_ID, CLIENT_SECRET, bench_env, reset_state, setup_django  # noqa: E402

BASIC = base64.b64encode(b"bench:secret").decode()
OWNER, PASSWORD = "owner@acme.test", "pw"
PROPS = {"provider": "default", "document_source": "field", "document_field": "UF_CRM_CONTRACT",
         "signer_contacts": "primary", "signing_order": "sequential", "subject": "Please sign", "wait": "N"}


def big_pdf(size: int) -> bytes:
    from tests.emulators.pdf import make_pdf

    head = make_pdf(["A large contract", "with many scanned pages"])
    pad = size - len(head) - len(b"%%EOF\n")
    # Comment lines after the document, closed by another %%EOF (an incremental-update tail): still a PDF
    # to readers and to both emulators, of the exact size.
    line = b"%" + b"0" * 1022 + b"\n"
    body = line * (pad // len(line))
    return head + body + b"%" * (pad - len(body)) + b"%%EOF\n"


def rss_kb() -> int:
    """Peak RSS of this process (VmHWM: unlike ru_maxrss it is not inherited across fork + exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def child(call_id: int) -> None:
    """The measured process: set up like a worker, then process one robot call."""
    import django

    django.setup()
    from b24app.models import Portal
    from bizproc_ext import pipeline
    from bizproc_ext.models import RobotCall
    from signing.providers.signnow import provider as signnow

    signnow.MAX_PDF_MB = 60
    Portal.objects.count()  # connection up, ORM warmed
    before = rss_kb()
    pipeline.run(call_id)
    peak = rss_kb()
    call = RobotCall.objects.select_related("signature_request").get(pk=call_id)
    req = call.signature_request
    print("JSON " + json.dumps({"before_kb": before, "peak_kb": peak, "state": call.state,
                                "answer": call.answer_state, "error": call.last_error,
                                "sent_bytes": req.document_size if req else 0}))


def measure(size: int, cloud, signnow, portal_emu, env: dict) -> dict:
    from django.test import Client

    from tests.conftest import TestClientTransport

    deal = portal_emu.crm.add_deal(f"Deal {size}", contact_ids=[portal_emu.crm.add_contact(
        "Anna", "Buyer", emails=["anna@customer.test"])], files={"ufCrmContract": ("big.pdf", big_pdf(size))})
    cloud.transport = TestClientTransport(Client())
    wf = portal_emu.start_robot("b24sign_send", document_id=("crm", "CCrmDocumentDeal", f"DEAL_{deal}"),
                                properties=PROPS)
    from bizproc_ext.models import RobotCall

    call_id = RobotCall.objects.get(event_token=wf.event_token).pk
    out = subprocess.run([sys.executable, __file__, "--child", str(call_id)], env=env, capture_output=True,
                         text=True, timeout=600)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("JSON ")), None)
    if line is None:
        raise SystemExit(f"child failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    r = json.loads(line[5:])
    uploaded = [d for d in signnow.documents.values() if d.get("name") == f"Deal {size}"]
    r["size"] = size
    r["provider_got"] = len(uploaded[0]["data"]) if uploaded and "data" in uploaded[0] else None
    r["answered"] = bool(wf.answers)
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description="peak RSS of a worker sending a large PDF")
    ap.add_argument("--mb", type=float, default=50.0, help="PDF size in MiB (default 50, the download limit)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return 0

    from tests.emulators.bitrix24 import Bitrix24Cloud
    from tests.emulators.signnow import SignNowEmulator

    cloud = Bitrix24Cloud(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, app_url="http://127.0.0.1:9").start()
    signnow = SignNowEmulator(basic_token=BASIC, users={OWNER: PASSWORD}).start()
    extra = {"B24_OAUTH_URL": cloud.oauth_url, "SIGNNOW_API_BASE": signnow.base_url, "SIGNNOW_RATE_PER_S": "0",
             "APP_BASE_URL": "http://127.0.0.1:9"}
    try:
        setup_django(**extra)
        reset_state()
        from django.test import Client

        from b24app.models import Portal
        from signing.models import ProviderAccount
        from tests.conftest import install

        emu = cloud.add_portal("big")
        response = install(Client(), emu)
        assert response.status_code == 200, response.content[:300]
        account = ProviderAccount(portal=Portal.objects.get(member_id=emu.member_id), provider="signnow",
                                  is_default=True)
        account.credentials = account.provider_impl().connect(
            {"basic_token": BASIC, "username": OWNER, "password": PASSWORD})
        account.save()
        env = bench_env(**extra)
        rows = [measure(1024, cloud, signnow, emu, env), measure(int(args.mb * 1024 * 1024), cloud, signnow, emu, env)]
    finally:
        signnow.stop()
        cloud.stop()
    for r in rows:
        print(f"PDF {r['size'] / 1048576:8.2f} MiB: worker RSS {r['before_kb'] / 1024:6.1f} MiB before the call, "
              f"peak {r['peak_kb'] / 1024:6.1f} MiB (+{(r['peak_kb'] - r['before_kb']) / 1024:.1f} MiB); "
              f"sent {r['sent_bytes']} bytes; call {r['state']}/{r['answer']} {r['error'] or ''}")
    small, big = rows
    growth = (big["peak_kb"] - small["peak_kb"]) / 1024
    print(f"peak RSS grew {growth:.1f} MiB for a {args.mb:.0f} MiB file ({growth / args.mb * 100:.0f}% of its size)")
    reset_state()
    return 0 if all(r["answer"] in ("sent", "skipped") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
