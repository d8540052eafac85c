"""The Bitrix24 cloud: the OAuth server (``/oauth/token/``, ``/rest/app.info``) and the registry of portals."""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..base import EmulatorServer, Request, json_response
from .core import TOKEN_TTL, AccessToken, AuthCode, B24Error, RefreshToken, rand_hex, start_server

DEFAULT_SCOPE = "bizproc,crm,user_basic,disk,documentgenerator,placement,sign.b2e,humanresources.hcmlink,im,userfieldconfig"

if TYPE_CHECKING:  # portal.py imports this module; the annotation alone needs the name
    from .portal import Portal


class Bitrix24Cloud:
    """Owns the OAuth server and every emulated portal.

    Knobs (plain attributes, change them any time):
      ``payment_required``  -> the OAuth server answers ``PAYMENT_REQUIRED`` for every grant
      ``oauth_delay``       -> seconds to sleep inside ``/oauth/token/`` (widens refresh race windows)
      ``second_event_send`` -> ``"error"`` (default) or ``"ignore"``: a second bizproc.event.send on a closed
                               workflow answers ``second_event_send_error`` or ``{"result": true}``
      ``activity_log_requires_admin`` -> the seed says admin, the core has no check (U14); default True (the
                               stricter reading; docs/decisions.md)
      ``sign_error_status`` -> HTTP status of sign.b2e BAD_REQUEST errors: 400 as the core answers a
                               RestException (the seed's examples say 200; docs/decisions.md)
      ``robot_update_top_placement`` -> True: bizproc.robot.update validates a top-level PLACEMENT_HANDLER
                               when FIELDS turn the placement on (some core versions)
      ``robot_add_race``    -> True: a duplicate bizproc.robot.add fails as ERROR_ACTIVITY_ADD_FAILURE
      ``queue_timeout``     -> seconds the queue server waits for our handler
      ``file_header_check`` -> False disables the "browser-like headers" 404 on file downloads
    """

    def __init__(self, client_id: str = "local.b24sign", client_secret: str = "s3cret",
                 app_url: str = "http://127.0.0.1:8000", scope: str = DEFAULT_SCOPE, version: int = 1):
        self.client_id = client_id
        self.client_secret = client_secret
        self.app_url = app_url.rstrip("/")
        self.scope = scope
        self.version = version
        self.status = "L" if client_id.startswith("local.") else "S"
        self.payment_required = False
        self.oauth_delay = 0.0
        self.second_event_send = "error"
        # What the core answers a send to a finished workflow: CBPRuntime's "workflow not found" as a
        # RestException with the code "404" (docs/decisions.md).
        self.second_event_send_error = (400, "404", "Бизнес-процесс не найден")
        self.activity_log_requires_admin = True
        self.sign_error_status = 400
        self.robot_update_top_placement = True
        self.robot_add_race = False
        self.queue_timeout = 10.0
        # How the queue server reaches the app: None = real HTTP; or fn(url, pairs, headers) -> response
        # with .status_code and .text (tests plug Django's test client in here).
        self.transport = None
        self.file_header_check = True
        self.refresh_calls = 0
        self.refresh_ok = 0
        self.code_calls = 0
        self.oauth_log: list[dict] = []  # every /oauth/token/ call: grant_type, result code
        self.lock = threading.RLock()
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.auth_codes: dict[str, AuthCode] = {}
        self.portals: dict[str, "Portal"] = {}  # by member_id
        self.portals_by_name: dict[str, "Portal"] = {}
        self.server = EmulatorServer("b24-oauth")
        self.server.add_route("*", r"^/oauth/token/?$", self._oauth_token)
        self.server.add_route("*", r"^/rest/app\.info(?:\.json)?$", self._server_app_info)
        self._started = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "Bitrix24Cloud":
        if not self._started:
            start_server(self.server)
            self._started = True
        return self

    def stop(self) -> None:
        for p in list(self.portals.values()):
            p._stop_servers()
        if self._started:
            self.server.stop()
            self._started = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def oauth_url(self) -> str:
        return f"{self.server.base_url}/oauth/token/"

    @property
    def server_endpoint(self) -> str:
        return f"{self.server.base_url}/rest/"

    @property
    def oauth_domain(self) -> str:
        return self.server.host

    @property
    def app_host(self) -> str:
        return urlsplit(self.app_url).hostname or ""

    def add_portal(self, name: str, plan: str = "basic", rate: tuple | None = None, access_ttl: int = TOKEN_TTL,
                   **kw) -> "Portal":
        from .portal import Portal

        if not self._started:
            self.start()
        portal = Portal(self, name, plan=plan, rate=rate, access_ttl=access_ttl, **kw)
        with self.lock:
            self.portals[portal.member_id] = portal
            self.portals_by_name[name] = portal
        return portal

    # ------------------------------------------------------------------ tokens
    def issue_pair(self, portal, user_id: int) -> tuple[AccessToken, RefreshToken]:
        with self.lock:
            at = AccessToken(rand_hex(70), portal.member_id, int(user_id), time.time() + portal.access_ttl)
            rt = RefreshToken(rand_hex(70), portal.member_id, int(user_id))
            self.access_tokens[at.token] = at
            self.refresh_tokens[rt.token] = rt
            return at, rt

    def token_payload(self, portal, at: AccessToken, rt: RefreshToken | None) -> dict:
        return {
            "access_token": at.token,
            "expires": int(at.expires),
            "expires_in": portal.access_ttl,
            "scope": self.scope,
            "domain": self.oauth_domain,
            "server_endpoint": self.server_endpoint,
            "status": self.status,
            "client_endpoint": portal.client_endpoint,
            "member_id": portal.member_id,
            "user_id": at.user_id,
            "refresh_token": rt.token if rt else "",
        }

    def lookup_access(self, token: str | None) -> AccessToken | None:
        if not token:
            return None
        with self.lock:
            return self.access_tokens.get(token)

    def revoke_portal_tokens(self, member_id: str) -> None:
        with self.lock:
            for t in self.access_tokens.values():
                if t.member_id == member_id:
                    t.revoked = True
            for t in self.refresh_tokens.values():
                if t.member_id == member_id:
                    t.revoked = True

    # ------------------------------------------------------------------ OAuth server
    def _oauth_error(self, code: str, desc: str, status: int):
        with self.lock:
            self.oauth_log.append({"error": code})
        return json_response({"error": code, "error_description": desc}, status)

    def _oauth_token(self, req: Request):
        if self.oauth_delay:
            time.sleep(self.oauth_delay)
        p = req.params()
        grant = p.get("grant_type")
        if grant == "refresh_token":
            with self.lock:
                self.refresh_calls += 1
        elif grant == "authorization_code":
            with self.lock:
                self.code_calls += 1
        if grant not in ("refresh_token", "authorization_code"):
            return self._oauth_error("invalid_request", "Invalid grant_type", 400)
        if not p.get("client_id") or not p.get("client_secret"):
            return self._oauth_error("invalid_request", "client_id and client_secret are required", 400)
        if p.get("client_id") != self.client_id or p.get("client_secret") != self.client_secret:
            return self._oauth_error("invalid_client", "Invalid client credentials", 401)
        if self.payment_required:
            return self._oauth_error("PAYMENT_REQUIRED", "Payment required", 402)
        with self.lock:
            if grant == "refresh_token":
                if not p.get("refresh_token"):
                    return self._oauth_error("invalid_request", "refresh_token is required", 400)
                rt = self.refresh_tokens.get(p["refresh_token"])
                if rt is None or rt.used:
                    return self._oauth_error("invalid_grant", "Invalid grant", 400)
                portal = self.portals.get(rt.member_id)
                if portal is None or not portal.installed:  # error-codes.md: "or the app is not installed"
                    return self._oauth_error("invalid_client", "Application not installed", 401)
                if rt.revoked:
                    return self._oauth_error("invalid_grant", "Invalid grant", 400)
                rt.used = True
                # old docs: "both the used refresh token and the jointly issued access_token become invalid";
                # we keep the old access token valid until expiry (current docs are silent).
                user_id = rt.user_id
                self.refresh_ok += 1
            else:
                if not p.get("code"):
                    return self._oauth_error("invalid_request", "code is required", 400)
                ac = self.auth_codes.get(p["code"])
                if ac is None or ac.used or time.time() > ac.expires:
                    return self._oauth_error("invalid_grant", "Invalid authorization code", 400)
                portal = self.portals.get(ac.member_id)
                if portal is None or not portal.installed:
                    return self._oauth_error("invalid_client", "Application not installed", 401)
                ac.used = True
                user_id = ac.user_id
            at, new_rt = self.issue_pair(portal, user_id)
            self.oauth_log.append({"grant_type": grant, "ok": True})
            return json_response(self.token_payload(portal, at, new_rt))

    def _server_app_info(self, req: Request):
        p = req.params()
        tok = self.lookup_access(p.get("auth") or p.get("access_token"))
        if tok is None or tok.revoked:
            return json_response({"error": "invalid_token", "error_description": "Unable to get application by token"},
                                 401)
        if tok.expired:
            return json_response({"error": "expired_token", "error_description": "The access token provided has expired"},
                                 401)
        portal = self.portals[tok.member_id]
        return json_response({"result": {
            "client_id": self.client_id,
            "scope": self.scope,
            "expires": int(tok.expires),
            "user_id": tok.user_id,
            "install": {
                "installed": portal.install_finished,
                "version": self.version,
                "status": self.status,
                "scope": self.scope,
                "domain": portal.domain,
                "uri": portal.base_url,
                "client_endpoint": portal.client_endpoint,
                "member_id": portal.member_id,
                "member_type": "PORTAL",
            },
        }})


__all__ = ["Bitrix24Cloud", "B24Error"]
