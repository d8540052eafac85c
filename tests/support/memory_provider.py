"""An in-memory e-signature provider: proves the robot pipeline without any external service.

It keeps the full Provider contract (validation, resumable send, status, remind, cancel, signed copy),
and records every call so tests can assert "sent exactly once".  Registered for a test through
``settings.SIGNING_EXTRA_PROVIDERS``.
"""
from __future__ import annotations

import itertools
import threading

from signing import states
from signing.base import Provider, ProviderError, SendResult, SendSpec, SignedFiles, SignerState, StatusSnapshot
from tests.emulators.pdf import make_pdf

PATH = "tests.support.memory_provider.MemoryProvider"


class MemoryService:
    """The "remote" side: documents and who signed them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.documents: dict[str, dict] = {}
        self.sends = 0
        self.fail_sends = 0       # next N sends fail with a transient error
        self.fail_permanently = ""

    def sign(self, doc_id: str, email: str) -> None:
        with self.lock:
            self.documents[doc_id]["signers"][email] = "signed"

    def decline(self, doc_id: str, email: str) -> None:
        with self.lock:
            self.documents[doc_id]["signers"][email] = "declined"


SERVICE = MemoryService()


class MemoryProvider(Provider):
    code = "memory"
    label = "In-memory test provider"
    capabilities = frozenset({"remind", "cancel"})
    supported_auth = frozenset({"none", "password"})

    def test_connection(self) -> str:
        return "ok"

    def validate(self, spec: SendSpec) -> None:
        if spec.auth not in self.supported_auth:
            raise ProviderError(f"{self.label} does not support {spec.auth} authentication", permanent=True)

    def send(self, spec: SendSpec) -> SendResult:
        if SERVICE.fail_permanently:
            raise ProviderError(SERVICE.fail_permanently, permanent=True, code="rejected")
        if SERVICE.fail_sends:
            SERVICE.fail_sends -= 1
            raise ProviderError("memory provider is temporarily down", code="503")
        if spec.resume.get("doc_id"):
            doc_id = spec.resume["doc_id"]
        else:
            with SERVICE.lock:
                doc_id = f"mem-{next(SERVICE.ids)}"
                SERVICE.sends += 1
                SERVICE.documents[doc_id] = {
                    "title": spec.title, "bytes": spec.document.path.read_bytes(), "status": "sent",
                    "signers": {s.email: "pending" for s in spec.signers}, "reminders": 0, "request_id": spec.request_id}
            spec.checkpoint({"doc_id": doc_id})
        return SendResult(external_id=doc_id, signers=[SignerState(s.email, "pending") for s in spec.signers])

    def status(self, request) -> StatusSnapshot:
        doc = SERVICE.documents[request.external_id]
        signers = [SignerState(email, st) for email, st in doc["signers"].items()]
        if doc["status"] == "cancelled":
            status = states.CANCELLED
        elif any(st == "declined" for st in doc["signers"].values()):
            status = states.DECLINED
        elif all(st == "signed" for st in doc["signers"].values()):
            status = states.COMPLETED
        elif any(st == "signed" for st in doc["signers"].values()):
            status = states.PARTIALLY_SIGNED
        else:
            status = states.SENT
        return StatusSnapshot(status=status, signers=signers, reason="declined by a signer"
                              if status == states.DECLINED else "")

    def remind(self, request) -> None:
        SERVICE.documents[request.external_id]["reminders"] += 1

    def cancel(self, request, reason: str = "") -> None:
        SERVICE.documents[request.external_id]["status"] = "cancelled"

    def signed_document(self, request) -> SignedFiles:
        doc = SERVICE.documents[request.external_id]
        return SignedFiles(pdf=make_pdf([f"{doc['title']} (signed)", "Signatures: " + ", ".join(doc["signers"])]),
                           pdf_name="signed.pdf", audit=make_pdf(["Audit trail"]), audit_name="audit.pdf")
