"""One emulated Bitrix24 portal: its REST endpoint, the queue server that calls our app, events, faults, rename.

Files and download links (``files``), event delivery (``events``) and the queue server's robot runs (``robots``) are
mixins composed into ``Portal``."""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from ..base import EmulatorServer, Request, Response, json_response
from .core import (
    TOKEN_TTL,
    AccessToken,
    B24Error,
    LeakyBucket,
    OperatingBudget,
    Stats,
    expired,
    no_auth,
    rand_hex,
    start_server,
    time_block,
)
from .crm import Crm
from .events import QUEUE_USER_AGENT, EventsMixin  # noqa: F401  (re-exported)
from .files import NGINX_404, FilesMixin  # noqa: F401  (re-exported)
from .robots import RobotsMixin, Workflow
from .sign import SignB2e

PLAN_RATES = {"basic": (50, 2), "enterprise": (250, 5)}


@dataclass
class Ctx:
    """The caller of one REST method: portal, token, user."""
    portal: "Portal"
    token: AccessToken
    user: dict
    in_batch: bool = False

    @property
    def is_admin(self) -> bool:
        return bool(self.user.get("ADMIN"))


@dataclass
class MethodResult:
    result: object
    total: int | None = None
    next: int | None = None


class Portal(FilesMixin, EventsMixin, RobotsMixin):
    def __init__(self, cloud, name: str, plan: str = "basic", rate: tuple | None = None, access_ttl: int = TOKEN_TTL,
                 lang: str = "en", region_document_types: list | None = None):
        self.cloud = cloud
        self.name = name
        self.plan = plan
        burst, drain = rate or PLAN_RATES.get(plan, PLAN_RATES["basic"])
        self.bucket = LeakyBucket(burst, drain)
        self.operating = OperatingBudget()
        self.access_ttl = access_ttl
        self.lang = lang
        self.member_id = rand_hex(32)
        self.application_token = rand_hex(32)
        self.installed = True  # the app is on the portal (it was "installed" from the market)
        self.install_finished = False
        self.installer_user_id = 1
        self.frame_layout = False  # True: frame POSTs in the app-layout shape (no APPLICATION_TOKEN)
        self.secret = secrets.token_bytes(32)
        self.lock = cloud.lock
        self.stats = Stats()
        self.users: dict[int, dict] = {}
        self.robots: dict[str, dict] = {}
        self.event_handlers: list[dict] = []
        self._handler_seq = 0
        self.workflows: dict[str, Workflow] = {}
        self.deliveries: list[dict] = []  # every event POST: event, handler, status
        self.rest_log: list[dict] = []  # every authenticated REST request: method, params (no auth), user_id, at
        self.files: dict[int, dict] = {}
        self._file_seq = 0
        self._fail_next: list[tuple[int, str, str]] = []
        self.method_refusals: dict[str, list] = {}
        self.stale_robot_list: list | None = None  # what bizproc.robot.list shows instead, when set  # method -> [status, code, text, times left (None: always)]
        self._outage_until = 0.0
        self._outage_status = 503
        self.crm = Crm(self)
        # CRM card (methods_placement, methods_timeline, methods_userfields)
        self.placements: list[dict] = []
        self.triggers: dict[str, str] = {}
        self.trigger_runs: list[dict] = []
        self.notifications: list[dict] = []
        self.notify_sends = 0
        self._notify_seq = 0
        self.activities: dict[int, dict] = {}
        self._activity_seq = 0
        self.log_messages: list[dict] = []
        self._logmessage_seq = 0
        self.userfields: dict[str, dict[str, dict]] = {}
        self._userfield_seq = 0
        self.smart_types: list[dict] = []
        self.sign = SignB2e(self, region_document_types=region_document_types)
        self.server = EmulatorServer(f"b24-portal-{name}")
        self._old_servers: list[EmulatorServer] = []
        self._install_routes(self.server)
        start_server(self.server)
        self.add_user(1, "admin@example.com", name="Admin", last_name="Adminov", admin=True)

    # ------------------------------------------------------------------ addresses
    @property
    def domain(self) -> str:
        return self.server.host

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def client_endpoint(self) -> str:
        return f"{self.server.base_url}/rest/"

    def _stop_servers(self) -> None:
        for s in [self.server, *self._old_servers]:
            try:
                s.stop()
            except Exception:
                pass

    # ------------------------------------------------------------------ users
    def add_user(self, id: int, email: str, name: str = "", last_name: str = "", admin: bool = False,
                 active: bool = True, **extra) -> dict:
        user = {"ID": str(id), "ACTIVE": active, "NAME": name, "LAST_NAME": last_name, "SECOND_NAME": "",
                "EMAIL": email, "ADMIN": admin, "XML_ID": "", "PERSONAL_GENDER": "", "TIME_ZONE": "",
                "WORK_POSITION": "", "UF_DEPARTMENT": [1], "USER_TYPE": "employee", **extra}
        with self.lock:
            self.users[int(id)] = user
        return user

    def user(self, user_id) -> dict | None:
        try:
            return self.users.get(int(user_id))
        except (TypeError, ValueError):
            return None

    # ------------------------------------------------------------------ CRM card (test API)
    def add_smart_type(self, entity_type_id: int, title: str) -> dict:
        with self.lock:
            t = {"id": len(self.smart_types) + 1, "entityTypeId": int(entity_type_id), "title": title}
            self.smart_types.append(t)
            return t

    def delete_userfield(self, entity: str, name: str) -> None:
        """An admin deletes a user field: it and its values are gone from every item."""
        from .crm import camel_to_upper
        with self.lock:
            self.userfields.get(entity, {}).pop(name, None)
            for item in self.crm.items.values():
                for key in [k for k in item if k.startswith("ufCrm") and camel_to_upper(k) == name]:
                    del item[key]

    def app_forgets_card(self) -> None:
        """What Bitrix24 drops with the application on update/uninstall: its placements and triggers."""
        self.placements = []
        self.triggers = {}

    # ------------------------------------------------------------------ tokens / frames
    def issue_tokens(self, user_id: int = 1) -> dict:
        """A fresh token pair for ``user_id`` (the OAuth response shape)."""
        at, rt = self.cloud.issue_pair(self, user_id)
        return self.cloud.token_payload(self, at, rt)

    def authorize(self, user_id: int = 1) -> str:
        """An authorization code (valid 30 s) as the portal's /oauth/authorize/ would redirect with."""
        from .core import AuthCode
        code = rand_hex(32)
        with self.lock:
            self.cloud.auth_codes[code] = AuthCode(code, self.member_id, int(user_id), time.time() + 30)
        return code

    def app_page_request(self, user_id: int = 1, placement: str = "DEFAULT", options=None, lang: str | None = None,
                         layout: bool | None = None):
        """(query, body) of the POST Bitrix24 sends when a user opens the app or a placement (spec §1.2).

        Two shapes exist.  A cloud portal's frame POST carries ``APPLICATION_TOKEN`` and ``SERVER_ENDPOINT``
        (readable by every user who opens the app).  Bitrix24's app-layout component (``layout=True``) and
        the current docs (b24restdocs widgets/_includes/widget_data.md) send neither, and leave out
        ``PLACEMENT_OPTIONS`` when it is empty.  ``layout=None`` takes the portal's ``frame_layout`` knob."""
        layout = self.frame_layout if layout is None else layout
        tok = self.issue_tokens(user_id)
        query = {"DOMAIN": self.domain, "PROTOCOL": "0", "LANG": lang or self.lang, "APP_SID": rand_hex(32)}
        body = {
            "AUTH_ID": tok["access_token"], "AUTH_EXPIRES": str(self.access_ttl), "REFRESH_ID": tok["refresh_token"],
            "SERVER_ENDPOINT": self.cloud.server_endpoint, "APPLICATION_TOKEN": self.application_token,
            "APPLICATION_SCOPE": self.cloud.scope, "member_id": self.member_id, "status": self.cloud.status,
            "PLACEMENT": placement,
        }
        if options is not None:
            body["PLACEMENT_OPTIONS"] = options if isinstance(options, str) else json.dumps(options)
        if layout:
            body.pop("APPLICATION_TOKEN")
            body.pop("SERVER_ENDPOINT")
            if body.get("PLACEMENT_OPTIONS") in (None, "", "[]", "{}"):
                body.pop("PLACEMENT_OPTIONS", None)
        return query, body

    def install_request(self, user_id: int = 1, lang: str = "en", layout: bool | None = None):
        """(query, body) of the install page POST.  After an uninstall this is a re-install from the
        market: the app is on the portal again, with a new application token, not yet finished."""
        with self.lock:
            self.installer_user_id = int(user_id)
            if not self.installed:
                self.installed = True
                self.install_finished = False
                self.application_token = rand_hex(32)
        return self.app_page_request(user_id, "DEFAULT", None, lang, layout=layout)

    def finish_install(self) -> None:
        """BX24.installFinish(): from now on events are delivered and app.info says INSTALLED."""
        with self.lock:
            self.install_finished = True

    def expire_access_tokens(self) -> None:
        with self.lock:
            for t in self.cloud.access_tokens.values():
                if t.member_id == self.member_id:
                    t.expires = time.time() - 1

    # ------------------------------------------------------------------ faults
    def fail_next(self, n: int = 1, status: int = 503, error: str = "QUERY_LIMIT_EXCEEDED",
                  description: str = "Too many requests") -> None:
        with self.lock:
            self._fail_next.extend([(status, error, description)] * n)

    def refuse_method(self, method: str, status: int, error: str, description: str = "",
                      times: int | None = None) -> None:
        """Answer ``method`` (also inside a batch) with this error, as the real portal does when e.g. the
        plan no longer allows the app (``ACCESS_DENIED``) or the token lost a scope; ``times`` None = always."""
        with self.lock:
            self.method_refusals[method.lower()] = [status, error, description, times]

    def method_refusal(self, method: str):
        """The B24Error ``refuse_method`` set for this method, once per call (None when there is none)."""
        from .core import B24Error

        with self.lock:
            rule = self.method_refusals.get(method)
            if not rule:
                return None
            status, error, description, times = rule
            if times is not None:
                if times <= 0:
                    return None
                rule[3] = times - 1
            self.stats.injected_faults += 1
        return B24Error(error, description, status)

    def outage(self, seconds: float, status: int = 503, error: str = "QUERY_LIMIT_EXCEEDED",
               description: str = "Too many requests") -> None:
        with self.lock:
            self._outage_until = time.time() + seconds
            self._outage_status = (status, error, description)

    def _fault(self) -> Response | None:
        with self.lock:
            if self._fail_next:
                status, err, desc = self._fail_next.pop(0)
            elif time.time() < self._outage_until:
                status, err, desc = self._outage_status
            else:
                return None
            self.stats.injected_faults += 1
        return json_response({"error": err, "error_description": desc}, status)

    # ------------------------------------------------------------------ rename (§2.7)
    def rename(self, new: bool = True) -> str:
        """Move the portal to a new host; every old host answers 302 to the new one. Returns the new domain."""
        old = self.server
        fresh = EmulatorServer(f"b24-portal-{self.name}-renamed")
        self._install_routes(fresh)
        start_server(fresh)
        portal = self

        def redirect(req: Request):
            with portal.lock:
                portal.stats.redirects += 1
            qs = urlencode(req.query_pairs)
            loc = f"{portal.base_url}{req.path}" + (f"?{qs}" if qs else "")
            return Response(302, b"", {"Location": loc})

        with self.lock:
            old.routes[:] = []
            old.add_route("*", r"^.*$", redirect)
            self._old_servers.append(old)
            self.server = fresh
        return self.domain

    # ------------------------------------------------------------------ HTTP routes
    def _install_routes(self, server: EmulatorServer) -> None:
        server.add_route("GET", r"^/rest/download(?:\.json)?$", self._download)
        server.add_route("GET", r"^/rest/crm\.controller\.item\.getFile(?:\.json)?$", self._download)
        server.add_route("*", r"^/rest/(?P<method>[A-Za-z0-9_.]+?)(?:\.json)?/?$", self._rest)

    def _rest(self, req: Request, method: str):
        from .methods import batch, call_method

        start = time.time()
        method = method.lower()
        with self.lock:
            self.stats.requests += 1
            self.stats.by_method[method] += 1
        fault = self._fault()
        if fault is not None:
            return fault
        if not self.bucket.hit():
            with self.lock:
                self.stats.rejected_503 += 1
            return json_response({"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}, 503)
        with self.lock:
            self.stats.max_bucket_level = max(self.stats.max_bucket_level, self.bucket.max_level)
        try:
            try:
                params = req.params()
            except ValueError:
                raise B24Error("INVALID_REQUEST", "Invalid request body", 400)
            ctx = self.authenticate(params.get("auth"))
            with self.lock:
                self.rest_log.append({"method": method, "user_id": ctx.token.user_id, "at": start,
                                      "params": {k: v for k, v in params.items() if k != "auth"}})
            if method == "batch":
                body = batch(ctx, params, start)
            else:
                res, operating, reset_at = call_method(ctx, method, params)
                body = {"result": res.result}
                if res.total is not None:
                    body["total"] = res.total
                if res.next is not None:
                    body["next"] = res.next
                body["time"] = time_block(start, operating, reset_at)
            return json_response(body)
        except B24Error as e:
            with self.lock:
                self.stats.errors_by_code[e.code] += 1
                if e.status == 429:
                    self.stats.rejected_429 += 1
                if e.status == 401:
                    self.stats.rejected_401 += 1
            return e.response()

    def authenticate(self, token: str | None) -> Ctx:
        tok = self.cloud.lookup_access(token if isinstance(token, str) else None)
        if tok is None or tok.member_id != self.member_id:
            raise no_auth()
        if tok.revoked or not self.installed:
            raise B24Error("invalid_token", "Unable to get application by token", 401)
        if tok.expired:
            raise expired()
        user = self.user(tok.user_id)
        if user is None or not user.get("ACTIVE"):
            raise B24Error("UNABLE_TO_AUTHORIZE_USER", "Unable to authorize user", 401)
        return Ctx(self, tok, user)

    # ------------------------------------------------------------------ sign.b2e hooks
    def sign_b2e_member_signs(self, document_uid: str, user_id: int) -> list:
        return self.sign.member_action(document_uid, user_id, "signs")

    def sign_b2e_member_refuses(self, document_uid: str, user_id: int) -> list:
        return self.sign.member_action(document_uid, user_id, "refuses")

    def sign_b2e_stop(self, document_uid: str) -> list:
        return self.sign.stop(document_uid)
