"""REST requests per signature request, with and without the CRM card (tab, timeline card, fields, trigger,
notification), counted at the emulated Bitrix24.

    .venv/bin/python bench/crm_card.py --requests 20

In-process: Celery eager, the Django test client posts the install page and the queue server's robot
calls; the in-memory provider signs.  Each request has two signers and goes draft → sent →
partially_signed → completed (two signer events, one outcome), then is finalized (signed PDF on the
timeline, the waiting workflow answered).  "without" disconnects the CRM card's receivers; the difference
is what the card costs.  Counted: every HTTP request the portal received (a batch counts 1), and how many
of them were the card's batches.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CLIENT_ID, CLIENT_SECRET, reset_state, setup_django  # noqa: E402

PROPS = {"provider": "default", "document_source": "field", "document_field": "UF_CRM_CONTRACT",
         "signer_contacts": "all", "signing_order": "sequential", "subject": "Please sign", "wait": "Y"}


def run(n: int, with_card: bool) -> dict:
    from django.conf import settings
    from django.test import Client

    from b24app import signals as platform
    from bizproc_ext import pipeline
    from bizproc_ext.models import RobotCall
    from crmcard import receivers
    from signing import signals as signing
    from signing.models import ProviderAccount, SignatureRequest
    from signing.tasks import refresh_request_status
    from tests.emulators.bitrix24 import Bitrix24Cloud
    from tests.emulators.pdf import make_pdf
    from tests.support import memory_provider as mp

    reset_state()
    mp.SERVICE.__init__()
    hooks = [(signing.request_changed, "crmcard.card_on_change"), (signing.signers_changed, "crmcard.card_on_signers"),
             (signing.request_finished, "crmcard.card_on_finish"), (platform.app_installed, "crmcard.setup_on_install")]
    if not with_card:
        for sig, uid in hooks:
            sig.disconnect(dispatch_uid=uid)
    cloud = Bitrix24Cloud(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, app_url=settings.APP_BASE_URL).start()
    settings.B24_OAUTH_URL = cloud.oauth_url
    client = Client()
    from tests.conftest import TestClientTransport

    cloud.transport = TestClientTransport(client)  # the queue server posts in-process
    try:
        emu = cloud.add_portal("card", rate=(250, 50))
        query, body = emu.install_request()
        assert client.post(f"/b24/install/?{urlencode(query)}", body).status_code == 200
        emu.finish_install()
        portal = emu.member_id
        from b24app.models import Portal

        db_portal = Portal.objects.get(member_id=portal)
        ProviderAccount.objects.create(portal=db_portal, provider="memory", is_default=True)
        deals = []
        for i in range(n):
            a = emu.crm.add_contact("Anna", f"Buyer{i}", emails=[f"anna{i}@customer.test"])
            b = emu.crm.add_contact("Boris", f"Second{i}", emails=[f"boris{i}@customer.test"])
            deals.append(emu.crm.add_deal(f"Deal {i}", contact_ids=[a, b], files={
                "ufCrmContract": ("contract.pdf", make_pdf([f"Contract {i}"]))}))
        setup_requests = emu.stats.requests
        before = Counter(emu.stats.by_method)
        for deal in deals:
            emu.start_robot("b24sign_send", document_id=("crm", "CCrmDocumentDeal", f"DEAL_{deal}"), properties=PROPS)
        for pk in RobotCall.objects.filter(state=RobotCall.QUEUED).values_list("pk", flat=True):
            pipeline.run(pk)
        for req in SignatureRequest.objects.all():
            for signer in req.signers.all():
                mp.SERVICE.sign(req.external_id, signer.email)
                refresh_request_status.apply(args=[req.pk, "webhook"])
        total = emu.stats.requests - setup_requests
        methods = Counter(emu.stats.by_method) - before
        assert SignatureRequest.objects.filter(status="completed").count() == n
        return {"requests": total, "per_request": total / n, "methods": methods,
                "card_batches": sum(r.card.card_updates for r in SignatureRequest.objects.all()) if with_card else 0,
                "triggers": len(emu.trigger_runs), "notifications": emu.notify_sends, "setup": setup_requests}
    finally:
        cloud.stop()
        if not with_card:
            for sig, uid in hooks:
                sig.connect(getattr(receivers, uid.split(".")[1]), dispatch_uid=uid)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    setup_django(CELERY_TASK_ALWAYS_EAGER="1")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    without = run(args.requests, with_card=False)
    with_card = run(args.requests, with_card=True)
    print(f"signature requests: {args.requests} (2 signers each; sent -> partially signed -> completed)")
    for name, r in (("without the CRM card", without), ("with the CRM card", with_card)):
        print(f"{name:22s}: {r['requests']:5d} REST requests, {r['per_request']:.2f} per signature request "
              f"(install/setup: {r['setup']})")
    extra = with_card["per_request"] - without["per_request"]
    print(f"the CRM card costs {extra:.2f} REST requests per signature request "
          f"(card add/update batches: {with_card['card_batches']}, triggers fired: {with_card['triggers']}, "
          f"notifications: {with_card['notifications']})")
    card_methods = {m: c for m, c in with_card["methods"].items() if m not in without["methods"] or
                    c != without["methods"][m]}
    print("methods the card adds (commands, inside batches):", dict(sorted(card_methods.items())))


if __name__ == "__main__":
    main()
