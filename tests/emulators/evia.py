"""Evia Sign (Enadoc) API v2 emulator (``EVIA_API_BASE``), following /work/shared/specs/esign-providers.md §2
and the seed ``evia-sign-add-signatory.txt`` -- not any product code.

``emu.base_url`` is the host root; every path keeps its documented ``/_apis/...`` prefix:

* ``GET  /_apis/falcon/auth/oauth2/authorize?application_state=external&resource=RESOURCE_APPLICATION&client_id=
  &scope=Sign%20Falcon%20Licensing&response_type=code`` -> 302 to ``emu.redirect_uri?code=`` (or JSON ``{code}``
  when no redirect_uri is set).  Tests usually call ``emu.issue_auth_code()`` instead.
* ``POST /_apis/falcon/auth/api/v2/token`` (Basic client creds, form) -> ``{access_token, refresh_token,
  token_type:"bearer", expires_in:3600}``; grants ``authorization_code`` (single-use code) and ``refresh_token``
  (rotating: the old refresh token dies).  Errors ``401 {"error":"invalid_client"}``, ``400 {"error":
  "invalid_grant"|"unsupported_grant_type"|"invalid_request"}``.
* ``POST /_apis/sign/thumbs/api/v2/requests/document`` multipart ``File`` (PDF) -> ``{documentToken}``; the v1
  path ``/_apis/sign/thumbs/api/Requests/document`` works too (the migration guide says it still does, U-E6).
* ``POST /_apis/sign/api/v2/requests?type=0`` ``{Title, Message, Documents[], AuditDetails{}, Connections?,
  CallbackUrl?, CallbackTypes?, CompletedDocumentsAttached?}`` -> ``{requestId}`` (only type 0 is emulated).
* ``POST /_apis/sign/api/v2/requests/{id}/signatories`` -- exactly the seed's fields (unknown fields -> 400
  while ``strict_fields``) -> ``{requestId, signatoryId}``.
* ``POST /_apis/sign/api/v2/requests/{id}/signatories/{sid}/stamps {Identifier, Type, Order?, Color?, Offset?,
  StampSize?|Size?}`` -> ``{requestId, stampsCount}``.
* ``POST /_apis/sign/api/v2/requests/{id}/send`` -> ``{requestId, status:"sent"}``.  Requires ≥1 signatory
  with SignatoryType 1 and a ``signature`` stamp for every SignatoryType-1 signatory (our judgement: the
  fixed-positioning page says a request needs at least one signing signatory; a signer without a signature
  placeholder could not sign).  CC signatories cannot carry stamps.
* ``POST|GET /_apis/sign/api/v2/webhooks`` account webhooks ``{url, events:["request.sent","request.completed"]}``.

Bodies are read case-insensitively (ASP.NET binding; PascalCase and camelCase both work).  Errors are JSON
``{"title", "status", "message", "errors": {Field: [msg]}}`` with 400/401/404 (401 ``message`` is "Access token
is expired" or "Invalid access token"; 404 ``message`` "Request ID not found").

Callbacks (per-request ``CallbackUrl`` and account webhooks), the captured v1 shape, **no signature**
(none is documented)::

    {RequestId, UserName, Email, Subject, EventId, EventDescription, EventTime, Documents?[{DocumentName,
     DocumentContent (base64 PDF)}]}

EventId 1 SignRequestReceived (per notified signatory, at send and when their order opens), 2
SignatoryCompleted, 3 RequestCompleted (UserName/Email of the last signer; ``Documents`` when
``CompletedDocumentsAttached``; the audit trail PDF too when ``attach_audit_trail``), 5 RequestRejected.  The last
EventId 2 and the EventId 3 are posted ``completion_gap`` (0.1 s) apart, as captured; ``async_webhooks = True``
with ``completion_gap = 0`` makes them race.  ``duplicate_received = True`` re-sends each EventId 1 (the
khrental capture).

Readings chosen where the spec is unconfirmed (§7):

* U-E1 refresh: ``refresh_token_style = "form"`` (standard ``grant_type=refresh_token&refresh_token=`` form);
  ``"multipart"`` accepts only the third-party ``Grant_Type=Refresh_Token`` + ``Refresh_Token`` multipart
  form; ``"both"`` accepts either.
* U-E2 ``CallbackTypes``: integers (EventIds) or names (``request.sent``=1, ``signatory.completed``=2,
  ``request.completed``=3, ``request.rejected``=5) filter the per-request callbacks; absent = all events.
* U-E3 status/download/cancel: NOT DOCUMENTED.  Third-party guesses, served only while
  ``undocumented_endpoints`` is True (**default True**): ``GET /_apis/sign/api/v2/requests/{id}``,
  ``GET .../requests/{id}/documents`` -> ``[{documentName, downloadUrl}]``,
  ``GET /_apis/sign/api/v2/documents/{token}/download``, ``POST .../requests/{id}/cancel``.
* U-E4: callbacks carry no authenticity proof.  U-E5: reject is EventId 5; there is no expiry event.
* OTP: ``MobileNumber`` must be E.164 (``+`` and 8-15 digits) for Type 2/4 when ``IsRequired``; ``AccessCode``
  is required for Type 3 when ``IsRequired``.
* §6.7 propagation delay: ``stamp_propagation_delay`` seconds (default 0) during which a new signatory is
  not yet visible to the stamps endpoint (404).

Hooks: ``issue_auth_code()``, ``sign(request_id, email)`` (an approver "signs" = approves),
``reject(request_id, email, reason)``, ``outage``, ``fail_next``, ``delay``, ``rate_limit_per_s``,
``expire_tokens()``.  State: ``requests[id]`` (status draft|sent|completed|rejected|cancelled, signatories with
status draft|waiting|pending|completed|rejected|cc), ``uploads[token]``, ``sent_emails``, ``calls``,
``webhook_deliveries`` (each with ``event_id`` and the parsed ``payload``).
"""
from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import urlencode

from .base import Request, Response, json_response
from .pdf import is_pdf, make_pdf, page_count
from .signnow import ProviderEmulator, as_int, is_email, parse_multipart

E164_RE = re.compile(r"^\+[1-9]\d{7,14}$")
HEX_COLOR_RE = re.compile(r"^#(?:[0-9a-fA-F]{3}){1,2}$")
STAMP_TYPES = {"signature", "initial", "name", "email", "date", "text"}
EVENT_NAMES = {1: "SignRequestReceived", 2: "SignatoryCompleted", 3: "RequestCompleted", 5: "RequestRejected"}
CALLBACK_TYPE_NAMES = {"request.sent": 1, "signatory.completed": 2, "request.completed": 3, "request.rejected": 5}
WEBHOOK_EVENTS = {"request.sent": 1, "request.completed": 3}
SIGNATORY_FIELDS = {"email", "name", "order", "privatemessage", "signatorytype", "color", "otp"}
OTP_FIELDS = {"isrequired", "accesscode", "type", "mobilenumber"}
SIGN = "/_apis/sign/api/v2"


def _bad(message: str, errors: dict | None = None, status: int = 400) -> Response:
    title = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}.get(status, "Error")
    return json_response({"title": title, "status": status, "message": message, "errors": errors or {}}, status)


def _field_err(field: str, msg: str) -> Response:
    return _bad(f"{field}: {msg}", {field: [msg]})


def _ci(d: dict) -> dict:
    """Case-insensitive view: lower-case key -> value."""
    return {str(k).lower(): v for k, v in d.items()}


def _iso(ts: float | None = None) -> str:
    dt = datetime.fromtimestamp(ts or time.time(), tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class EviaEmulator(ProviderEmulator):
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

    # ------------------------------------------------------------------------------------------------ auth
    def issue_auth_code(self) -> str:
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.auth_codes[code] = time.time() + 600
        return code

    def _issue(self) -> dict:
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self.tokens[access] = {"expires_at": time.time() + self.token_ttl, "refresh_token": refresh}
        self.refresh_tokens[refresh] = {"created": time.time()}
        return {"access_token": access, "refresh_token": refresh, "token_type": "bearer",
                "expires_in": self.token_ttl}

    def issue_token(self) -> str:
        with self.lock:
            return self._issue()["access_token"]

    def expire_tokens(self) -> None:
        with self.lock:
            for t in self.tokens.values():
                t["expires_at"] = time.time() - 1

    def h_authorize(self, req: Request) -> Response:
        q = req.query
        if q.get("client_id") != self.client_id:
            return _bad("Invalid client_id", {"client_id": ["unknown application"]})
        expected = {"application_state": "external", "resource": "RESOURCE_APPLICATION", "response_type": "code"}
        for k, v in expected.items():
            if q.get(k) != v:
                return _field_err(k, f"must be '{v}'")
        if "Sign" not in (q.get("scope") or "").split():
            return _field_err("scope", "must include Sign")
        code = self.issue_auth_code()
        if self.redirect_uri:
            sep = "&" if "?" in self.redirect_uri else "?"
            return Response(302, b"", {"Location": f"{self.redirect_uri}{sep}{urlencode({'code': code})}"})
        return json_response({"code": code})

    def h_token(self, req: Request) -> Response:
        auth = req.headers.get("authorization", "")
        try:
            cid, _, secret = base64.b64decode(auth[6:].strip()).decode().partition(":")
        except Exception:
            cid, secret = "", ""
        if auth[:6].lower() != "basic " or cid != self.client_id or secret != self.client_secret:
            return json_response({"error": "invalid_client"}, 401)
        mp = parse_multipart(req)
        if mp is not None:
            form, multipart = mp[0], True
        elif req.content_type == "application/x-www-form-urlencoded":
            form, multipart = req.form(), False
        else:
            return json_response({"error": "invalid_request", "error_description": "form body expected"}, 400)
        f = _ci(form)
        grant = str(f.get("grant_type", "")).lower()
        with self.lock:
            if grant == "authorization_code" and not multipart:
                if f.get("client_id") not in (None, self.client_id) or \
                        f.get("client_secret") not in (None, self.client_secret):
                    return json_response({"error": "invalid_client"}, 401)
                exp = self.auth_codes.pop(f.get("code") or "", None)
                if not exp or exp < time.time():
                    return json_response({"error": "invalid_grant"}, 400)
                return json_response(self._issue())
            if grant == "refresh_token":
                style_ok = {"form": not multipart, "multipart": multipart, "both": True}[self.refresh_token_style]
                # the third-party multipart reading spells the keys Grant_Type / Refresh_Token
                if multipart and "Refresh_Token" not in form:
                    style_ok = False
                if not style_ok:
                    return json_response({"error": "invalid_request"}, 400)
                if not self.refresh_tokens.pop(f.get("refresh_token") or "", None):
                    return json_response({"error": "invalid_grant"}, 400)
                return json_response(self._issue())
        return json_response({"error": "unsupported_grant_type"}, 400)

    def _auth(self, req: Request) -> Response | None:
        auth = req.headers.get("authorization", "")
        tok = self.tokens.get(auth[7:].strip()) if auth[:7].lower() == "bearer " else None
        if not tok:
            return _bad("Invalid access token", status=401)
        if tok["expires_at"] <= time.time():
            return _bad("Access token is expired", status=401)
        return None

    def _json(self, req: Request):
        if req.content_type != "application/json":
            return None, _bad("Content-Type must be application/json")
        try:
            body = req.json()
        except ValueError:
            return None, _bad("The request body is not valid JSON")
        if not isinstance(body, dict):
            return None, _bad("The request body must be a JSON object")
        return body, None

    def _request(self, rid: str):
        rq = self.requests.get(rid)
        return rq, (None if rq else _bad("Request ID not found", status=404))

    # ------------------------------------------------------------------------------------------------ upload/create
    def h_upload(self, req: Request) -> Response:
        err = self._auth(req)
        if err:
            return err
        mp = parse_multipart(req)
        if mp is None or "File" not in mp[1]:
            return _field_err("File", "A file is required (multipart form field 'File')")
        filename, data, _ = mp[1]["File"]
        if not data or not is_pdf(data) or not filename.lower().endswith((".pdf", ".doc", ".docx")):
            return _field_err("File", "Allowed extensions are PDF, DOC, DOCX")
        token = str(uuid.uuid4())
        with self.lock:
            self.uploads[token] = {"name": filename, "pdf": data, "pages": page_count(data)}
        return json_response({"documentToken": token})

    def h_create(self, req: Request) -> Response:
        err = self._auth(req)
        if err:
            return err
        typ = req.query.get("type")
        if typ not in ("0", "1", "2", "3"):
            return _field_err("type", "type must be 0, 1, 2 or 3")
        if typ != "0":
            return _field_err("type", f"type={typ} is not emulated; use type=0 (skeleton)")
        body, err = self._json(req)
        if err:
            return err
        b = _ci(body)
        for k, name in (("title", "Title"), ("message", "Message")):
            if not isinstance(b.get(k), str) or not b[k].strip():
                return _field_err(name, f"The {name} field is required.")
        docs = b.get("documents")
        if not isinstance(docs, list) or not docs or not all(isinstance(d, str) for d in docs):
            return _field_err("Documents", "At least one document token is required.")
        unknown = [d for d in docs if d not in self.uploads]
        if unknown:
            return _field_err("Documents", f"Unknown document token(s): {', '.join(unknown)}")
        if not isinstance(b.get("auditdetails"), dict):
            return _field_err("AuditDetails", "The AuditDetails field is required.")
        cb = b.get("callbackurl")
        if cb not in (None, "") and not (isinstance(cb, str) and re.match(r"^https?://[^\s/]+", cb)):
            return _field_err("CallbackUrl", "CallbackUrl must be an absolute http(s) URL.")
        types = b.get("callbacktypes")
        type_ids = None
        if types not in (None, []):
            if not isinstance(types, list):
                return _field_err("CallbackTypes", "CallbackTypes must be an array.")
            type_ids = set()
            for t in types:
                if isinstance(t, int) and not isinstance(t, bool) and t in EVENT_NAMES:
                    type_ids.add(t)
                elif isinstance(t, str) and t in CALLBACK_TYPE_NAMES:
                    type_ids.add(CALLBACK_TYPE_NAMES[t])
                else:
                    return _field_err("CallbackTypes", f"Unknown callback type {t!r}.")
        attached = b.get("completeddocumentsattached", False)
        if not isinstance(attached, bool):
            return _field_err("CompletedDocumentsAttached", "must be a boolean.")
        rid = str(uuid.uuid4())
        with self.lock:
            self.requests[rid] = {
                "requestId": rid, "title": b["title"], "message": b["message"], "documents": list(docs),
                "audit_details": b["auditdetails"], "connections": b.get("connections"),
                "callback_url": cb or None, "callback_types": type_ids, "attach": attached,
                "status": "draft", "signatories": [], "created": time.time(), "events": [],
            }
        return json_response({"requestId": rid})

    # ------------------------------------------------------------------------------------------------ signatories
    def h_signatory(self, req: Request, rid: str) -> Response:
        err = self._auth(req)
        if err:
            return err
        rq, err = self._request(rid)
        if err:
            return err
        body, err = self._json(req)
        if err:
            return err
        b = _ci(body)
        if self.strict_fields:
            extra = sorted(k for k in body if str(k).lower() not in SIGNATORY_FIELDS)
            if extra:
                return _bad(f"Unknown field(s): {', '.join(extra)}", {k: ["unknown field"] for k in extra})
        if not is_email(b.get("email")):
            return _field_err("Email", "A valid Email is required.")
        if not isinstance(b.get("name"), str) or not b["name"].strip():
            return _field_err("Name", "The Name field is required.")
        order = b.get("order")
        if not isinstance(order, int) or isinstance(order, bool) or order < 1:
            return _field_err("Order", "Order is required and must be a positive integer.")
        st = b.get("signatorytype")
        if st not in (1, 2, 3) or isinstance(st, bool):
            return _field_err("SignatoryType", "SignatoryType must be 1 (Signer), 2 (Approver) or 3 (CC).")
        if b.get("privatemessage") is not None and not isinstance(b["privatemessage"], str):
            return _field_err("PrivateMessage", "must be a string.")
        color = b.get("color")
        if color not in (None, "") and not (isinstance(color, str) and HEX_COLOR_RE.match(color)):
            return _field_err("Color", "Color must be a hex colour like #7c95f4.")
        otp = b.get("otp")
        otp_state = None
        if otp is not None:
            if not isinstance(otp, dict):
                return _field_err("OTP", "OTP must be an object.")
            o = _ci(otp)
            if self.strict_fields:
                extra = sorted(k for k in otp if str(k).lower() not in OTP_FIELDS)
                if extra:
                    return _bad(f"Unknown OTP field(s): {', '.join(extra)}", {f"OTP.{k}": ["unknown field"]
                                                                             for k in extra})
            if not isinstance(o.get("isrequired"), bool):
                return _field_err("OTP.IsRequired", "OTP.IsRequired is required (boolean).")
            otype = o.get("type")
            if otype not in (1, 2, 3, 4) or isinstance(otype, bool):
                return _field_err("OTP.Type", "OTP.Type must be 1 (Email), 2 (SMS), 3 (AccessCode) or 4 (Email & SMS).")
            mobile = o.get("mobilenumber")
            if o["isrequired"] and otype in (2, 4):
                if not mobile:
                    return _field_err("OTP.MobileNumber", "MobileNumber is required for SMS OTP (Type 2 or 4).")
                if not (isinstance(mobile, str) and E164_RE.match(mobile)):
                    return _field_err("OTP.MobileNumber", "MobileNumber must be a valid number (E.164, e.g. +14155550100).")
            if o["isrequired"] and otype == 3 and not (isinstance(o.get("accesscode"), str) and o["accesscode"].strip()):
                return _field_err("OTP.AccessCode", "AccessCode is required for OTP Type 3.")
            otp_state = {"IsRequired": o["isrequired"], "Type": otype, "AccessCode": o.get("accesscode") or "",
                         "MobileNumber": mobile or ""}
        with self.lock:
            if rq["status"] != "draft":
                return _bad("Signatories can only be added before the request is sent.")
            if any(s["email"].lower() == b["email"].lower() for s in rq["signatories"]):
                return _field_err("Email", "This email is already a signatory of the request.")
            sid = str(uuid.uuid4())
            rq["signatories"].append({
                "signatoryId": sid, "email": b["email"], "name": b["name"], "order": order, "type": st,
                "private_message": b.get("privatemessage"), "color": color, "otp": otp_state, "stamps": [],
                "status": "draft", "created": time.time(), "completed_at": None,
            })
        return json_response({"requestId": rid, "signatoryId": sid})

    def h_stamp(self, req: Request, rid: str, sid: str) -> Response:
        err = self._auth(req)
        if err:
            return err
        rq, err = self._request(rid)
        if err:
            return err
        sig = next((s for s in rq["signatories"] if s["signatoryId"] == sid), None)
        if not sig or time.time() - sig["created"] < self.stamp_propagation_delay:
            return _bad("Signatory not found", status=404)
        body, err = self._json(req)
        if err:
            return err
        b = _ci(body)
        ident = b.get("identifier")
        if not isinstance(ident, str) or not ident.strip():
            return _field_err("Identifier", "The Identifier field is required.")
        if b.get("type") not in STAMP_TYPES:
            return _field_err("Type", f"Type must be one of: {', '.join(sorted(STAMP_TYPES))}.")
        if b.get("order") is not None and as_int(b["order"]) is None:
            return _field_err("Order", "must be an integer.")
        if b.get("color") not in (None, "") and not (isinstance(b["color"], str) and HEX_COLOR_RE.match(b["color"])):
            return _field_err("Color", "Color must be a hex colour.")
        for k, name in (("offset", "Offset"), ("stampsize", "StampSize"), ("size", "Size")):
            if b.get(k) is not None and not isinstance(b[k], dict):
                return _field_err(name, "must be an object.")
        if self.require_identifier_in_document:
            texts = b"".join(self.uploads[d]["pdf"] for d in rq["documents"])
            if ident.encode() not in texts:
                return _field_err("Identifier", f"Identifier {ident!r} was not found in the documents.")
        with self.lock:
            if rq["status"] != "draft":
                return _bad("Stamps can only be added before the request is sent.")
            if sig["type"] == 3:
                return _field_err("SignatoryType", "CC signatories cannot have stamps.")
            if any(s["Identifier"] == ident for s in sig["stamps"]):
                return _field_err("Identifier", "Identifier must be unique per signatory.")
            sig["stamps"].append({"Identifier": ident, "Type": b["type"], "Order": b.get("order"),
                                  "Color": b.get("color"), "Offset": b.get("offset"),
                                  "Size": b.get("stampsize") or b.get("size")})
            count = sum(len(s["stamps"]) for s in rq["signatories"])
        return json_response({"requestId": rid, "stampsCount": count})

    # ------------------------------------------------------------------------------------------------ send & flow
    def _actionable(self, rq: dict) -> list[dict]:
        return [s for s in rq["signatories"] if s["type"] in (1, 2)]

    def _open_next(self, rq: dict) -> list[dict]:
        """Signatories whose turn starts now: the lowest open Order (equal Order = parallel)."""
        open_ = [s for s in self._actionable(rq) if s["status"] in ("waiting", "pending")]
        if not open_:
            return []
        current = min(s["order"] for s in open_)
        newly = [s for s in open_ if s["order"] == current and s["status"] == "waiting"]
        for s in newly:
            s["status"] = "pending"
            self.sent_emails.append({"kind": "sign_request", "to": s["email"], "requestId": rq["requestId"],
                                     "private_message": s["private_message"], "otp": s["otp"], "ts": time.time()})
        return newly

    def h_send(self, req: Request, rid: str) -> Response:
        err = self._auth(req)
        if err:
            return err
        rq, err = self._request(rid)
        if err:
            return err
        with self.lock:
            if rq["status"] != "draft":
                return _bad(f"Request has already been sent (status {rq['status']}).")
            signers = [s for s in rq["signatories"] if s["type"] == 1]
            if not signers:
                return _field_err("Signatories", "At least one signatory with SignatoryType 1 (Signer) is required.")
            for s in signers:
                if not any(st["Type"] == "signature" for st in s["stamps"]):
                    return _field_err("Stamps", f"Signer {s['email']} has no signature stamp.")
            rq["status"] = "sent"
            rq["sent_at"] = time.time()
            for s in rq["signatories"]:
                s["status"] = "cc" if s["type"] == 3 else "waiting"
            batch = [self._callback(rq, 1, s) for s in self._open_next(rq)]
            if self.duplicate_received:
                batch = [x for item in batch for x in (item, item)]
        self._post_all(self._flatten(batch))
        return json_response({"requestId": rid, "status": "sent"})

    def _callback(self, rq: dict, event_id: int, who: dict | None) -> list[tuple]:
        """(url, body, headers, record) items for one event: the request CallbackUrl + account webhooks."""
        payload = {"RequestId": rq["requestId"], "UserName": who["name"] if who else "",
                   "Email": who["email"] if who else "", "Subject": rq["title"], "EventId": event_id,
                   "EventDescription": EVENT_NAMES[event_id], "EventTime": _iso()}
        if event_id == 3 and rq["attach"]:
            payload["Documents"] = [{"DocumentName": name, "DocumentContent": base64.b64encode(pdf).decode()}
                                    for name, pdf in self.completed_documents(rq)]
        rq["events"].append(payload)
        raw = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        items = []
        if rq["callback_url"] and (rq["callback_types"] is None or event_id in rq["callback_types"]):
            items.append((rq["callback_url"], raw, headers, {"event_id": event_id, "payload": payload,
                                                             "requestId": rq["requestId"], "kind": "callback"}))
        for w in self.webhooks.values():
            if event_id in w["event_ids"]:
                items.append((w["url"], raw, headers, {"event_id": event_id, "payload": payload,
                                                       "requestId": rq["requestId"], "kind": "webhook"}))
        return items

    @staticmethod
    def _flatten(batch: list[list[tuple]]) -> list[tuple]:
        return [dict_item for items in batch for dict_item in items]

    def _post_all(self, batch: list[tuple], gap: float = 0.0) -> None:
        # every record is a fresh dict per delivery (the duplicate_received copies must not share one)
        super()._post_all([(u, b, h, dict(r)) for u, b, h, r in batch], gap)

    # ------------------------------------------------------------------------------------------------ files
    def completed_documents(self, rq: dict) -> list[tuple[str, bytes]]:
        signed = [s for s in rq["signatories"] if s["status"] == "completed"]
        out = []
        for tok in rq["documents"]:
            up = self.uploads[tok]
            n = max(up["pages"], 1)
            pages = [f"{up['name']} - page {i + 1} of {n}" for i in range(n)]
            if rq["status"] == "completed":
                pages[-1] += "\n" + "\n".join(f"Signed by {s['name']} <{s['email']}>" for s in signed)
            out.append((up["name"], make_pdf(pages, title=up["name"])))
        if self.attach_audit_trail:
            out.append(("audit_trail.pdf", self.audit_trail_pdf(rq)))
        return out

    def audit_trail_pdf(self, rq: dict) -> bytes:
        lines = ["Audit Trail", f"Request: {rq['requestId']}", f"Title: {rq['title']}"]
        lines += [f"{e['EventTime']} {e['EventDescription']} {e['Email']}" for e in rq["events"]]
        return make_pdf(["\n".join(lines)], title="audit_trail")

    # ------------------------------------------------------------------------------------------------ webhooks
    def h_webhook_create(self, req: Request) -> Response:
        err = self._auth(req)
        if err:
            return err
        body, err = self._json(req)
        if err:
            return err
        b = _ci(body)
        url = b.get("url")
        scheme = r"^https://" if self.webhooks_require_https else r"^https?://"
        if not isinstance(url, str) or not re.match(scheme + r"[^\s/]+", url):
            return _field_err("url", "A public HTTPS url is required.")
        events = b.get("events")
        if not isinstance(events, list) or not events or any(e not in WEBHOOK_EVENTS for e in events):
            return _field_err("events", f"events must be a non-empty subset of {sorted(WEBHOOK_EVENTS)}.")
        wid = str(uuid.uuid4())
        with self.lock:
            self.webhooks[wid] = {"id": wid, "url": url, "events": list(events),
                                  "event_ids": {WEBHOOK_EVENTS[e] for e in events}}
        return json_response({"id": wid, "url": url, "events": list(events)})

    def h_webhook_list(self, req: Request) -> Response:
        err = self._auth(req)
        if err:
            return err
        with self.lock:
            return json_response([{"id": w["id"], "url": w["url"], "events": w["events"]}
                                  for w in self.webhooks.values()])

    # ------------------------------------------------------------------------------------------------ U-E3
    # ASSUMPTION: undocumented endpoints (spec §2.7, §7 U-E3).  Shapes follow a third-party integration's
    # test mocks ([{documentName, downloadUrl}]) or are our own; disabled when undocumented_endpoints=False.
    def _undocumented(self, req: Request) -> Response | None:
        if not self.undocumented_endpoints:
            return json_response({"error": "NOT_FOUND", "error_description": f"{req.method} {req.path}"}, 404)
        return self._auth(req)

    def h_status(self, req: Request, rid: str) -> Response:
        err = self._undocumented(req)
        if err:
            return err
        rq, err = self._request(rid)
        if err:
            return err
        with self.lock:
            return json_response({
                "requestId": rid, "title": rq["title"], "status": rq["status"],
                "signatories": [{"signatoryId": s["signatoryId"], "email": s["email"], "name": s["name"],
                                 "order": s["order"], "signatoryType": s["type"], "status": s["status"],
                                 "completedAt": _iso(s["completed_at"]) if s["completed_at"] else None}
                                for s in rq["signatories"]]})

    def h_documents(self, req: Request, rid: str) -> Response:
        err = self._undocumented(req)
        if err:
            return err
        rq, err = self._request(rid)
        if err:
            return err
        return json_response([{"documentName": self.uploads[t]["name"],
                               "downloadUrl": f"{self.base_url}{SIGN}/documents/{t}/download?requestId={rid}"}
                              for t in rq["documents"]])

    def h_download(self, req: Request, token: str) -> Response:
        err = self._undocumented(req)
        if err:
            return err
        rq = self.requests.get(req.query.get("requestId", "")) or next(
            (r for r in self.requests.values() if token in r["documents"]), None)
        if token not in self.uploads or not rq:
            return _bad("Document not found", status=404)
        with self.lock:
            pdf = dict(self.completed_documents(rq))[self.uploads[token]["name"]]
        return Response(200, pdf, {"Content-Type": "application/pdf"})

    def h_cancel(self, req: Request, rid: str) -> Response:
        err = self._undocumented(req)
        if err:
            return err
        rq, err = self._request(rid)
        if err:
            return err
        with self.lock:
            if rq["status"] in ("completed", "rejected", "cancelled"):
                return _bad(f"Request cannot be cancelled (status {rq['status']}).")
            rq["status"] = "cancelled"
        return json_response({"requestId": rid, "status": "cancelled"})

    # ------------------------------------------------------------------------------------------------ hooks
    def _signatory(self, rq: dict, email: str) -> dict:
        s = next((s for s in rq["signatories"] if s["email"].lower() == email.lower()), None)
        if not s:
            raise ValueError(f"{email} is not a signatory of {rq['requestId']}")
        if rq["status"] != "sent":
            raise ValueError(f"request is {rq['status']}, not sent")
        if s["type"] == 3:
            raise ValueError("a CC signatory cannot act")
        if s["status"] == "waiting":
            raise ValueError("not this signatory's turn yet (an earlier Order is still open)")
        if s["status"] != "pending":
            raise ValueError(f"signatory is already {s['status']}")
        return s

    def sign(self, request_id: str, email: str) -> None:
        """The emulated signatory signs (approves, for an approver).  Raises ValueError out of turn."""
        with self.lock:
            rq = self.requests[request_id]
            s = self._signatory(rq, email)
            s["status"] = "completed"
            s["completed_at"] = time.time()
            first = self._callback(rq, 2, s)
            later: list[tuple] = []
            if all(x["status"] == "completed" for x in self._actionable(rq)):
                rq["status"] = "completed"
                rq["completed_at"] = time.time()
                for cc in rq["signatories"]:
                    if cc["type"] == 3:
                        self.sent_emails.append({"kind": "completed_copy", "to": cc["email"],
                                                 "requestId": request_id, "ts": time.time()})
                later = self._callback(rq, 3, s)
            else:
                for nxt in self._open_next(rq):
                    first += self._callback(rq, 1, nxt)
        if later:
            # EventId 2 then, ~completion_gap later, EventId 3 (as captured)
            self._post_all(first)
            if not self.async_webhooks:
                time.sleep(self.completion_gap)
                self._post_all(later)
            else:
                def _later():
                    time.sleep(self.completion_gap)
                    self._post_all(later)
                threading.Thread(target=_later, daemon=True).start()
        else:
            self._post_all(first)

    def reject(self, request_id: str, email: str, reason: str = "Rejected by signatory") -> None:
        with self.lock:
            rq = self.requests[request_id]
            s = self._signatory(rq, email)
            s["status"] = "rejected"
            s["reject_reason"] = reason
            rq["status"] = "rejected"
            batch = self._callback(rq, 5, s)
        self._post_all(batch)
