"""Evia OAuth2: authorize, token grants (code, rotating refresh) and request lookups."""
from __future__ import annotations

import base64
import secrets
import time
from urllib.parse import urlencode

from ..base import Request, Response, json_response
from ..provider import parse_multipart
from .common import _bad, _ci, _field_err


class AuthMixin:
    """Mixin of ``EviaEmulator`` (state lives there)."""

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
