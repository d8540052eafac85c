"""HTTP to signNow: OAuth2 password/refresh grants, bearer calls, streamed uploads.

Everything goes through :class:`signing.providers.http.ProviderHTTP` (one outbound seam, transient vs
permanent errors, one token refresh on 401 under a per-account lock).  signNow specifics added here:

* the token is refreshed ahead of time when one day or less remains (spec §1.2), and signNow's
  ``400 {"error":"invalid_token","code":1537}`` counts as an auth error, like a 401;
* refresh uses ``grant_type=refresh_token`` and falls back to the password grant (refresh tokens rotate);
* a per-account leaky bucket (ProviderHTTP.throttle) keeps us under an unknown rate limit (spec U-S7);
* uploads stream the PDF from disk with a known Content-Length; a retried request re-reads the file.
"""
from __future__ import annotations

import logging
import os
import secrets
import time

import requests
from django.conf import settings

from signing.base import ProviderError
from signing.providers.http import ProviderHTTP

from . import errors

log = logging.getLogger("b24sign.providers.signnow")

REFRESH_AHEAD = 24 * 3600      # refresh when a day or less remains
SCOPE = "*"


def _upload_timeout():
    return (10, max(120.0, settings.PROVIDER_HTTP_TIMEOUT))


class MultipartFile:
    """A multipart/form-data body read from disk in chunks.

    ``requests`` sends iterables with a ``__len__`` as a stream with that Content-Length; every new
    iteration reopens the file, so a retried request (e.g. after a token refresh) sends it whole again.
    """

    CHUNK = 256 * 1024

    def __init__(self, path, filename: str, content_type: str = "application/pdf", fields: dict | None = None,
                 field_name: str = "file"):
        self.path = path
        boundary = "b24sign" + secrets.token_hex(12)
        self.content_type = f"multipart/form-data; boundary={boundary}"
        safe_name = filename.replace('"', "'").replace("\r", " ").replace("\n", " ") or "document.pdf"
        head = b""
        for name, value in (fields or {}).items():
            head += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").encode()
        head += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field_name}\"; "
                 f"filename=\"{safe_name}\"\r\nContent-Type: {content_type}\r\n\r\n").encode()
        self.head = head
        self.tail = f"\r\n--{boundary}--\r\n".encode()
        self.size = len(self.head) + os.path.getsize(path) + len(self.tail)

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        yield self.head
        with open(self.path, "rb") as fh:
            while chunk := fh.read(self.CHUNK):
                yield chunk
        yield self.tail


class SignNowClient(ProviderHTTP):
    label = "signNow"
    code = "signnow"

    def __init__(self, account, credentials: dict | None = None):
        super().__init__(account)
        self.base_url = settings.SIGNNOW_API_BASE
        # connect() works on credentials not stored yet; everything else reads the account's.
        self._credentials = credentials
        self._last_error: errors.SignNowError | None = None

    @property
    def credentials(self) -> dict:
        return self._credentials if self._credentials is not None else (self.account.credentials or {})

    # -- ProviderHTTP hooks ---------------------------------------------------------------------------
    def auth_headers(self) -> dict:
        self._refresh_if_due()
        token = self.credentials.get("access_token", "")
        return {"Authorization": f"Bearer {token}"} if token else {}

    def is_auth_error(self, resp: requests.Response) -> bool:
        return errors.is_token_error(resp.status_code, resp.text)

    def error_message(self, resp: requests.Response) -> tuple[str, str]:
        self._last_error = errors.describe(resp.status_code, resp.text)
        return self._last_error.code, self._last_error.message

    def refresh_auth(self) -> None:
        """New tokens into ``self.account.credentials`` (the caller holds the lock and saves)."""
        creds = dict(self.account.credentials or {})
        tokens = None
        if creds.get("refresh_token"):
            try:
                tokens = self.grant(creds, grant_type="refresh_token", refresh_token=creds["refresh_token"])
            except ProviderError as exc:
                if not exc.permanent:
                    raise
                log.info("signNow refresh grant refused for account %s (%s); trying the password grant",
                         self.account.pk, exc.code)
        if tokens is None:
            tokens = self.password_grant(creds)
        self.account.credentials = {**creds, **tokens}

    # -- the call -------------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        self._last_error = None
        try:
            return super().request(method, path, **kwargs)
        except ProviderError as exc:
            if exc.permanent and self._last_error is not None and not self._last_error.permanent:
                exc.permanent = False
            raise

    def json(self, method: str, path: str, body=None, **kwargs):
        if body is not None:
            kwargs["json"] = body
        resp = self.request(method, path, **kwargs)
        if not resp.content:
            return {}
        try:
            return resp.json()
        except ValueError as exc:
            raise ProviderError(f"signNow answered {method} {path.split('?')[0]} with a non-JSON body",
                                code="bad_response") from exc

    def upload(self, path, filename: str, *, fields: dict | None = None, extract: bool = False) -> dict:
        body = MultipartFile(path, filename, fields=fields)
        return self.json("POST", "/document/fieldextract" if extract else "/document", data=body,
                         headers={"Content-Type": body.content_type}, timeout=_upload_timeout())

    def download(self, path: str) -> bytes:
        resp = self.request("GET", path, timeout=_upload_timeout())
        return resp.content

    # -- tokens ---------------------------------------------------------------------------------------
    def grant(self, creds: dict, **form) -> dict:
        """POST /oauth2/token with the app's Basic token; returns the token fields we store."""
        data = {"scope": SCOPE, **form}
        resp = self.request("POST", "/oauth2/token", auth=False, data=data, headers=basic_auth(creds))
        try:
            body = resp.json()
        except ValueError as exc:
            raise ProviderError("signNow answered the token request with a non-JSON body",
                                code="bad_response") from exc
        if not body.get("access_token"):
            raise ProviderError("signNow issued no access token", permanent=True, code="auth")
        expires_in = _int(body.get("expires_in"), 2592000)
        return {"access_token": body["access_token"],
                "refresh_token": body.get("refresh_token") or form.get("refresh_token", ""),
                "expires_at": time.time() + expires_in}

    def password_grant(self, creds: dict) -> dict:
        if not creds.get("username") or not creds.get("password"):
            raise ProviderError("signNow: the refresh token was rejected and no password is stored; "
                                "reconnect the signNow account", permanent=True, code="auth")
        return self.grant(creds, grant_type="password", username=creds["username"], password=creds["password"])

    def _refresh_once(self) -> None:
        if self._credentials is not None:  # connect(): nothing stored to refresh yet
            raise ProviderError("signNow rejected the new access token; check the credentials", permanent=True,
                                code="auth")
        super()._refresh_once()

    def _refresh_if_due(self) -> None:
        creds = self.credentials
        if self._credentials is not None or not self.account.pk or not creds.get("access_token"):
            return
        expires_at = _float(creds.get("expires_at"))
        if expires_at is None or expires_at - time.time() > REFRESH_AHEAD:
            return
        try:
            self._refresh_once()
        except ProviderError:
            if expires_at - time.time() <= 60:
                raise
            # The current token still works for a while: use it, the next call tries again.
            log.warning("signNow token refresh ahead of expiry failed for account %s", self.account.pk)

    def default_pacing(self) -> tuple[float, float]:
        # signNow publishes no rate limit (spec U-S7): SIGNNOW_RATE_PER_S / SIGNNOW_RATE_BURST per account.
        return (float(getattr(settings, "SIGNNOW_RATE_PER_S", 1.0) or 0),
                float(getattr(settings, "SIGNNOW_RATE_BURST", 10) or 1))


def basic_auth(creds: dict) -> dict:
    """The app's Basic token as a header (pasted with or without the "Basic " prefix)."""
    basic = (creds.get("basic_token") or "").strip()
    if basic.lower().startswith("basic "):
        basic = basic[6:].strip()
    return {"Authorization": f"Basic {basic}"}


def _int(value, default: int) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
