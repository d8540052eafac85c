"""signNow (https://www.signnow.com): upload a PDF, invite signers, follow the document to its signed copy.

Send path (spec §1.3/§1.5): ``POST /document`` → (role-based only: ``PUT /document/{id}`` signature fields,
one role per signer) → ``POST /document/{id}/invite``.  One signer with no auth, expiry or reminder needs
gets a freeform invite (``to`` is a string); everything else a role-based field invite (``to[]``).

``send`` is resumable (see :class:`signing.base.SendSpec`): ``document_id`` is saved right after the
upload, ``invite_started`` right before the invite call; a retry that finds ``invite_started`` looks at the
document first and never invites twice.

Unconfirmed readings (spec §7) and what we do:
U-S1 HMAC header encoding → accept hex or base64, else our registered header (webhooks.py);
U-S2 ``with_history`` → ``1``, once more with ``yes`` if the PDF did not grow;
U-S3 ``reminder`` → the object form, once more with integer days on 65536;
U-S4 ``expiration_days`` → 3–180 on invite, ≤30 when replacing a signer;
U-S5 subscription list/delete auth → Bearer, then Basic on 401/403;
U-S6 ``document.fieldinvite.signed`` → a trigger only: the status is always re-read.
"""
from __future__ import annotations

import json
import logging
import math
import re
import secrets
import time
from datetime import datetime, timezone

from signing import states
from signing.base import (CredentialField, Provider, ProviderError, SendResult, SendSpec, SignedFiles, SignerState,
                          StatusSnapshot, WebhookEvent)

from . import webhooks
from .client import SignNowClient, basic_auth

log = logging.getLogger("b24sign.providers.signnow")

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")
EXPIRY_RANGE = (3, 180)
REPLACE_MAX_EXPIRY = 30
MAX_PDF_MB = 25
EMAIL2_BATCH = 5
EVENTS = ("user.document.complete", "user.document.fieldinvite.decline", "user.document.fieldinvite.signed",
          "user.document.freeform.signed")
DONE = {"fulfilled", "skipped", "signed", "completed", "done"}
OPEN = {"created", "pending", "sent", "waiting"}
GONE = {"cancelled", "canceled", "deleted"}


class SignNowProvider(Provider):
    code = "signnow"
    label = "signNow"
    credential_fields = [
        CredentialField("basic_token", "Basic authorization token",
                        help="API dashboard → your app → Basic Authorization token"),
        CredentialField("username", "signNow login email", secret=False,
                        help="Invites are sent from this address; it must own the documents"),
        CredentialField("password", "signNow password"),
    ]
    capabilities = frozenset({"remind", "cancel", "replace_signer", "audit_trail"})
    supported_auth = frozenset({"none", "password", "sms"})

    def __init__(self, account):
        super().__init__(account)
        self.client = SignNowClient(account)

    # -- account -------------------------------------------------------------------------------------
    def connect(self, credentials: dict) -> dict:
        creds = {k: (v.strip() if isinstance(v, str) else v) for k, v in credentials.items()}
        for f in self.credential_fields:
            if f.required and not creds.get(f.name):
                raise ProviderError(f"signNow: {f.label} is required", permanent=True, code="input")
        client = SignNowClient(self.account, credentials=creds)
        creds.update(client.password_grant(creds))
        user = client.json("GET", "/user")
        creds["user_id"] = str(user.get("id") or "")
        creds["sender_email"] = user.get("primary_email") or creds["username"]
        return creds

    def test_connection(self) -> str:
        user = self.client.json("GET", "/user")
        creds = self.account.credentials or {}
        days = max(0, int((float(creds.get("expires_at") or 0) - time.time()) // 86400))
        return f"Connected to signNow as {user.get('primary_email') or creds.get('username')} " \
               f"(token valid for {days} more day{'s' if days != 1 else ''})"

    def on_connected(self, webhook_url: str) -> None:
        """Subscribe the account's user to the events we act on; callbacks carry our secret and header."""
        creds = dict(self.account.credentials or {})
        user_id = creds.get("user_id") or str(self.client.json("GET", "/user").get("id") or "")
        creds.update(user_id=user_id, webhook_hmac_secret=secrets.token_urlsafe(32),
                     webhook_header_token=secrets.token_urlsafe(24))
        # Stored before subscribing, so the first callback can already be verified.
        self.account.credentials = creds
        self.account.save(update_fields=["credentials", "updated_at"])
        for sub in self._subscriptions():
            attrs = sub.get("json_attributes") or {}
            if attrs.get("callback_url") == webhook_url and sub.get("id"):
                self._subscription_call("DELETE", f"/api/v2/events/{sub['id']}")
        for event in EVENTS:
            self.client.json("POST", "/api/v2/events", {
                "event": event, "entity_id": user_id, "action": "callback",
                "secret_key": creds["webhook_hmac_secret"], "delete_access_token": True,
                "attributes": {"callback": webhook_url, "use_tls_12": True, "docid_queryparam": False,
                               "delete_access_token": True, "secret_key": creds["webhook_hmac_secret"],
                               "headers": {webhooks.TOKEN_HEADER: creds["webhook_header_token"]}},
            })

    def _subscriptions(self) -> list[dict]:
        data = self._subscription_call("GET", "/api/v2/events")
        return [s for s in (data.get("data") or []) if isinstance(s, dict)]

    def _subscription_call(self, method: str, path: str) -> dict:
        """U-S5: the SDK calls these with the app's Basic token, the OAS with Bearer; try Bearer first."""
        try:
            return self.client.json(method, path)
        except ProviderError as exc:
            if exc.code not in ("401", "403", "1537", "invalid_token"):
                raise
        return self.client.json(method, path, auth=False, headers=basic_auth(self.account.credentials or {}))

    # -- validation ------------------------------------------------------------------------------------
    def validate(self, spec: SendSpec) -> None:
        def fail(message: str):
            raise ProviderError(f"signNow: {message}", permanent=True, code="input")

        signers = _signers(spec)
        if not signers:
            fail("at least one signer is required")
        for s in spec.signers:
            if not EMAIL_RE.match(s.email or "") or len(s.email) > 150:
                fail(f"{s.email or '(empty)'} is not a valid email address")
        for e in spec.cc:
            if not EMAIL_RE.match(e or ""):
                fail(f"CC {e or '(empty)'} is not a valid email address")
        emails = [s.email.lower() for s in signers]
        if len(set(emails)) != len(emails):
            fail("the same email appears twice among the signers")
        if spec.auth not in self.supported_auth:
            fail(f"authentication '{spec.auth}' is not available with signNow (use none, password or sms)")
        if spec.auth == "password" and not spec.auth_secret:
            fail("password authentication needs a password")
        if spec.auth == "sms":
            for s in signers:
                if not PHONE_RE.match((s.phone or "").replace(" ", "")):
                    fail(f"SMS authentication needs a phone number in +E.164 form for {s.email}")
        lo, hi = EXPIRY_RANGE
        if spec.expiry_days is not None and not lo <= spec.expiry_days <= hi:
            fail(f"expiry must be between {lo} and {hi} days (got {spec.expiry_days})")
        if spec.reminder_days is not None:
            if not 1 <= spec.reminder_days <= 179:
                fail(f"the reminder must be between 1 and 179 days (got {spec.reminder_days})")
            if spec.reminder_days >= (spec.expiry_days or 30):
                fail("the reminder must come before the invite expires")
        size_mb = (spec.document.size or 0) / (1024 * 1024)
        if size_mb > MAX_PDF_MB:
            fail(f"the document is {size_mb:.1f} MB; the limit is {MAX_PDF_MB} MB")
        creds = self.account.credentials or {}
        if not creds.get("access_token") and not creds.get("password"):
            fail("the account is not connected; reconnect it in b24sign's settings")

    # -- send ------------------------------------------------------------------------------------------
    def send(self, spec: SendSpec) -> SendResult:
        state = dict(spec.resume or {})

        def save(**changes):
            state.update(changes)
            spec.checkpoint(dict(state))

        if not state.get("document_id"):
            fields = {"name": spec.title[:200]} if spec.title else None
            uploaded = self.client.upload(spec.document.path, spec.document.name or "document.pdf", fields=fields,
                                          extract=bool(spec.options.get("text_tags")))
            if not uploaded.get("id"):
                raise ProviderError("signNow: the upload returned no document id", code="bad_response")
            save(document_id=str(uploaded["id"]))
        doc_id = state["document_id"]
        doc = self._document(doc_id)
        if "page_count" not in state:
            save(page_count=_int(doc.get("page_count"), 0))

        if state.get("invite_started") and _has_invite(doc):
            log.info("signNow document %s already has an invite: not inviting again", doc_id)
        else:
            mode = state.get("mode") or self._mode(spec, doc)
            if mode == "field" and not doc.get("roles"):
                self._add_signature_fields(doc_id, spec, _int(doc.get("page_count"), 1))
                doc = self._document(doc_id)
            save(mode=mode, invite_started=True)
            if mode == "freeform":
                answer = self._invite_freeform(doc_id, spec)
                save(freeform_invite_ids=[answer.get("id")] if answer.get("id") else [])
            else:
                self._invite_fields(doc_id, spec, doc)
            doc = self._document(doc_id)
        save(invite_sent=True, mode=state.get("mode") or _detect_mode(doc))
        return SendResult(external_id=doc_id, signers=self._signer_states(doc, state),
                          raw={"document_id": doc_id, "mode": state["mode"]})

    def _mode(self, spec: SendSpec, doc: dict) -> str:
        simple = (len(_signers(spec)) == 1 and not doc.get("roles") and not doc.get("fields")
                  and spec.auth == "none" and spec.expiry_days is None and spec.reminder_days is None)
        return "freeform" if simple else "field"

    def _document(self, doc_id: str) -> dict:
        return self.client.json("GET", f"/document/{doc_id}")

    def _sender(self) -> str:
        creds = self.account.credentials or {}
        return creds.get("sender_email") or creds.get("username") or ""

    def _add_signature_fields(self, doc_id: str, spec: SendSpec, pages: int) -> None:
        fields = []
        for i, signer in enumerate(_signers(spec)):
            fields.append({
                "x": 60 + (i % 2) * 280, "y": 480 + ((i // 2) % 4) * 70, "width": 220, "height": 50,
                "page_number": max(pages, 1) - 1, "type": "signature", "required": True,
                "role": _role(i), "name": f"signature_{i + 1}", "label": signer.name or signer.email,
            })
        self.client.json("PUT", f"/document/{doc_id}", {"fields": fields})

    def _invite_freeform(self, doc_id: str, spec: SendSpec) -> dict:
        body = {"to": _signers(spec)[0].email, "from": self._sender(), **_texts(spec)}
        if _cc(spec):
            body["cc"] = _cc(spec)
        return self._invite(doc_id, body)

    def _invite_fields(self, doc_id: str, spec: SendSpec, doc: dict) -> None:
        roles = sorted(doc.get("roles") or [], key=lambda r: _int(r.get("signing_order"), 0))
        signers = _signers(spec)
        if len(roles) != len(signers):
            raise ProviderError(f"signNow: the document has {len(roles)} signer role(s) but the request has "
                                f"{len(signers)} signer(s)", permanent=True, code="input")
        ranks = {o: i + 1 for i, o in enumerate(sorted({s.order for s in signers}))}
        to = []
        for signer, role in zip(signers, roles):
            item = {"email": signer.email, "role": role.get("name"), "role_id": role.get("unique_id", ""),
                    "order": ranks[signer.order], "decline_by_signature": "1"}
            if spec.expiry_days is not None:
                item["expiration_days"] = spec.expiry_days
            if spec.reminder_days is not None:
                item["reminder"] = _reminder_object(spec.reminder_days)
            if spec.auth == "password":
                item.update(authentication_type="password", password=spec.auth_secret)
            elif spec.auth == "sms":
                item.update(authentication_type="phone", phone=signer.phone.replace(" ", ""), method="sms")
            to.append(item)
        body = {"to": to, "from": self._sender(), **_texts(spec)}
        if _cc(spec):
            body["cc"] = _cc(spec)
            body["cc_step"] = [{"name": f"CC {i + 1}", "email": e, "step": 1} for i, e in enumerate(_cc(spec))]
        try:
            self._invite(doc_id, body)
        except ProviderError as exc:
            if exc.code != "65536" or spec.reminder_days is None:
                raise
            # U-S3: an account on the older API may take only integer days.
            log.info("signNow refused the reminder object (%s); retrying with integer days", exc.message)
            for item in to:
                item["reminder"] = spec.reminder_days
            self._invite(doc_id, body)

    def _invite(self, doc_id: str, body: dict) -> dict:
        try:
            return self.client.json("POST", f"/document/{doc_id}/invite", body)
        except ProviderError as exc:
            if exc.code == "65629":  # an earlier attempt got through: that invite is ours
                return {}
            raise

    # -- status ----------------------------------------------------------------------------------------
    def status(self, request) -> StatusSnapshot:
        doc_id = _doc_id(request)
        doc = self._document(doc_id)
        state = request.provider_state or {}
        mode = _detect_mode(doc) if doc.get("field_invites") or doc.get("requests") else state.get("mode", "field")
        if mode == "freeform":
            return self._freeform_status(doc_id, doc)
        return self._field_status(doc, state)

    def _field_status(self, doc: dict, state: dict) -> StatusSnapshot:
        invites = [fi for fi in doc.get("field_invites") or [] if isinstance(fi, dict)]
        raw = {"document_id": doc.get("id"), "field_invites": [_light_invite(fi) for fi in invites]}
        signers = self._signer_states(doc, state)
        if not invites:
            # signNow drops cancelled field invites from the document (ours or from its web app).
            status = states.CANCELLED if state.get("invite_sent") or state.get("cancelled") else states.SENT
            return StatusSnapshot(status=status, signers=signers, raw=raw,
                                  reason="the invite was cancelled in signNow" if status == states.CANCELLED else "")
        now = time.time()
        declined = [fi for fi in invites if fi.get("declined") or _truthy(fi.get("is_full_declined"))
                    or str(fi.get("status", "")).lower() in ("declined", "rejected")]
        if declined:
            fi = declined[0]
            texts = [d.get("declined_text") for d in fi.get("declined") or [] if isinstance(d, dict)]
            reason = f"{fi.get('email')} declined" + (f": {texts[0]}" if texts and texts[0] else "")
            return StatusSnapshot(status=states.DECLINED, signers=signers, raw=raw, reason=reason)
        statuses = [str(fi.get("status", "")).lower() for fi in invites]
        if all(s in DONE for s in statuses) and any(s != "skipped" for s in statuses):
            return StatusSnapshot(status=states.COMPLETED, signers=signers, raw=raw)
        if all(s in GONE or s in DONE for s in statuses):
            return StatusSnapshot(status=states.CANCELLED, signers=signers, raw=raw,
                                  reason="the invite was cancelled in signNow")
        expired = [fi for fi in invites if str(fi.get("status", "")).lower() == "expired" or (
            str(fi.get("status", "")).lower() in OPEN and 0 < _float(fi.get("expiration_time")) < now)]
        if expired:
            return StatusSnapshot(status=states.EXPIRED, signers=signers, raw=raw,
                                  reason=f"the invite to {expired[0].get('email')} expired")
        unknown = sorted({s for s in statuses} - DONE - OPEN - GONE)
        if unknown:
            log.warning("signNow field invite status(es) %s read as pending", unknown)
        if any(s in DONE for s in statuses):
            return StatusSnapshot(status=states.PARTIALLY_SIGNED, signers=signers, raw=raw)
        return StatusSnapshot(status=states.SENT, signers=signers, raw=raw)

    def _freeform_status(self, doc_id: str, doc: dict) -> StatusSnapshot:
        invites = self._freeform_invites(doc_id)
        signers = [SignerState(email=i.get("email", ""), status=_freeform_signer_status(i.get("status")),
                               external_id=str(i.get("id", ""))) for i in invites]
        raw = {"document_id": doc_id, "free_form_invites": invites}
        statuses = [str(i.get("status", "")).lower() for i in invites]
        if statuses and all(s in DONE or s in GONE for s in statuses) and any(s in DONE for s in statuses):
            return StatusSnapshot(status=states.COMPLETED, signers=signers, raw=raw)
        if statuses and all(s in GONE for s in statuses):
            return StatusSnapshot(status=states.CANCELLED, signers=signers, raw=raw,
                                  reason="the invite was cancelled in signNow")
        return StatusSnapshot(status=states.SENT, signers=signers, raw=raw)

    def _freeform_invites(self, doc_id: str) -> list[dict]:
        data = self.client.json("GET", f"/v2/documents/{doc_id}/free-form-invites")
        return [i for i in (data.get("data") or []) if isinstance(i, dict)]

    def _signer_states(self, doc: dict, state: dict) -> list[SignerState]:
        out = []
        for fi in doc.get("field_invites") or []:
            status = str(fi.get("status", "")).lower()
            declined = fi.get("declined") or _truthy(fi.get("is_full_declined")) or status in ("declined",
                                                                                                   "rejected")
            out.append(SignerState(
                email=fi.get("email", ""), external_id=str(fi.get("id", "")),
                status="declined" if declined else "signed" if status in DONE else
                "cancelled" if status in GONE else "pending",
                signed_at=_iso(fi.get("updated")) if status in DONE else ""))
        for rq in doc.get("requests") or []:
            out.append(SignerState(
                email=rq.get("signer_email", ""), external_id=str(rq.get("id", "")),
                status="signed" if rq.get("signature_id") else "cancelled" if rq.get("canceled") else "pending"))
        return out

    # -- lifecycle -------------------------------------------------------------------------------------
    def remind(self, request) -> None:
        doc_id = _doc_id(request)
        doc = self._document(doc_id)
        if _detect_mode(doc) == "freeform":
            pending = [i["email"] for i in self._freeform_invites(doc_id)
                       if str(i.get("status", "")).lower() in OPEN and i.get("email")]
            if not pending:
                raise ProviderError("signNow: nobody is waiting to sign; no reminder sent", permanent=True,
                                    code="nothing_to_do")
            for start in range(0, len(pending), EMAIL2_BATCH):
                self.client.json("POST", f"/document/{doc_id}/email2", {
                    "emails": pending[start:start + EMAIL2_BATCH],
                    "subject": f"Reminder: {request.title or doc.get('document_name') or 'please sign'}"[:200],
                    "message": "This is a reminder that the document is waiting for your signature."})
            return
        now = time.time()
        pending = [fi for fi in doc.get("field_invites") or []
                   if str(fi.get("status", "")).lower() == "pending" and not fi.get("declined")
                   and not 0 < _float(fi.get("expiration_time")) < now]
        if not pending:
            raise ProviderError("signNow: nobody is waiting to sign right now; no reminder sent", permanent=True,
                                code="nothing_to_do")
        failures = []
        for fi in pending:
            try:
                self.client.json("PUT", f"/fieldinvite/{fi['id']}/resend")
            except ProviderError as exc:
                if not exc.permanent:
                    raise
                failures.append(exc)
        if len(failures) == len(pending):
            raise failures[0]

    def cancel(self, request, reason: str = "") -> None:
        doc_id = _doc_id(request)
        doc = self._document(doc_id)
        reason = (reason or "Cancelled from Bitrix24").strip()[:500]
        if _detect_mode(doc) == "freeform":
            for inv in self._freeform_invites(doc_id):
                if str(inv.get("status", "")).lower() in OPEN:
                    try:
                        self.client.json("PUT", f"/invite/{inv['id']}/cancel", {"reason": reason})
                    except ProviderError as exc:
                        if exc.code != "65536":  # "already canceled/fulfilled": someone got there first
                            raise
            return
        try:
            self.client.json("PUT", f"/document/{doc_id}/fieldinvitecancel", {"reason": reason})
        except ProviderError as exc:
            if exc.code != "65615":  # "Field invite missing": already cancelled by an earlier attempt
                raise

    def replace_signer(self, request, old_email: str, new_email: str) -> None:
        """The three documented steps; a retry after a partial run picks up where it stopped."""
        if not EMAIL_RE.match(new_email or ""):
            raise ProviderError(f"signNow: {new_email or '(empty)'} is not a valid email address", permanent=True,
                                code="input")
        doc_id = _doc_id(request)
        doc = self._document(doc_id)
        if _detect_mode(doc) == "freeform":
            raise ProviderError("signNow cannot replace the signer of a freeform invite; cancel and send again",
                                permanent=True, code="unsupported")
        options = request.options or {}
        invites = doc.get("field_invites") or []
        old = next((fi for fi in invites if fi.get("email", "").lower() == old_email.lower()
                    and str(fi.get("status", "")).lower() in OPEN), None)
        new = next((fi for fi in invites if fi.get("email", "").lower() == new_email.lower()), None)
        if new is not None and old is None:
            return  # done already
        auth = {}
        if options.get("auth") == "password":
            if not options.get("auth_secret"):
                raise ProviderError("signNow: the signer is password-protected but the password is not kept; "
                                    "cancel and send again", permanent=True, code="unsupported")
            auth = {"authentication_type": "password", "password": options["auth_secret"]}
        elif options.get("auth") == "sms":
            raise ProviderError("signNow: an SMS-authenticated signer cannot be replaced (the new signer's phone "
                                "is unknown); cancel and send again", permanent=True, code="unsupported")
        if old is not None:
            role_id = old.get("role_id")
            days_left = (_float(old.get("expiration_time")) - time.time()) / 86400
            expiry = min(REPLACE_MAX_EXPIRY, max(1, math.ceil(days_left))) if days_left > 0 else REPLACE_MAX_EXPIRY
            try:
                self.client.json("DELETE", f"/field_invite/{old['id']}")
            except ProviderError as exc:
                if exc.code != "66502":
                    raise
        else:
            # Step 1 ran in an earlier attempt: the role left without an invite is the one to refill.
            taken = {fi.get("role_id") for fi in invites}
            orphans = [r for r in doc.get("roles") or [] if r.get("unique_id") not in taken]
            if len(orphans) != 1:
                raise ProviderError(f"signNow: {old_email} has no open invite on this document", permanent=True,
                                    code="input")
            role_id, expiry = orphans[0]["unique_id"], REPLACE_MAX_EXPIRY
        try:
            self.client.json("POST", "/field_invite", {"email": new_email, "role_id": role_id, "is_replace": True,
                                                        "expiration_days": expiry, "decline_by_signature": 1,
                                                        **auth})
        except ProviderError as exc:
            if exc.code != "65615":  # "Invite already exists.": step 2 ran in an earlier attempt
                raise
        try:
            self.client.json("POST", f"/document/{doc_id}/trigger_fieldinvite")
        except ProviderError as exc:
            if exc.code != "65615":  # nothing staged any more: step 3 ran in an earlier attempt
                raise

    def signed_document(self, request) -> SignedFiles:
        doc_id = _doc_id(request)
        state = request.provider_state or {}
        doc = self._document(doc_id)
        original_pages = _int(state.get("page_count"), 0) or _int(doc.get("page_count"), 0)
        pdf = self.client.download(f"/document/{doc_id}/download?type=collapsed&with_history=1")
        if not pdf.startswith(b"%PDF"):
            raise ProviderError("signNow: the signed copy is not a PDF", code="bad_response")
        pages = _page_count(pdf)
        if original_pages and pages and pages <= original_pages:
            # U-S2: no history pages appended: the other documented reading of the flag.
            retry = self.client.download(f"/document/{doc_id}/download?type=collapsed&with_history=yes")
            if retry.startswith(b"%PDF"):
                pdf = retry
        history = self.client.json("GET", f"/document/{doc_id}/historyfull")
        audit = _normalise_history(history)
        title = _safe_name(request.title or doc.get("document_name") or "document")
        return SignedFiles(pdf=pdf, pdf_name=f"{title}.pdf",
                           audit=json.dumps(audit, indent=2, ensure_ascii=False).encode(),
                           audit_name=f"{title} audit trail.json")

    # -- callbacks -------------------------------------------------------------------------------------
    def parse_webhook(self, body: bytes, headers: dict) -> list[WebhookEvent]:
        return webhooks.parse(body, headers, self.account.credentials or {})


# -- helpers -----------------------------------------------------------------------------------------------
def _signers(spec: SendSpec):
    return [s for s in spec.signers if s.role != "cc"]


def _cc(spec: SendSpec) -> list[str]:
    """spec.cc plus signers whose role is "cc" (signNow CCs get the completed copy)."""
    out = []
    for email in list(spec.cc) + [s.email for s in spec.signers if s.role == "cc"]:
        if email.lower() not in {e.lower() for e in out}:
            out.append(email)
    return out


def _role(i: int) -> str:
    return f"Signer {i + 1}"


def _texts(spec: SendSpec) -> dict:
    out = {}
    if spec.subject:
        out["subject"] = spec.subject[:200]
    if spec.message:
        out["message"] = spec.message[:2000]
    return out


def _reminder_object(days: int) -> dict:
    return {"remind_after": days, "remind_repeat": min(days, 7)}


def _doc_id(request) -> str:
    doc_id = request.external_id or (request.provider_state or {}).get("document_id")
    if not doc_id:
        raise ProviderError("signNow: this request has no signNow document yet", permanent=True, code="input")
    return doc_id


def _has_invite(doc: dict) -> bool:
    return bool(doc.get("field_invites")) or any(not r.get("canceled") for r in doc.get("requests") or [])


def _detect_mode(doc: dict) -> str:
    return "freeform" if doc.get("requests") and not doc.get("field_invites") else "field"


def _freeform_signer_status(status) -> str:
    status = str(status or "").lower()
    return "signed" if status in DONE else "cancelled" if status in GONE else "pending"


def _light_invite(fi: dict) -> dict:
    keys = ("id", "email", "role", "status", "expiration_time", "declined", "is_full_declined", "updated")
    return {k: fi.get(k) for k in keys if k in fi}


def _normalise_history(history) -> dict:
    """historyfull is a plain array (OAS) or ``{document_history, email_history_events}`` (MCP)."""
    if isinstance(history, list):
        return {"document_history": history, "email_history_events": []}
    if isinstance(history, dict):
        return {"document_history": history.get("document_history") or [],
                "email_history_events": history.get("email_history_events") or []}
    return {"document_history": [], "email_history_events": []}


def _page_count(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf))


def _safe_name(name: str) -> str:
    name = re.sub(r'[\\/:*?"<>|\r\n\t]+', " ", name).strip()
    return re.sub(r"\.pdf$", "", name, flags=re.I)[:150] or "document"


def _iso(ts) -> str:
    value = _float(ts)
    return datetime.fromtimestamp(value, tz=timezone.utc).isoformat() if value else ""


def _truthy(v) -> bool:
    return v in (True, 1, "1", "true")


def _int(value, default: int) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
