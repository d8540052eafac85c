"""Evia Sign through API v2 skeleton requests: upload -> create (type=0) -> signatories -> stamps -> send.

Status comes through callbacks (no status endpoint is documented, U-E3).  The completed callback carries the
signed PDF (``CompletedDocumentsAttached``), which the webhook service stores on the request.
"""
from __future__ import annotations

import base64
import logging
import re
from pathlib import Path

from django.conf import settings

from signing import states
from signing.base import (
    CredentialField,
    Provider,
    ProviderError,
    SendResult,
    SendSpec,
    SignedFiles,
    SignerState,
    StatusSnapshot,
    WebhookEvent,
)

from .client import EviaClient, ci_get
from .webhooks import parse_callback

log = logging.getLogger("b24sign.providers.evia")

EMAIL_RE = re.compile(r"^[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\"]+$")
E164_RE = re.compile(r"^\+[1-9]\d{7,14}$")
SIGNATORY_TYPE = {"signer": 1, "approver": 2, "cc": 3}
# spec.auth -> OTP.Type (1 email, 2 SMS, 3 access code, 4 email + SMS); "none" sends IsRequired=false
OTP_TYPE = {"email_otp": 1, "sms": 2, "password": 3}
SMS_TYPES = (2, 4)
ALLOWED_EXT = (".pdf", ".doc", ".docx")  # the upload's 400 message: "Allowed extensions are PDF, DOC, DOCX"
# Evia's request status words (guessed endpoint) -> ours
REQUEST_STATUS = {"draft": states.DRAFT, "sent": states.SENT, "completed": states.COMPLETED,
                  "rejected": states.DECLINED, "declined": states.DECLINED, "cancelled": states.CANCELLED,
                  "canceled": states.CANCELLED, "expired": states.EXPIRED}
SIGNATORY_STATUS = {"completed": "signed", "signed": "signed", "approved": "signed", "rejected": "declined",
                    "declined": "declined", "cancelled": "cancelled"}


def normalise_phone(phone: str) -> str:
    """``+1 (415) 555-0100`` -> ``+14155550100``; numbers without ``+`` stay invalid (no country guessing)."""
    return re.sub(r"[\s().\-]", "", phone or "")


def guessed_endpoints_enabled() -> bool:
    """U-E3 feature flag: the third-party guessed status/download/cancel endpoints."""
    return getattr(settings, "EVIA_GUESSED_ENDPOINTS", True)


class EviaProvider(Provider):
    code = "evia"
    label = "Evia Sign"
    credential_fields = [
        CredentialField("client_id", "Application ID (client_id)", secret=False),
        CredentialField("client_secret", "Application key (client_secret)"),
        CredentialField("code", "Authorization code", required=False,
                        help="From Evia's authorize page; exchanged once for tokens."),
        CredentialField("refresh_token", "Refresh token", required=False,
                        help="Instead of a code, an existing refresh token."),
    ]
    capabilities = frozenset()  # cancel/status exist only as guessed endpoints (U-E3)
    supported_auth = frozenset({"none", "email_otp", "sms", "password"})

    def client(self) -> EviaClient:
        return EviaClient(self.account)

    # -- account ---------------------------------------------------------------------------------------
    def connect(self, credentials: dict) -> dict:
        client_id = str(credentials.get("client_id") or "").strip()
        client_secret = str(credentials.get("client_secret") or "").strip()
        code = str(credentials.get("code") or "").strip()
        refresh_token = str(credentials.get("refresh_token") or "").strip()
        if not client_id or not client_secret:
            raise ProviderError("Evia Sign: the application ID and key are required", permanent=True, code="input")
        if not code and not refresh_token:
            raise ProviderError("Evia Sign: connect with an authorization code (or an existing refresh token)",
                                permanent=True, code="input")
        client = EviaClient(self.account, credentials={})
        if code:
            tokens = client.exchange_code(client_id, client_secret, code)
        else:
            tokens = client.refresh(client_id, client_secret, refresh_token)
        return {"client_id": client_id, "client_secret": client_secret, **tokens}

    def test_connection(self) -> str:
        client = self.client()
        try:
            hooks = client.list_webhooks()  # the cheapest authenticated read we know (listing is unconfirmed)
            return f"Connected to Evia Sign ({len(hooks)} account webhook(s) registered)."
        except ProviderError as exc:
            if exc.code not in ("404", "405"):
                raise
        # No read-only call is documented: prove the credentials by rotating the token.
        client._refresh_once()
        return "Connected to Evia Sign (token refreshed; Evia documents no read-only call to test with)."

    def on_connected(self, webhook_url: str) -> None:
        """Best effort: the account-level webhook (U-E2).  Per-request CallbackUrl is what we rely on."""
        client = self.client()
        try:
            try:
                if any(ci_get(h, "url") == webhook_url for h in client.list_webhooks()):
                    return
            except ProviderError:
                pass
            client.create_webhook(webhook_url, ["request.sent", "request.completed"])
        except ProviderError as exc:
            log.warning("Evia account webhook not registered for account %s: %s", self.account.pk, exc.message)

    # -- lifecycle -------------------------------------------------------------------------------------
    def validate(self, spec: SendSpec) -> None:
        def fail(message: str):
            raise ProviderError(f"Evia Sign: {message}", permanent=True, code="input")

        if spec.auth not in self.supported_auth:
            fail(f"signer authentication {spec.auth!r} is not supported")
        if not spec.signers:
            fail("add at least one signer")
        if not any((s.role or "signer") == "signer" for s in spec.signers):
            fail("at least one person must have the signer role (approvers and copies cannot sign)")
        seen: set[str] = set()
        for s in spec.signers:
            if (s.role or "signer") not in SIGNATORY_TYPE:
                fail(f"unknown role {s.role!r} for {s.email}")
            if not EMAIL_RE.match(s.email or ""):
                fail(f"{s.email or '(empty)'} is not a valid email address")
            if s.email.lower() in seen:
                fail(f"{s.email} is listed twice")
            seen.add(s.email.lower())
        for email in spec.cc:
            if not EMAIL_RE.match(email or ""):
                fail(f"{email or '(empty)'} is not a valid email address (copy recipient)")
            if email.lower() in seen:
                fail(f"{email} is listed twice")
            seen.add(email.lower())
        otp_type = self._otp_type(spec)
        if otp_type in SMS_TYPES:
            for s in spec.signers:
                if s.role != "cc" and not E164_RE.match(normalise_phone(s.phone)):
                    fail(f"SMS verification needs a mobile number for {s.email} "
                         "(international format, e.g. +14155550100)")
        if otp_type == 3 and not (spec.auth_secret or "").strip():
            fail("access-code verification needs a code")
        if spec.document.size <= 0:
            fail("the document is empty")
        if not (spec.title or spec.document.name or "").strip():
            fail("the request needs a title")

    def send(self, spec: SendSpec) -> SendResult:
        """Resumable: each foreign id is checkpointed the moment we have it; finished steps are skipped."""
        self.validate(spec)
        client = self.client()
        state = {k: v for k, v in (spec.resume or {}).items()}
        state.setdefault("signatories", {})
        state.setdefault("stamps", {})

        def save(**changes):
            state.update(changes)
            spec.checkpoint(dict(state))

        if not state.get("document_token"):
            save(document_token=client.upload(self._file_name(spec), Path(spec.document.path),
                                              spec.document.content_type or "application/pdf"))
        if not state.get("request_id"):
            save(request_id=client.create_request({
                "Title": (spec.title or spec.document.name)[:250],
                "Message": spec.message or spec.subject or f"Please sign: {spec.title or spec.document.name}",
                "Documents": [state["document_token"]],
                "AuditDetails": {"AuthorType": 1, "AuthorIPAddress": "", "Device": "b24sign"},
                "CallbackUrl": spec.callback_url,
                "CompletedDocumentsAttached": True,
            }))
        rid = state["request_id"]

        people = self._signatories(spec)
        for body in people:  # all signatories first, then stamps (§6.7 propagation delay)
            key = body["Email"].lower()
            if key not in state["signatories"]:
                sid = self._add_signatory(client, rid, body, resumed=bool(spec.resume))
                save(signatories={**state["signatories"], key: sid})
        stamps = spec.options.get("evia_stamps") or {}
        signer_no = 0
        for body in people:
            if body["SignatoryType"] != 1:
                continue
            signer_no += 1
            key = body["Email"].lower()
            sid = state["signatories"][key]
            wanted = stamps.get(body["Email"]) or stamps.get(str(signer_no)) or \
                [{"Identifier": f"signature{signer_no}", "Type": "signature"}]
            for stamp in wanted:
                done = state["stamps"].get(sid, [])
                if stamp["Identifier"] in done:
                    continue
                client.add_stamp(rid, sid, {"Identifier": stamp["Identifier"], "Type": stamp.get("Type", "signature")})
                save(stamps={**state["stamps"], sid: [*done, stamp["Identifier"]]})

        if not state.get("sent"):
            resumed = bool(state.get("send_started"))
            if resumed and self._already_sent(client, rid):
                save(sent=True)
            else:
                save(send_started=True)
                try:
                    client.send_request(rid)
                except ProviderError as exc:
                    # A replay after a crash mid-send: Evia refuses a second send of the same request.
                    if not (resumed and exc.code == "400" and "already" in exc.message.lower()):
                        raise
                save(sent=True)

        signers = [SignerState(email=p["Email"], status="pending", name=p["Name"],
                               external_id=state["signatories"].get(p["Email"].lower(), ""))
                   for p in people if p["SignatoryType"] != 3]
        return SendResult(external_id=rid, signers=signers, raw={
            "document_token": state["document_token"], "request_id": rid, "signatories": state["signatories"]})

    def status(self, request) -> StatusSnapshot:
        if not request.external_id:
            raise ProviderError("Evia Sign: the request was never created at Evia", permanent=True, code="input")
        data = self._guessed(lambda c: c.get_request(request.external_id), "report status")
        word = str(ci_get(data, "status", default="") or "").lower()
        people = ci_get(data, "signatories", default=[]) or []
        signers = []
        for p in people:
            if not isinstance(p, dict) or ci_get(p, "signatoryType") == 3:
                continue
            signers.append(SignerState(
                email=str(ci_get(p, "email", default="")), name=str(ci_get(p, "name", default="") or ""),
                external_id=str(ci_get(p, "signatoryId", default="") or ""),
                status=SIGNATORY_STATUS.get(str(ci_get(p, "status", default="")).lower(), "pending"),
                signed_at=str(ci_get(p, "completedAt", default="") or "")))
        status = REQUEST_STATUS.get(word)
        if status is None:
            log.warning("Evia request %s: unknown status %r, keeping %s", request.external_id, word, request.status)
            status = request.status
        elif status == states.SENT and any(s.status == "signed" for s in signers):
            status = states.PARTIALLY_SIGNED
        return StatusSnapshot(status=status, signers=signers, raw=data if isinstance(data, dict) else {})

    def remind(self, request) -> None:
        raise ProviderError("Evia Sign's API has no reminder call; reminders follow the Evia account's settings "
                            "(Settings → Reminders & Expiration)", permanent=True, code="unsupported")

    def cancel(self, request, reason: str = "") -> None:
        self._guessed(lambda c: c.cancel_request(request.external_id, reason), "cancel a request")

    def signed_document(self, request) -> SignedFiles:
        stored = _stored_files(request)
        if stored:
            return stored
        docs = self._guessed(lambda c: c.list_documents(request.external_id), "download the signed document")
        client = self.client()
        signed = audit = None
        for d in docs:
            name = str(ci_get(d, "documentName", "name", default="") or "")
            url = ci_get(d, "downloadUrl", "url")
            if not url:
                continue
            if "audit" in name.lower():
                audit = audit or (name, url)
            elif signed is None:
                signed = (name or "signed.pdf", url)
        if signed is None:
            raise ProviderError("Evia Sign: no signed document is available yet", code="not_ready")
        audit_bytes = client.download(audit[1]) if audit else None
        return SignedFiles(pdf=client.download(signed[1]), pdf_name=signed[0], audit=audit_bytes,
                           audit_name=audit[0] if audit else "")

    # -- callbacks -------------------------------------------------------------------------------------
    def parse_webhook(self, body: bytes, headers: dict) -> list[WebhookEvent]:
        return parse_callback(body)

    # -- helpers ---------------------------------------------------------------------------------------
    @staticmethod
    def _otp_type(spec: SendSpec) -> int | None:
        override = spec.options.get("evia_otp_type")
        if override not in (None, ""):
            try:
                value = int(override)
            except (TypeError, ValueError):
                value = 0
            if value not in (1, 2, 3, 4):
                raise ProviderError(f"Evia Sign: OTP type {override!r} must be 1, 2, 3 or 4", permanent=True,
                                    code="input")
            return value
        return OTP_TYPE.get(spec.auth)

    def _signatories(self, spec: SendSpec) -> list[dict]:
        """The add-signatory bodies, with exactly the seed's fields."""
        otp_type = self._otp_type(spec)
        mode = spec.options.get("signing_order")
        actors = [s for s in spec.signers]
        if mode == "parallel":
            orders = [1] * len(actors)
        elif mode == "sequential" and len({s.order for s in actors}) <= 1:
            orders = list(range(1, len(actors) + 1))
        else:
            orders = [max(1, int(s.order or 1)) for s in actors]
        private = spec.options.get("private_messages") or {}
        out = []
        for s, order in zip(actors, orders):
            role = s.role or "signer"
            out.append(self._body(s.email, s.name, order, SIGNATORY_TYPE[role],
                                  otp_type if role != "cc" else None, normalise_phone(s.phone), spec.auth_secret,
                                  str(private.get(s.email, "") or "")))
        last = max(orders) if orders else 1
        for email in spec.cc:
            out.append(self._body(email, "", last, 3, None, "", "", ""))
        return out

    @staticmethod
    def _body(email, name, order, signatory_type, otp_type, phone, secret, private_message) -> dict:
        otp = {"IsRequired": False, "AccessCode": "", "Type": 1, "MobileNumber": ""}
        if otp_type:
            otp = {"IsRequired": True, "AccessCode": secret if otp_type == 3 else "", "Type": otp_type,
                   "MobileNumber": phone if otp_type in SMS_TYPES else ""}
        # The name the audit trail shows: the CRM's, else the whole address (never its local part: "john").
        return {"Email": email, "Name": ((name or "").strip() or email)[:200], "Order": order,
                "PrivateMessage": private_message, "SignatoryType": signatory_type, "OTP": otp}

    @staticmethod
    def _file_name(spec: SendSpec) -> str:
        name = spec.document.name or "document.pdf"
        if not name.lower().endswith(ALLOWED_EXT):
            name += ".pdf"
        return name

    def _add_signatory(self, client: EviaClient, rid: str, body: dict, resumed: bool = False) -> str:
        """Add one person.  Evia documents no refusal of the same email twice, so after a crash between its
        answer and our checkpoint we look the person up first (the guessed request endpoint) rather than
        count on an error; without that endpoint a resumed send may add them again."""
        if resumed and guessed_endpoints_enabled():
            try:
                people = ci_get(client.get_request(rid), "signatories", default=[]) or []
            except ProviderError:
                people = []
            for p in people:
                if str(ci_get(p, "email", default="")).lower() == body["Email"].lower():
                    return str(ci_get(p, "signatoryId"))
        return client.add_signatory(rid, body)

    def _already_sent(self, client: EviaClient, rid: str) -> bool:
        """After a crash between "send started" and "sent": did Evia get it?  Asks the guessed status
        endpoint; without it we send again and treat Evia's "already sent" refusal as success."""
        if not guessed_endpoints_enabled():
            return False
        try:
            return str(ci_get(client.get_request(rid), "status", default="draft")).lower() != "draft"
        except ProviderError as exc:
            if exc.permanent:
                return False
            raise

    def _guessed(self, call, what: str):
        """Run a call on an undocumented endpoint (U-E3) and explain clearly when it is not there."""
        explain = (f"Evia Sign's API has no documented way to {what}; Evia reports progress only through "
                   "callbacks (the request is updated when Evia calls back)")
        if not guessed_endpoints_enabled():
            raise ProviderError(f"{explain}.", permanent=True, code="unsupported")
        try:
            return call(self.client())
        except ProviderError as exc:
            if exc.code in ("404", "405", "501") and "request id not found" not in exc.message.lower():
                raise ProviderError(f"{explain} (the guessed endpoint answered HTTP {exc.code}).", permanent=True,
                                    code="unsupported") from exc
            raise


def _stored_files(request) -> SignedFiles | None:
    """The copy the completed callback delivered, as the webhook service stored it on the request.

    Read from ``provider_state``: ``signed_pdf_path`` (absolute, or relative to MEDIA_ROOT) or
    ``signed_pdf_b64``, with ``signed_pdf_name``; the audit trail likewise (``audit_pdf_*``).
    """
    st = request.provider_state or {}
    pdf = _load(st, "signed_pdf")
    if pdf is None:
        return None
    return SignedFiles(pdf=pdf, pdf_name=st.get("signed_pdf_name") or f"{request.title or 'signed'}.pdf",
                       audit=_load(st, "audit_pdf"), audit_name=st.get("audit_pdf_name") or "")


def _load(state: dict, prefix: str) -> bytes | None:
    path = state.get(f"{prefix}_path")
    if path:
        p = Path(path)
        if not p.is_absolute():
            p = Path(settings.MEDIA_ROOT) / p
        if p.is_file():
            return p.read_bytes()
    b64 = state.get(f"{prefix}_b64")
    if b64:
        try:
            return base64.b64decode(b64)
        except ValueError:
            return None
    return None
