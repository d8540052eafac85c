"""``SignNowEmulator``: the state, the switches and the routes; the handlers live in the API-area mixins."""
from __future__ import annotations

from ..provider import ProviderEmulator, new_id
from .auth import AuthMixin
from .documents import DocumentsMixin
from .embedded import EmbeddedInvitesMixin
from .groups import DocumentGroupsMixin
from .invites import InvitesMixin
from .lifecycle import InviteLifecycleMixin
from .signer import SignerActionsMixin
from .templates import TemplatesMixin
from .webhooks import WebhooksMixin


class SignNowEmulator(AuthMixin, DocumentsMixin, InvitesMixin, InviteLifecycleMixin, WebhooksMixin,
                      SignerActionsMixin, TemplatesMixin, EmbeddedInvitesMixin, DocumentGroupsMixin,
                      ProviderEmulator):
    def __init__(self, basic_token: str, users: dict[str, str] | None = None, token_ttl: int = 2592000):
        super().__init__("signnow-emulator")
        self.basic_token = basic_token
        self.users = dict(users or {"owner@acme.test": "pw"})
        self.user_ids = {email.lower(): new_id() for email in self.users}
        self.token_ttl = token_ttl
        self.tokens: dict[str, dict] = {}          # access_token -> {user, expires_at, scope, refresh_token}
        self.refresh_tokens: dict[str, dict] = {}  # refresh_token -> {user, scope}
        self.documents: dict[str, dict] = {}
        self.field_invite_index: dict[str, str] = {}  # field invite id -> document id
        self.freeform_index: dict[str, str] = {}      # freeform invite id -> document id
        self.subscriptions: dict[str, dict] = {}
        self.viewer_ids: dict[str, str] = {}         # email -> the opaque viewer_user_unique_id of open events
        self.sent_emails: list[dict] = []
        # switches (see module docstring)
        self.webhook_secret_encoding = "hex"
        self.with_history_values: tuple = ("1",)
        self.cancel_refusal: tuple[int, str] | None = None  # the next fieldinvitecancel answers this error
        self.declined_invite_status: str | None = None
        self.expired_invite_status: str | None = None
        self.history_shape = "array"
        self.email2_unverified_sender = False
        self.environment = "https://api-eval.signnow.com"
        # fn(document_id, email): a signer who acts the instant their invite exists, i.e. before the
        # invite's own response reaches the sender (a fast signer, an embedded signing link)
        self.on_invite = None
        self._routes()

    # ------------------------------------------------------------------------------------------------ routes
    def _routes(self):
        r = self.add_route
        r("POST", r"^/oauth2/token$", self.h_token)
        r("GET", r"^/oauth2/token$", self.h_verify)
        r("POST", r"^/oauth2/terminate$", self.h_terminate)
        r("GET", r"^/user$", self.h_user)
        r("POST", r"^/document$", self.h_upload)
        r("POST", r"^/document/fieldextract$", lambda req: self.h_upload(req, extract=True))
        r("PUT", r"^/document/(?P<doc_id>[0-9a-f]+)$", self.h_put_fields)
        r("GET", r"^/document/(?P<doc_id>[0-9a-f]+)$", self.h_get_document)
        r("POST", r"^/document/(?P<doc_id>[0-9a-f]+)/invite$", self.h_invite)
        r("PUT", r"^/fieldinvite/(?P<fi_id>[0-9a-f]+)/resend$", self.h_resend)
        r("DELETE", r"^/field_invite/(?P<fi_id>[0-9a-f]+)$", self.h_delete_field_invite)
        r("POST", r"^/field_invite$", self.h_replace_field_invite)
        r("POST", r"^/document/(?P<doc_id>[0-9a-f]+)/trigger_fieldinvite$", self.h_trigger)
        r("PUT", r"^/document/(?P<doc_id>[0-9a-f]+)/fieldinvitecancel$", self.h_cancel_field_invites)
        r("PUT", r"^/invite/(?P<inv_id>[0-9a-f]+)/cancel$", self.h_cancel_freeform)
        r("GET", r"^/v2/documents/(?P<doc_id>[0-9a-f]+)/free-form-invites$", self.h_freeform_list)
        r("POST", r"^/document/(?P<doc_id>[0-9a-f]+)/email2$", self.h_email2)
        r("GET", r"^/document/(?P<doc_id>[0-9a-f]+)/download$", self.h_download)
        r("GET", r"^/document/(?P<doc_id>[0-9a-f]+)/historyfull$", self.h_history)
        r("POST", r"^/api/v2/events$", self.h_sub_create)
        r("GET", r"^/api/v2/events$", self.h_sub_list)
        r("PUT", r"^/api/v2/events/(?P<sub_id>[0-9a-f]+)$", self.h_sub_update)
        r("DELETE", r"^/api/v2/events/(?P<sub_id>[0-9a-f]+)$", self.h_sub_delete)
        r("GET", r"^/v2/event-subscriptions$", self.h_sub_list)
        r("GET", r"^/v2/event-subscriptions/(?P<sub_id>[0-9a-f]+)/callbacks$", self.h_sub_callbacks)
        r("GET", r"^/v2/event-subscriptions/callbacks$", self.h_sub_callbacks)
        self._template_routes()
        self._embedded_routes()
        self._group_routes()
