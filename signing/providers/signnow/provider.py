"""signNow (https://www.signnow.com): upload a PDF, invite signers, follow the document to its signed copy.

Send path (spec §1.3/§1.5): ``POST /document`` → (role-based only: ``PUT /document/{id}`` signature fields,
one role per signer) → ``POST /document/{id}/invite`` (→ role-based only: ``GET /document/{id}`` for the
field invites' ids).  Two calls for a freeform invite, four for a field invite (issue 14; six before): the
upload answers the id, the page count comes from the local PDF, and the roles we create are named, so the
invite refers to them by name.  One signer with no auth, expiry or reminder needs
gets a freeform invite (``to`` is a string); everything else a role-based field invite (``to[]``).

This module is the orchestration; the pieces live beside it: invites.py (invite bodies), replace.py
(replace_signer's three steps), documents.py (document reads, status, signed copy), client.py (HTTP and
tokens), webhooks.py (callbacks).

``send`` is resumable (see :class:`signing.base.SendSpec`): ``document_id`` is saved right after the
upload, ``invite_started`` right before the invite call; a retry that finds ``invite_started`` looks at the
document first and never invites twice.

Unconfirmed readings (spec §7) and what we do:
U-S1 HMAC header encoding → accept hex or base64, else our registered header (webhooks.py);
U-S2 ``with_history`` → ``1``, once more with ``yes`` if the PDF did not grow;
``reminder`` → integer days, the documented form;
U-S4 ``expiration_days`` → 3–180 on invite, ≤30 when replacing a signer;
U-S5 subscription list/delete auth → Bearer, then Basic on 401/403;
U-S6 ``document.fieldinvite.signed`` → a trigger only: the status is always re-read.
"""
from __future__ import annotations

import logging
import re
import secrets
import time

from signing.base import (
    CallbackGap,
    CredentialField,
    Provider,
    ProviderError,
    SendResult,
    SendSpec,
    SignedFiles,
    StatusSnapshot,
    WebhookEvent,
)

from . import documents, embedded, groups, invites, replace, templates, webhooks
from .client import SignNowClient, basic_auth
from .documents import OPEN, as_float, as_int, detect_mode, document_id, has_invite
from .invites import EMAIL_RE, signers_of

log = logging.getLogger("b24sign.providers.signnow")

PHONE_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")
EXPIRY_RANGE = (3, 180)
MAX_PDF_MB = 25  # read at call time: bench/memory.py raises it on this module
EMAIL2_BATCH = 5
# ``user.document.open``: "in the specified user's account a document has been opened" (.NET EventType) -- by
# anyone, the owner too, and the payload names no e-mail: a trigger to read who it was (documents.py).
EVENTS = ("user.document.complete", "user.document.fieldinvite.decline", "user.document.fieldinvite.signed",
          "user.document.freeform.signed", "user.document.open")
ADDED_LATER = ("user.document.open",)  # issue 15: missing on accounts connected before, not "lost"


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
    capabilities = frozenset({"remind", "cancel", "replace_signer", "audit_trail", "templates", "text_tags",
                              "signing_links", "document_group"})
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
                     webhook_header_token=secrets.token_urlsafe(24), subscribed_events=[])
        # Stored before subscribing, so the first callback can already be verified.
        self.account.credentials = creds
        self.account.save(update_fields=["credentials", "updated_at"])
        for sub in self._subscriptions():
            attrs = sub.get("json_attributes") or {}
            if attrs.get("callback_url") == webhook_url and sub.get("id"):
                self._subscription_call("DELETE", f"/api/v2/events/{sub['id']}")
        self.restore_callbacks(webhook_url, list(EVENTS))

    def callback_gap(self, webhook_url: str) -> CallbackGap:
        """Our events with no subscription to our URL for our user (deleted in signNow's dashboard, expired)."""
        creds = self.account.credentials or {}
        present = {sub.get("event") for sub in self._subscriptions()
                   if (sub.get("json_attributes") or {}).get("callback_url") == webhook_url
                   and str(sub.get("entity_id") or "") == str(creds.get("user_id") or "")}
        missing = [e for e in EVENTS if e not in present]
        # Accounts connected before ``subscribed_events`` was recorded had every event but the later ones.
        subscribed = set(creds["subscribed_events"] if "subscribed_events" in creds else
                         [e for e in EVENTS if e not in ADDED_LATER])
        return CallbackGap(lost=[e for e in missing if e in subscribed],
                           new=[e for e in missing if e not in subscribed])

    def restore_callbacks(self, webhook_url: str, events: list[str]) -> None:
        """Subscribe to ``events`` with the stored secret and header (callbacks in flight still verify)."""
        creds = dict(self.account.credentials or {})
        if not creds.get("webhook_hmac_secret") or not creds.get("user_id"):
            raise ProviderError("signNow: the account has no webhook secret; reconnect it", permanent=True,
                                code="input")
        for event in events:
            self.client.json("POST", "/api/v2/events", {
                "event": event, "entity_id": creds["user_id"], "action": "callback",
                "secret_key": creds["webhook_hmac_secret"], "delete_access_token": True,
                "attributes": {"callback": webhook_url, "use_tls_12": True, "docid_queryparam": False,
                               "delete_access_token": True, "secret_key": creds["webhook_hmac_secret"],
                               "headers": {webhooks.TOKEN_HEADER: creds["webhook_header_token"]}},
            })
            # Recorded per event: the next check tells a lost subscription from one never made.
            stored = self.account.credentials or {}
            self.account.credentials = {**stored, "subscribed_events": sorted({*stored.get("subscribed_events", []),
                                                                               event})}
            self.account.save(update_fields=["credentials", "updated_at"])

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

        signers = signers_of(spec)
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
        size_mb = ((spec.document.size if spec.document else 0) or 0) / (1024 * 1024)
        if size_mb > MAX_PDF_MB:
            fail(f"the document is {size_mb:.1f} MB; the limit is {MAX_PDF_MB} MB")
        creds = self.account.credentials or {}
        if not creds.get("access_token") and not creds.get("password"):
            fail("the account is not connected; reconnect it in b24sign's settings")
        if spec.template_id:
            templates.check(self.client, spec)  # unmapped role, missing prefill field, deleted template

    # -- send ------------------------------------------------------------------------------------------
    def send(self, spec: SendSpec) -> SendResult:
        state = dict(spec.resume or {})

        def save(**changes):
            state.update(changes)
            spec.checkpoint(dict(state))

        if spec.extra_documents:  # several documents: a document group (groups.py)
            return groups.send(self, spec, state, save)
        if not state.get("document_id") and spec.template_id:
            save(document_id=templates.copy_template(self.client, spec), template_id=spec.template_id)
        tagged = bool(spec.options.get("text_tags"))
        if not state.get("document_id"):
            fields = {"name": spec.title[:200]} if spec.title else None
            uploaded = self.client.upload(spec.document.path, spec.document.name or "document.pdf", fields=fields,
                                          extract=tagged)
            if not uploaded.get("id"):
                raise ProviderError("signNow: the upload returned no document id", code="bad_response")
            # The page count comes from our own file, not from a read of the document (issue 14).
            save(document_id=str(uploaded["id"]), page_count=documents.file_page_count(spec.document.path))
        doc_id = state["document_id"]
        if spec.prefill and not state.get("prefilled"):
            templates.prefill(self.client, doc_id, spec.prefill)
            save(prefilled=True)
        # A fresh upload without text tags has no roles and no fields: nothing to read before inviting.
        # A resumed send, a template copy, or one whose roles came from text tags, reads the document first.
        doc = self._document(doc_id) if tagged or spec.template_id or state.get("invite_started") else {}
        if "page_count" not in state:
            save(page_count=documents.file_page_count(spec.document.path) if spec.document
                 else as_int(doc.get("page_count"), 0))

        if state.get("invite_started") and has_invite(doc):
            log.info("signNow document %s already has an invite: not inviting again", doc_id)
            doc_read = doc
        else:
            mode = state.get("mode") or ("field" if spec.delivery == "link" else invites.choose_mode(spec, doc))
            if mode == "field" and not doc.get("roles"):
                # Our own fields: we name the roles, so the invite needs no read of them (role by name).
                invites.add_signature_fields(self.client, doc_id, spec, state["page_count"] or 1)
                doc = {**doc, "roles": invites.own_roles(spec)}
            save(mode=mode, invite_started=True)
            if mode == "freeform":
                answer = invites.invite_freeform(self.client, doc_id, spec, self._sender())
                ids = [answer.get("id")] if answer.get("id") else []
                save(freeform_invite_ids=ids)
                signers = invites.freeform_signers(spec, ids)
                save(invite_sent=True)
                return SendResult(external_id=doc_id, signers=signers, raw={"document_id": doc_id, "mode": mode})
            if spec.delivery == "link":  # embedded invites: we hand out the links, signNow e-mails nobody
                save(delivery="link", embedded_invites=embedded.create(self.client, doc_id, spec, doc))
            elif any(s.template_role for s in signers_of(spec)):  # roles mapped by name (template, tags)
                templates.invite_roles(self.client, doc_id, spec, doc, self._sender())
            else:
                invites.invite_fields(self.client, doc_id, spec, doc, self._sender())
            # The field invite answers {status: success} only: its invite ids come from one read.
            doc_read = self._document(doc_id)
        save(invite_sent=True, mode=state.get("mode") or detect_mode(doc_read))
        return SendResult(external_id=doc_id, signers=documents.signer_states(doc_read),
                          raw={"document_id": doc_id, "mode": state["mode"]})

    def list_templates(self):
        return templates.list_templates(self.client)

    def signing_links(self, request):
        if (request.provider_state or {}).get("delivery") != "link":
            raise ProviderError("signNow: this request was sent by e-mail; it has no signing links", permanent=True,
                                code="input")
        doc_id = document_id(request)
        return embedded.links(self.client, doc_id, self._document(doc_id))

    def _document(self, doc_id: str) -> dict:
        return documents.read_document(self.client, doc_id)

    def _sender(self) -> str:
        creds = self.account.credentials or {}
        return creds.get("sender_email") or creds.get("username") or ""

    # -- status ----------------------------------------------------------------------------------------
    def status(self, request) -> StatusSnapshot:
        if groups.is_group(request):
            return groups.status(self.client, request)
        return documents.status_snapshot(self.client, request)

    # -- lifecycle -------------------------------------------------------------------------------------
    def remind(self, request) -> None:
        if groups.is_group(request):
            raise ProviderError("signNow: b24sign does not send reminders for document groups yet", permanent=True,
                                code="unsupported")
        doc_id = document_id(request)
        doc = self._document(doc_id)
        if detect_mode(doc) == "freeform":
            pending = [i["email"] for i in documents.read_freeform_invites(self.client, doc_id)
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
                   and not 0 < as_float(fi.get("expiration_time")) < now]
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
        if groups.is_group(request):
            return groups.cancel(self.client, request)
        doc_id = document_id(request)
        if (request.provider_state or {}).get("delivery") == "link":
            embedded.withdraw(self.client, doc_id)
            return
        doc = self._document(doc_id)
        reason = (reason or "Cancelled from Bitrix24").strip()[:500]
        if detect_mode(doc) == "freeform":
            for inv in documents.read_freeform_invites(self.client, doc_id):
                if str(inv.get("status", "")).lower() in OPEN:
                    try:
                        self.client.json("PUT", f"/invite/{inv['id']}/cancel", {"reason": reason})
                    except ProviderError as exc:
                        if exc.code != "65536":  # "already canceled/fulfilled": someone got there first
                            raise
            return
        if not _open_field_invites(doc):
            return  # nothing left to cancel (an earlier attempt did, or everyone has acted)
        try:
            self.client.json("PUT", f"/document/{doc_id}/fieldinvitecancel", {"reason": reason})
        except ProviderError:
            # Re-read rather than guess from the code (65615 is documented only for replace): if the
            # invites are gone meanwhile, someone else cancelled them; otherwise the error stands.
            if _open_field_invites(self._document(doc_id)):
                raise

    def replace_signer(self, request, old_email: str, new_email: str) -> None:
        """The three documented steps (replace.py); a retry after a partial run picks up where it stopped."""
        replace.replace_signer(self.client, request, old_email, new_email)

    def signed_document(self, request) -> SignedFiles:
        if groups.is_group(request):
            return groups.signed_bundle(self.client, request)
        return documents.signed_copy(self.client, request)

    # -- callbacks -------------------------------------------------------------------------------------
    def parse_webhook(self, body: bytes, headers: dict) -> list[WebhookEvent]:
        return webhooks.parse(body, headers, self.account.credentials or {})


def _open_field_invites(doc: dict) -> list[dict]:
    return [fi for fi in doc.get("field_invites") or [] if str(fi.get("status", "")).lower() in OPEN]
