"""One emulated Bitrix24 portal: its REST endpoint, the queue server that calls our app, events, faults, rename."""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import requests

from ..base import EmulatorServer, Request, Response, json_response, php_build_query
from .core import (TOKEN_TTL, AccessToken, B24Error, LeakyBucket, OperatingBudget, Stats, expired, no_auth, rand_alnum,
                   rand_hex, start_server, time_block)
from .crm import Crm
from .sign import SignB2e

PLAN_RATES = {"basic": (50, 2), "enterprise": (250, 5)}
QUEUE_USER_AGENT = "Bitrix24 Webhook Engine"
NGINX_404 = ("<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>"
             "\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")


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


@dataclass
class Workflow:
    """One robot run: what the queue server sent, what our handler answered, what came back."""
    workflow_id: str
    activity_name: str
    event_id: str | None
    event_token: str
    code: str
    document_id: list
    document_type: list | None
    properties: dict
    user_id: int
    use_subscription: str
    timeout_duration: int
    robot: dict  # snapshot of the registration at start
    pairs: list = field(default_factory=list)  # the exact form pairs POSTed
    deliveries: list = field(default_factory=list)  # [(status or None, body or exception text)]
    answers: list = field(default_factory=list)  # accepted bizproc.event.send params
    log: list = field(default_factory=list)  # activity.log messages (and the event.send LOG_MESSAGE)
    ignored_sends: list = field(default_factory=list)  # sends that reached a closed activity
    closed: bool = False
    terminated: bool = False
    is_timeout: bool = False
    return_values: dict = field(default_factory=dict)

    @property
    def response_status(self):
        return self.deliveries[0][0] if self.deliveries else None

    @property
    def response_body(self):
        return self.deliveries[0][1] if self.deliveries else None

    @property
    def delivered_form(self) -> dict:
        from ..base import parse_php_form
        return parse_php_form(self.pairs)


class Portal:
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
        self.secret = secrets.token_bytes(32)
        self.lock = cloud.lock
        self.stats = Stats()
        self.users: dict[int, dict] = {}
        self.robots: dict[str, dict] = {}
        self.event_handlers: list[dict] = []
        self._handler_seq = 0
        self.workflows: dict[str, Workflow] = {}
        self.deliveries: list[dict] = []  # every event POST: event, handler, status
        self.files: dict[int, dict] = {}
        self._file_seq = 0
        self._fail_next: list[tuple[int, str, str]] = []
        self._outage_until = 0.0
        self._outage_status = 503
        self.crm = Crm(self)
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

    def app_page_request(self, user_id: int = 1, placement: str = "DEFAULT", options=None, lang: str | None = None):
        """(query, body) of the POST Bitrix24 sends when a user opens the app or a placement (spec §1.2)."""
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
        return query, body

    def install_request(self, user_id: int = 1, lang: str = "en"):
        """(query, body) of the install page POST.  After an uninstall this is a re-install from the
        market: the app is on the portal again, with a new application token, not yet finished."""
        with self.lock:
            self.installer_user_id = int(user_id)
            if not self.installed:
                self.installed = True
                self.install_finished = False
                self.application_token = rand_hex(32)
        return self.app_page_request(user_id, "DEFAULT", None, lang)

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

    # ------------------------------------------------------------------ files and download links
    def store_file(self, name: str, data: bytes, mime: str | None = None) -> int:
        with self.lock:
            self._file_seq += 1
            fid = self._file_seq
            self.files[fid] = {"id": fid, "name": name, "data": bytes(data),
                               "mime": mime or ("application/pdf" if name.lower().endswith(".pdf")
                                                else "application/octet-stream")}
            return fid

    def _file_sig(self, kind: str, fid: int) -> str:
        return hmac.new(self.secret, f"{kind}|{fid}".encode(), hashlib.sha256).hexdigest()[:24]

    def download_url(self, kind: str, fid: int, auth: str) -> str:
        """``{client_endpoint}download.json?auth=…&token=<kind>|<fid>|<sig>`` (Drive, sign.b2e, docgen)."""
        token = f"{kind}|{fid}|{self._file_sig(kind, fid)}"
        return f"{self.client_endpoint}download.json?" + urlencode({"auth": auth, "token": token})

    def item_file_url(self, entity_type_id: int, item_id: int, field_name: str, fid: int, auth: str) -> str:
        q = {"auth": auth, "entityTypeId": entity_type_id, "id": item_id, "fieldName": field_name, "fileId": fid,
             "sig": self._file_sig("crm", fid)}
        return f"{self.client_endpoint}crm.controller.item.getFile.json?" + urlencode(q)

    def _download(self, req: Request):
        q = req.query
        fid, ok = None, False
        if "token" in q:
            parts = q["token"].split("|")
            if len(parts) == 3 and parts[1].isdigit():
                fid = int(parts[1])
                ok = hmac.compare_digest(parts[2], self._file_sig(parts[0], fid))
        elif "fileId" in q and str(q["fileId"]).isdigit():
            fid = int(q["fileId"])
            ok = hmac.compare_digest(q.get("sig", ""), self._file_sig("crm", fid))
        f = self.files.get(fid) if ok else None
        headers = {"Content-Disposition": f'attachment; filename="{f["name"] if f else "file"}"'}
        ua = req.headers.get("user-agent", "")
        if self.cloud.file_header_check and (not ua or ua.lower().startswith(("python-requests", "python-urllib"))
                                             or not req.headers.get("accept")):
            with self.lock:
                self.stats.downloads_refused += 1
            return Response(404, NGINX_404, {"Content-Type": "text/html", **headers})
        try:
            self.authenticate(q.get("auth"))
        except B24Error as e:
            return e.response()
        if f is None:
            return Response(404, NGINX_404, {"Content-Type": "text/html"})
        with self.lock:
            self.stats.downloads += 1
        return Response(200, f["data"], {"Content-Type": f["mime"], **headers})

    # ------------------------------------------------------------------ events (§1.3–1.6, sign events)
    def _auth_block(self, user_id: int | None, refresh: bool = True, access: bool = True) -> dict:
        auth = {}
        if user_id is not None:
            tok = self.issue_tokens(user_id)
            auth = {"access_token": tok["access_token"] if access else "", "expires": str(tok["expires"]),
                    "expires_in": str(self.access_ttl), "scope": self.cloud.scope, "domain": self.domain,
                    "server_endpoint": self.cloud.server_endpoint, "status": self.cloud.status,
                    "client_endpoint": self.client_endpoint, "member_id": self.member_id,
                    "user_id": str(user_id)}
            if refresh:
                auth["refresh_token"] = tok["refresh_token"]
        auth["application_token"] = self.application_token
        return auth

    def _post(self, url: str, pairs: list, kind: str) -> requests.Response | None:
        headers = {"User-Agent": QUEUE_USER_AGENT, "Content-Type": "application/x-www-form-urlencoded"}
        try:
            if self.cloud.transport is not None:  # e.g. Django's test client, for in-process tests
                resp = self.cloud.transport(url, pairs, headers)
            else:
                resp = requests.post(url, data=pairs, timeout=self.cloud.queue_timeout, allow_redirects=False,
                                     headers=headers)
            status, body = resp.status_code, resp.text
        except requests.RequestException as exc:
            resp, status, body = None, None, repr(exc)
        with self.lock:
            self.deliveries.append({"kind": kind, "url": url, "status": status, "body": body[:2000]})
        return resp

    def fire_event(self, event: str, clean: bool = False, data: dict | None = None,
                   user_id: int | None = None) -> list:
        """POST ``event`` to every handler bound for it (only after finish_install). Returns the responses
        (``None`` for a handler that could not be reached)."""
        event = event.upper()
        uid = user_id if user_id is not None else self.installer_user_id
        with self.lock:
            deliver = self.install_finished
            if event == "ONAPPINSTALL":
                payload_data = {"VERSION": str(self.cloud.version), "ACTIVE": "Y", "INSTALLED": "Y",
                                "LANGUAGE_ID": self.lang}
            elif event == "ONAPPUPDATE":
                prev = self.cloud.version
                self.cloud.version += 1
                self.application_token = rand_hex(32)
                self.robots.clear()  # core RestService::onRestAppUpdate -> onRestAppDelete
                payload_data = {"VERSION": str(self.cloud.version), "PREVIOUS_VERSION": str(prev),
                                "LANGUAGE_ID": self.lang}
            elif event == "ONAPPUNINSTALL":
                payload_data = {"LANGUAGE_ID": self.lang, "CLEAN": "1" if clean else "0"}
            else:
                payload_data = dict(data or {})
            handlers = [h for h in self.event_handlers if h["event"] == event]
        if event == "ONAPPUNINSTALL":
            auth = {"domain": self.domain, "server_endpoint": self.cloud.server_endpoint,
                    "client_endpoint": self.client_endpoint, "member_id": self.member_id,
                    "application_token": self.application_token}
            self.cloud.revoke_portal_tokens(self.member_id)
            with self.lock:
                self.installed = False
                self.robots.clear()
                self.event_handlers = []
        elif event in ("ONAPPINSTALL", "ONAPPUPDATE"):
            auth = self._auth_block(uid, refresh=True) if deliver else {}
        else:
            auth = self._auth_block(uid, refresh=False) if deliver else {}
        if not deliver:
            return []
        out = []
        for h in handlers:
            body = {"event": event, "event_handler_id": str(h["id"]), "data": payload_data, "ts": str(int(time.time())),
                    "auth": auth}
            with self.lock:
                self.stats.event_deliveries += 1
            out.append(self._post(h["handler"], php_build_query(body), f"event:{event}"))
        return out

    # ------------------------------------------------------------------ queue server: robot calls (§3)
    def _event_token(self, wf_id: str, act: str, event_id: str) -> str:
        raw = f"{wf_id}|{act}|{event_id}"
        return raw + "." + hmac.new(self.secret, raw.encode(), hashlib.sha256).hexdigest()

    def parse_event_token(self, token) -> tuple[str, str, str] | None:
        """(workflow_id, activity_name, event_id) if the signature is ours, else None."""
        if not isinstance(token, str) or "." not in token:
            return None
        raw, sig = token.rsplit(".", 1)
        good = hmac.new(self.secret, raw.encode(), hashlib.sha256).hexdigest()
        parts = raw.split("|")
        if len(parts) != 3 or not hmac.compare_digest(sig, good):
            return None
        return parts[0], parts[1], parts[2]

    @staticmethod
    def document_type_for(document_id) -> list:
        module, entity, doc = document_id
        m = re.match(r"^(.*)_\d+$", doc)
        return [module, entity, m.group(1) if m else doc]

    def start_robot(self, code: str, document_id=("crm", "CCrmDocumentDeal", "DEAL_1"), document_type=None,
                    properties: dict | None = None, user_id: int = 1, use_subscription=None,
                    timeout_duration: int = 0, send_refresh_token: bool = True,
                    send_access_token: bool = True, deliver: bool = True) -> Workflow:
        """The queue server runs robot ``code``: POSTs the call to its HANDLER once (no retry).

        ``document_type=None`` derives it from ``document_id``; ``False`` omits it (older core).
        """
        with self.lock:
            if code not in self.robots:
                raise KeyError(f"robot {code!r} is not registered on portal {self.name}")
            robot = copy.deepcopy(self.robots[code])
        if use_subscription is None:
            use_subscription = robot.get("USE_SUBSCRIPTION") == "Y"
        sub = "Y" if use_subscription in (True, "Y") else "N"
        wf_id = f"{rand_hex(14)}.{secrets.randbelow(10**8):08d}"
        act = "A{}_{}_{}_{}".format(*(secrets.randbelow(10**n) for n in (5, 4, 5, 4)))
        event_id = rand_alnum(32)
        token = self._event_token(wf_id, act, event_id)
        doc_id = list(document_id)
        doc_type = None if document_type is False else list(document_type or self.document_type_for(doc_id))
        props = {}
        for k, v in (properties or {}).items():
            if isinstance(v, bool):
                v = "Y" if v else "N"
            elif v is None:
                v = ""
            elif isinstance(v, (list, tuple)):
                v = ["Y" if x is True else "N" if x is False else x for x in v]
            props[k] = v
        payload = {"workflow_id": wf_id, "code": code, "document_id": doc_id}
        if doc_type is not None:
            payload["document_type"] = doc_type
        payload["event_token"] = token
        if props:
            payload["properties"] = props
        payload.update({"use_subscription": sub, "timeout_duration": str(int(timeout_duration)),
                        "ts": str(int(time.time())),
                        "auth": self._auth_block(user_id, refresh=send_refresh_token, access=send_access_token)})
        pairs = php_build_query(payload)
        wf = Workflow(wf_id, act, event_id, token, code, doc_id, doc_type, props, int(user_id), sub,
                      int(timeout_duration), robot, pairs=pairs)
        if sub == "N":  # the activity closes at once; the token is useless
            wf.closed = True
            wf.event_id = None
        with self.lock:
            self.workflows[wf_id] = wf
        if deliver:
            self._deliver_robot(wf, pairs)
        return wf

    def _deliver_robot(self, wf: Workflow, pairs: list) -> requests.Response | None:
        with self.lock:
            self.stats.robot_deliveries += 1
        resp = self._post(wf.robot["HANDLER"], pairs, f"robot:{wf.code}")
        wf.deliveries.append((resp.status_code, resp.text) if resp is not None
                             else (None, self.deliveries[-1]["body"]))
        return resp

    def post_robot_call(self, workflow: Workflow, raw_pairs=None) -> requests.Response | None:
        """Re-POST the same delivery (a duplicate) or arbitrary pairs/dict to the robot's handler."""
        if raw_pairs is None:
            pairs = workflow.pairs
        elif isinstance(raw_pairs, dict):
            pairs = php_build_query(raw_pairs)
        else:
            pairs = list(raw_pairs)
        return self._deliver_robot(workflow, pairs)

    def workflow(self, event_token_or_id: str) -> Workflow | None:
        parsed = self.parse_event_token(event_token_or_id)
        return self.workflows.get(parsed[0] if parsed else event_token_or_id)

    def timeout_workflow(self, wf: Workflow) -> None:
        """The robot's timeout fired: IsTimeout=1, the activity closes, the token is dead."""
        with self.lock:
            wf.closed, wf.is_timeout, wf.event_id = True, True, None
            wf.return_values["IsTimeout"] = 1

    def terminate_workflow(self, wf: Workflow) -> None:
        with self.lock:
            wf.closed, wf.terminated, wf.event_id = True, True, None

    # ------------------------------------------------------------------ sign.b2e hooks
    def sign_b2e_member_signs(self, document_uid: str, user_id: int) -> list:
        return self.sign.member_action(document_uid, user_id, "signs")

    def sign_b2e_member_refuses(self, document_uid: str, user_id: int) -> list:
        return self.sign.member_action(document_uid, user_id, "refuses")

    def sign_b2e_stop(self, document_uid: str) -> list:
        return self.sign.stop(document_uid)
