"""signNow OAuth2 tokens (password/refresh grants, verify, terminate) and ``GET /user``."""
from __future__ import annotations

import hmac
import time

from ..base import Request, Response, json_response
from ..provider import as_int, new_id
from .common import INVALID_TOKEN


class AuthMixin:
    """Mixin of ``SignNowEmulator`` (state lives there)."""

    # ------------------------------------------------------------------------------------------------ auth
    def _issue(self, user: str, scope: str = "*", ttl: int | None = None) -> dict:
        access, refresh = new_id(), new_id()
        ttl = self.token_ttl if ttl is None else ttl
        self.tokens[access] = {"user": user, "expires_at": time.time() + ttl, "scope": scope,
                               "refresh_token": refresh}
        self.refresh_tokens[refresh] = {"user": user, "scope": scope}
        return {"expires_in": ttl, "token_type": "bearer", "access_token": access, "refresh_token": refresh,
                "scope": scope, "last_login": int(time.time())}

    def issue_token(self, user: str | None = None) -> str:
        """An access token for tests that skip the grant (first configured user by default)."""
        with self.lock:
            return self._issue(user or next(iter(self.users)))["access_token"]

    def expire_tokens(self) -> None:
        with self.lock:
            for t in self.tokens.values():
                t["expires_at"] = time.time() - 1

    def _basic_ok(self, req: Request) -> bool:
        auth = req.headers.get("authorization", "")
        return auth[:6].lower() == "basic " and hmac.compare_digest(auth[6:].strip(), self.basic_token)

    def _bearer(self, req: Request) -> str | None:
        auth = req.headers.get("authorization", "")
        if auth[:7].lower() != "bearer ":
            return None
        tok = self.tokens.get(auth[7:].strip())
        if not tok or tok["expires_at"] <= time.time():
            return None
        return tok["user"]

    def _user_or_401(self, req: Request):
        user = self._bearer(req)
        return (user, None) if user else (None, json_response(dict(INVALID_TOKEN), 401))

    def h_token(self, req: Request) -> Response:
        if not self._basic_ok(req):
            return json_response({"error": "invalid_client"}, 400)
        if req.content_type != "application/x-www-form-urlencoded":
            return json_response({"error": "invalid_request"}, 400)
        form = req.form()
        grant = form.get("grant_type")
        scope = form.get("scope") or "*"
        ttl = as_int(form.get("expiration_time")) if form.get("expiration_time") else None
        with self.lock:
            if grant == "password":
                user = next((u for u in self.users if u.lower() == str(form.get("username", "")).lower()), None)
                if not user or self.users[user] != form.get("password"):
                    return json_response({"error": "Invalid credentials.", "code": 826}, 400)
                return json_response(self._issue(user, scope, ttl))
            if grant == "refresh_token":
                rt = form.get("refresh_token") or ""
                info = self.refresh_tokens.pop(rt, None)  # rotation: single use
                if not info:
                    return json_response({"error": "invalid_grant"}, 400)
                return json_response(self._issue(info["user"], scope if form.get("scope") else info["scope"], ttl))
        return json_response({"error": "invalid_request"}, 400)

    def h_verify(self, req: Request) -> Response:
        auth = req.headers.get("authorization", "")
        tok = self.tokens.get(auth[7:].strip()) if auth[:7].lower() == "bearer " else None
        if not tok or tok["expires_at"] <= time.time():
            return json_response({"error": "invalid_token"}, 400)
        return json_response({"access_token": auth[7:].strip(), "scope": tok["scope"], "token_type": "bearer",
                              "expires_in": str(int(tok["expires_at"] - time.time()))})

    def h_terminate(self, req: Request) -> Response:
        user, err = self._user_or_401(req)
        if err:
            return err
        with self.lock:
            self.tokens.pop(req.headers["authorization"][7:].strip(), None)
        return json_response({"status": "success"})

    def h_user(self, req: Request) -> Response:
        user, err = self._user_or_401(req)
        if err:
            return err
        return json_response({"id": self.user_ids[user.lower()], "primary_email": user, "emails": [user],
                              "first_name": user.split("@")[0], "last_name": "", "active": "1"})
