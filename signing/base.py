"""One interface, many providers.

A provider turns a :class:`SendSpec` into a request at the e-signature service and reports back in
provider-neutral terms (:class:`StatusSnapshot`, :class:`WebhookEvent`).  Failures raise
:class:`ProviderError`: ``permanent=True`` when retrying cannot help (bad input, rejected credentials),
otherwise the caller retries with backoff.  Each provider lives in ``signing/providers/<code>/`` with the
same files: ``client.py`` (HTTP), ``provider.py`` (this interface), ``webhooks.py`` (parse + verify).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar


def mask_secret(value, bullet: str = "****") -> str:
    """A stored secret as a page or a console may show it: never the value, at most its last 4 characters
    (and only for long values, where 4 characters give nothing away)."""
    text = str(value or "")
    if not text:
        return ""
    return bullet + (text[-4:] if len(text) >= 16 else "")


class ProviderError(Exception):
    def __init__(self, message: str, *, permanent: bool = False, code: str = "", retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.code = code
        self.retry_after = retry_after


class WebhookRejected(Exception):
    """The callback failed verification (bad signature, unknown request): answer 4xx, change nothing."""


@dataclass
class Signer:
    email: str
    name: str = ""
    order: int = 1                 # equal order = sign in parallel
    role: str = "signer"           # signer | approver | cc
    phone: str = ""                # E.164, for SMS authentication
    user_id: int | None = None     # Bitrix24 user, when the signer is an employee
    kedo_role: str = ""            # KEDO: signer | assignee | reviewer | editor
    template_role: str = ""        # the provider template's (or text tags') role this signer fills


@dataclass
class DocumentFile:
    name: str
    path: Path                     # a temporary file: documents are streamed, never held twice in memory
    size: int
    content_type: str = "application/pdf"


@dataclass
class SendSpec:
    request_id: str                # our public id; providers keep it as external reference when they can
    title: str
    document: DocumentFile | None  # None when the provider builds it from one of its templates
    signers: list[Signer]
    cc: list[str] = field(default_factory=list)
    subject: str = ""
    message: str = ""
    expiry_days: int | None = None
    reminder_days: int | None = None
    auth: str = "none"             # none | password | sms | email_otp
    auth_secret: str = ""
    callback_url: str = ""         # our webhook URL for this account
    options: dict = field(default_factory=dict)  # provider-specific (KEDO: company, provider uid, …)
    extra_documents: list[DocumentFile] = field(default_factory=list)  # more files, one request ("document_group")
    delivery: str = "email"        # email: the provider e-mails the invites | link: signing links ("signing_links")
    template_id: str = ""          # a provider template to create the document from ("templates")
    prefill: dict = field(default_factory=dict)  # template text field name -> value ("templates")
    # Recovery points (brandur's idempotency keys): ``resume`` is what earlier attempts of this same
    # request saved with ``checkpoint``.  A provider's send() saves each foreign id the moment it has it
    # (document uploaded, invite sent) and skips finished steps on a retry, so a worker killed mid-send
    # never makes a second signature request.
    resume: dict = field(default_factory=dict)
    checkpoint: Callable[[dict], None] = lambda state: None


@dataclass
class SignerState:
    email: str
    status: str                    # pending | signed | declined | cancelled
    external_id: str = ""
    name: str = ""
    signed_at: str = ""
    viewed_at: str = ""            # ISO time the signer first opened the document, where the provider says so


@dataclass
class CallbackGap:
    """What a provider's check of its webhook subscriptions found missing (``Provider.callback_gap``)."""
    lost: list[str] = field(default_factory=list)  # subscribed by us once, gone now (deleted or expired)
    new: list[str] = field(default_factory=list)   # never subscribed (an event added since the account connected)


@dataclass
class SendResult:
    external_id: str
    signers: list[SignerState] = field(default_factory=list)
    raw: dict = field(default_factory=dict)


@dataclass
class StatusSnapshot:
    status: str                    # a signing.states status
    signers: list[SignerState] = field(default_factory=list)
    raw: dict = field(default_factory=dict)
    reason: str = ""


@dataclass
class WebhookEvent:
    external_id: str               # the provider's id of the document/request
    kind: str                      # provider's event name, for the history
    dedupe_key: str                # same delivery twice -> same key
    raw: dict = field(default_factory=dict)
    status_hint: str = ""          # a status the payload asserts; providers may leave it empty (re-read)
    signer_email: str = ""         # whose action it was, when the payload says
    files: "SignedFiles | None" = None  # providers that push the signed copy with the callback (Evia)


@dataclass
class SignedFiles:
    pdf: bytes
    pdf_name: str
    audit: bytes | None = None
    audit_name: str = ""


@dataclass
class ProviderTemplate:
    """A template in the connected account, with what role mapping and prefill need to know."""
    id: str
    name: str
    roles: list[str] = field(default_factory=list)        # in signing order
    text_fields: list[str] = field(default_factory=list)  # names that can be prefilled


@dataclass
class SigningLink:
    """A link a signer opens to sign, handed out by us instead of the provider's e-mail; it expires."""
    email: str
    url: str
    expires_at: float              # unix time, as the provider documents it


# Capabilities beyond send/status, one vocabulary for every provider (``Provider.capabilities``):
CAPABILITIES = {
    "remind": "send reminders",
    "cancel": "cancel a request",
    "replace_signer": "replace a signer",
    "audit_trail": "return an audit trail",
    "templates": "create documents from its own templates (role mapping, prefilled text fields)",
    "text_tags": "place fields from text tags in the PDF",
    "signing_links": "hand out signing links instead of e-mail invites",
    "document_group": "send several documents in one request",
}


@dataclass(frozen=True)
class CredentialField:
    name: str
    label: str
    secret: bool = True
    required: bool = True
    help: str = ""


class Provider:
    code: ClassVar[str] = ""
    label: ClassVar[str] = ""
    credential_fields: ClassVar[list[CredentialField]] = []
    # What this provider can do beyond send/status: keys of CAPABILITIES
    capabilities: ClassVar[frozenset[str]] = frozenset()
    supported_auth: ClassVar[frozenset[str]] = frozenset({"none"})
    # Bitrix24 scopes the provider's own calls to the portal need (beyond what every robot needs).
    required_scopes: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, account):
        self.account = account  # signing.models.ProviderAccount (credentials decrypted on access)

    # -- account ---------------------------------------------------------------------------------
    def connect(self, credentials: dict) -> dict:
        """Validate (and, where the provider needs it, exchange) credentials; returns what to store."""
        return credentials

    def test_connection(self) -> str:
        """One real, harmless call; returns a human verdict or raises ProviderError."""
        raise NotImplementedError

    def on_connected(self, webhook_url: str) -> None:
        """Subscribe to callbacks etc. once credentials are stored (optional)."""

    def callback_gap(self, webhook_url: str) -> CallbackGap | None:
        """The webhook subscriptions missing at the provider now; None when it has none we can list."""
        return None

    def restore_callbacks(self, webhook_url: str, events: list[str]) -> None:
        """Subscribe again to ``events`` (from :meth:`callback_gap`).  Raise ProviderError."""
        raise ProviderError(f"{self.label} has no webhook subscriptions to restore", permanent=True,
                            code="unsupported")

    # -- lifecycle -------------------------------------------------------------------------------
    def validate(self, spec: SendSpec) -> None:
        """Raise ProviderError(permanent=True) before any call when the spec cannot be sent."""

    def send(self, spec: SendSpec) -> SendResult:
        raise NotImplementedError

    def status(self, request) -> StatusSnapshot:
        raise NotImplementedError

    def remind(self, request) -> None:
        raise ProviderError(f"{self.label} has no reminder call", permanent=True, code="unsupported")

    def cancel(self, request, reason: str = "") -> None:
        raise ProviderError(f"{self.label} cannot cancel a request", permanent=True, code="unsupported")

    def replace_signer(self, request, old_email: str, new_email: str) -> None:
        raise ProviderError(f"{self.label} cannot replace a signer", permanent=True, code="unsupported")

    def signed_document(self, request) -> SignedFiles:
        raise NotImplementedError

    # -- optional capabilities -------------------------------------------------------------------
    def require(self, capability: str) -> None:
        """Raise the clear input error a workflow gets when it asks this provider for what it cannot do."""
        if capability not in self.capabilities:
            raise ProviderError(f"{self.label} cannot {CAPABILITIES.get(capability, capability)}",
                                permanent=True, code="unsupported")

    def list_templates(self) -> list[ProviderTemplate]:
        self.require("templates")
        return []

    def signing_links(self, request) -> list[SigningLink]:
        """Fresh links for everyone who has not signed yet (a request sent with ``delivery="link"``)."""
        self.require("signing_links")
        return []

    # -- callbacks -------------------------------------------------------------------------------
    def parse_webhook(self, body: bytes, headers: dict) -> list[WebhookEvent]:
        """Verify and parse one callback delivery (``headers`` lower-cased).  Raise WebhookRejected."""
        raise WebhookRejected("this provider takes no webhooks")
