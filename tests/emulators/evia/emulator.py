"""``EviaEmulator``: the state, the switches and the routes; the handlers live in the API-area mixins."""
from __future__ import annotations

from ..provider import ProviderEmulator
from .auth import AuthMixin
from .common import SIGN
from .flow import FlowMixin
from .sign_requests import SignRequestsMixin
from .undocumented import UndocumentedMixin
from .webhooks import WebhooksMixin


class EviaEmulator(AuthMixin, SignRequestsMixin, FlowMixin, WebhooksMixin, UndocumentedMixin, ProviderEmulator):
    def __init__(self, client_id: str, client_secret: str, redirect_uri: str | None = None, token_ttl: int = 3600,
                 user_email: str = "owner@acme.test"):
        super().__init__("evia-emulator")
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.token_ttl = token_ttl
        self.user_email = user_email
        self.auth_codes: dict[str, float] = {}
        self.tokens: dict[str, dict] = {}
        self.refresh_tokens: dict[str, dict] = {}
        self.uploads: dict[str, dict] = {}
        self.requests: dict[str, dict] = {}
        self.webhooks: dict[str, dict] = {}
        self.sent_emails: list[dict] = []
        # switches (see module docstring)
        self.refresh_token_style = "form"
        self.undocumented_endpoints = True
        self.strict_fields = True
        self.completion_gap = 0.1
        self.attach_audit_trail = False
        self.duplicate_received = False
        self.stamp_propagation_delay = 0.0
        self.require_identifier_in_document = False
        self.webhooks_require_https = False
        self._routes()

    # ------------------------------------------------------------------------------------------------ routes
    def _routes(self):
        r = self.add_route
        r("GET", r"^/_apis/falcon/auth/oauth2/authorize$", self.h_authorize)
        r("POST", r"^/_apis/falcon/auth/api/v2/token$", self.h_token)
        r("POST", r"(?i)^/_apis/sign/thumbs/api/(v2/)?requests/document$", self.h_upload)
        r("POST", rf"^{SIGN}/requests$", self.h_create)
        r("POST", rf"^{SIGN}/requests/(?P<rid>[^/]+)/signatories$", self.h_signatory)
        r("POST", rf"^{SIGN}/requests/(?P<rid>[^/]+)/signatories/(?P<sid>[^/]+)/stamps$", self.h_stamp)
        r("POST", rf"^{SIGN}/requests/(?P<rid>[^/]+)/send$", self.h_send)
        r("POST", rf"^{SIGN}/webhooks$", self.h_webhook_create)
        r("GET", rf"^{SIGN}/webhooks$", self.h_webhook_list)
        # ASSUMPTION (spec U-E3): the four routes below are NOT in Evia's docs; they are a third-party
        # integration's guesses, answered only while ``self.undocumented_endpoints`` is True.
        r("GET", rf"^{SIGN}/requests/(?P<rid>[^/]+)$", self.h_status)
        r("GET", rf"^{SIGN}/requests/(?P<rid>[^/]+)/documents$", self.h_documents)
        r("GET", rf"^{SIGN}/documents/(?P<token>[^/]+)/download$", self.h_download)
        r("POST", rf"^{SIGN}/requests/(?P<rid>[^/]+)/cancel$", self.h_cancel)
