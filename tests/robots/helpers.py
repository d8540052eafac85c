"""Running a robot call end to end in-process: the queue server posts (test client), the worker runs."""
from __future__ import annotations

from bizproc_ext import pipeline
from bizproc_ext.models import RobotCall

DEAL_DOC = ("crm", "CCrmDocumentDeal", "DEAL_{}")


def deal_doc(deal_id: int) -> tuple:
    return ("crm", "CCrmDocumentDeal", f"DEAL_{deal_id}")


def run_worker(max_rounds: int = 5) -> None:
    """Process every queued robot call the way the Celery task would (retries included, no waiting).

    Work the pipeline defers to "after commit" runs too (the test's transaction never commits)."""
    from django.test import TestCase

    for _ in range(max_rounds):
        pending = list(RobotCall.objects.filter(state=RobotCall.QUEUED).values_list("pk", flat=True))
        if not pending:
            return
        for pk in pending:
            with TestCase.captureOnCommitCallbacks(execute=True):
                pipeline.run(pk)


SEND_PROPS = {
    "provider": "default", "document_source": "field", "document_field": "UF_CRM_CONTRACT",
    "signer_contacts": "primary", "signing_order": "sequential", "subject": "Please sign", "wait": "N",
}
