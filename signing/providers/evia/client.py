"""HTTP calls to Evia Sign API v2 (spec §2).  Paths keep their documented ``/_apis/...`` prefix and hang off
``settings.EVIA_API_BASE`` (the host root).  Bodies are sent in PascalCase as the docs show; answers are read
case-insensitively (``requestId`` / ``RequestId``).

Tokens: one hour; we refresh ahead of expiry and once on 401 (ProviderHTTP), under the account lock.
Refresh is undocumented (U-E1): the standard form first, then the third-party multipart reading on 400.
"""
from __future__ import annotations

import base64
import logging
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import requests
from django.conf import settings

from b24app.http import check_public_url
from signing.base import ProviderError
from signing.providers.http import ProviderHTTP

log = logging.getLogger("b24sign.providers.evia")

TOKEN_PATH = "/_apis/falcon/auth/api/v2/token"
UPLOAD_PATHS = ("/_apis/sign/thumbs/api/v2/requests/document",  # v2 (documented)
                "/_apis/sign/thumbs/api/Requests/document")     # v1, "still works in v2" (U-E6 fallback on 404)
SIGN = "/_apis/sign/api/v2"
REFRESH_AHEAD = 120  # seconds before expiry at which we refresh instead of spending a call on a 401
STAMP_RETRY_DELAYS = (0.25, 0.75, 1.5)  # §6.7: a new signatory may not be visible to /stamps yet


def api_base() -> str:
    base = settings.EVIA_API_BASE.rstrip("/")
    # Evia's pages call ".../_apis/sign" the base URL; accept that spelling of the setting too.
    for suffix in ("/_apis/sign",):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base


def ci_get(data, *names, default=None):
    """``data[name]`` ignoring case, for the first name present."""
    if not isinstance(data, dict):
        return default
    lower = {str(k).lower(): v for k, v in data.items()}
    for name in names:
        if name.lower() in lower:
            return lower[name.lower()]
    return default


class MultipartFile:
    """A ``multipart/form-data`` body with one file part, read from disk in chunks (never whole in memory).

    Single use: make a new one for every attempt.
    """

    chunk = 256 * 1024

    def __init__(self, field: str, filename: str, path: Path, content_type: str):
        boundary = uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={boundary}"
        safe_name = filename.replace('"', "'").replace("\r", " ").replace("\n", " ")
        self._head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
                      f"filename=\"{safe_name}\"\r\nContent-Type: {content_type}\r\n\r\n").encode()
        self._tail = f"\r\n--{boundary}--\r\n".encode()
        self._path = Path(path)
        self._size = self._path.stat().st_size
        self._fh = None
        self._stage = 0  # 0 head, 1 file, 2 tail, 3 done

    def __len__(self):
        return len(self._head) + self._size + len(self._tail)

    def __iter__(self):
        while True:
            block = self.read(self.chunk)
            if not block:
                return
            yield block

    def read(self, size: int = -1) -> bytes:
        size = self.chunk if size is None or size < 0 else size
        if self._stage == 0:
            self._stage = 1
            self._fh = open(self._path, "rb")
            return self._head
        if self._stage == 1:
            block = self._fh.read(size)
            if block:
                return block
            self._fh.close()
            self._stage = 2
        if self._stage == 2:
            self._stage = 3
            return self._tail
        return b""


class EviaClient(ProviderHTTP):
    label = "Evia Sign"
    code = "evia"

    def __init__(self, account, credentials: dict | None = None):
        super().__init__(account)
        self.base_url = api_base()
        self._credentials = credentials  # connect(): credentials not stored on the account yet

    @property
    def creds(self) -> dict:
        return self._credentials if self._credentials is not None else dict(self.account.credentials or {})

    # -- ProviderHTTP hooks ----------------------------------------------------------------------------
    def auth_headers(self) -> dict:
        creds = self.creds
        expires_at = float(creds.get("expires_at") or 0)
        if self._credentials is None and creds.get("refresh_token") and expires_at \
                and expires_at - REFRESH_AHEAD <= time.time():
            self._refresh_once()
            creds = self.creds
        token = creds.get("access_token")
        return {"Authorization": f"Bearer {token}"} if token else {}

    def refresh_auth(self) -> None:
        creds = dict(self.account.credentials or {})
        try:
            tokens = self.refresh(creds.get("client_id", ""), creds.get("client_secret", ""),
                                  creds.get("refresh_token", ""))
        except ProviderError as exc:
            if exc.permanent:
                # U-E1: both readings failed -> a person has to run the authorization again.
                self.account.credentials = {**creds, "needs_reconnect": True}
                self.account.save(update_fields=["credentials", "updated_at"])
                raise ProviderError("Evia Sign: the refresh token was rejected; reconnect the Evia Sign account "
                                    f"({exc.message})", permanent=True, code="auth") from exc
            raise
        creds.pop("needs_reconnect", None)
        self.account.credentials = {**creds, **tokens}

    def error_message(self, resp: requests.Response) -> tuple[str, str]:
        return str(resp.status_code), describe_error(resp)

    # -- auth -------------------------------------------------------------------------------------------
    def _token_call(self, client_id: str, client_secret: str, **kwargs) -> dict:
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        resp = self.request("POST", TOKEN_PATH, auth=False, headers={"Authorization": f"Basic {basic}"}, **kwargs)
        data = _json(resp)
        access = ci_get(data, "access_token")
        if not access:
            raise ProviderError("Evia Sign: the token answer has no access_token", permanent=True, code="auth")
        expires_in = ci_get(data, "expires_in", default=3600)
        try:
            expires_in = float(expires_in)
        except (TypeError, ValueError):
            expires_in = 3600.0
        return {"access_token": access, "refresh_token": ci_get(data, "refresh_token", default="") or "",
                "expires_at": int(time.time() + expires_in)}

    def exchange_code(self, client_id: str, client_secret: str, code: str) -> dict:
        """Authorization code -> tokens (documented: Basic client creds + form body)."""
        return self._token_call(client_id, client_secret, data={
            "grant_type": "authorization_code", "client_id": client_id, "client_secret": client_secret,
            "code": code})

    def refresh(self, client_id: str, client_secret: str, refresh_token: str) -> dict:
        """U-E1: standard ``grant_type=refresh_token`` form; on 400 the multipart ``Refresh_Token`` reading."""
        if not refresh_token:
            raise ProviderError("Evia Sign: no refresh token stored; reconnect the account", permanent=True,
                                code="auth")
        try:
            tokens = self._token_call(client_id, client_secret,
                                      data={"grant_type": "refresh_token", "refresh_token": refresh_token})
        except ProviderError as exc:
            if exc.code != "400":
                raise
            log.info("Evia refresh: standard form refused (%s); trying the multipart reading", exc.message)
            tokens = self._token_call(client_id, client_secret, files={
                "Grant_Type": (None, "Refresh_Token"), "Refresh_Token": (None, refresh_token)})
        if not tokens["refresh_token"]:
            tokens["refresh_token"] = refresh_token  # not rotated
        return tokens

    # -- the send path ------------------------------------------------------------------------------------
    def upload(self, name: str, path: Path, content_type: str) -> str:
        """Multipart field ``File`` -> documentToken.  Streams from disk; 401 and 404 (v1 path) handled here
        because a stream cannot be replayed by ProviderHTTP's own retry."""
        paths = list(UPLOAD_PATHS)
        refreshed = False
        timeout = (5, max(settings.PROVIDER_HTTP_TIMEOUT, 120.0))
        while True:
            body = MultipartFile("File", name, path, content_type)
            try:
                resp = self.request("POST", paths[0], auth=False, data=body, timeout=timeout,
                                    headers={**self.auth_headers(), "Content-Type": body.content_type})
            except ProviderError as exc:
                if exc.code == "401" and not refreshed:
                    refreshed = True
                    self._refresh_once()
                    continue
                if exc.code == "404" and len(paths) > 1:
                    paths.pop(0)
                    continue
                raise
            token = ci_get(_json(resp), "documentToken", "documentId")
            if not token:
                raise ProviderError("Evia Sign: the upload answer has no documentToken", code="bad_response")
            return str(token)

    def create_request(self, body: dict) -> str:
        data = _json(self.request("POST", f"{SIGN}/requests", params={"type": 0}, json=body))
        rid = ci_get(data, "requestId")
        if not rid:
            raise ProviderError("Evia Sign: the create-request answer has no requestId", code="bad_response")
        return str(rid)

    def add_signatory(self, request_id: str, body: dict) -> str:
        data = _json(self.request("POST", f"{SIGN}/requests/{request_id}/signatories", json=body))
        sid = ci_get(data, "signatoryId")
        if not sid:
            raise ProviderError("Evia Sign: the add-signatory answer has no signatoryId", code="bad_response")
        return str(sid)

    def add_stamp(self, request_id: str, signatory_id: str, stamp: dict) -> None:
        for delay in (*STAMP_RETRY_DELAYS, None):
            try:
                self.request("POST", f"{SIGN}/requests/{request_id}/signatories/{signatory_id}/stamps", json=stamp)
                return
            except ProviderError as exc:
                if exc.code != "404" or delay is None:
                    raise
                time.sleep(delay)

    def send_request(self, request_id: str) -> dict:
        return _json(self.request("POST", f"{SIGN}/requests/{request_id}/send", json={}), allow_empty=True)

    # -- account webhooks (documented: POST; listing is unconfirmed) ----------------------------------------
    def list_webhooks(self) -> list:
        data = _json(self.request("GET", f"{SIGN}/webhooks"), allow_empty=True)
        return data if isinstance(data, list) else (ci_get(data, "items", "webhooks", default=[]) or [])

    def create_webhook(self, url: str, events: list[str]) -> dict:
        return _json(self.request("POST", f"{SIGN}/webhooks", json={"url": url, "events": events}), allow_empty=True)

    # -- ASSUMPTION (U-E3): undocumented endpoints guessed by a third-party integration ------------------------
    def get_request(self, request_id: str) -> dict:
        return _json(self.request("GET", f"{SIGN}/requests/{request_id}"))

    def cancel_request(self, request_id: str, reason: str = "") -> None:
        self.request("POST", f"{SIGN}/requests/{request_id}/cancel", json={"Reason": reason} if reason else {})

    def list_documents(self, request_id: str) -> list:
        data = _json(self.request("GET", f"{SIGN}/requests/{request_id}/documents"), allow_empty=True)
        return data if isinstance(data, list) else (ci_get(data, "documents", default=[]) or [])

    def download(self, url: str) -> bytes:
        """A document link from :meth:`list_documents`; our token goes only to Evia's own host."""
        same_host = urlsplit(url).netloc in ("", urlsplit(self.base_url).netloc)
        if not same_host:
            check_public_url(url)
        resp = self.request("GET", url if urlsplit(url).netloc else f"{self.base_url}{url}", auth=same_host,
                            timeout=(5, max(settings.PROVIDER_HTTP_TIMEOUT, 120.0)))
        return resp.content


def _json(resp: requests.Response, allow_empty: bool = False):
    if not resp.content:
        if allow_empty:
            return {}
        raise ProviderError(f"Evia Sign answered HTTP {resp.status_code} with an empty body", code="bad_response")
    try:
        return resp.json()
    except ValueError:
        if allow_empty:
            return {}
        raise ProviderError(f"Evia Sign answered HTTP {resp.status_code} with a non-JSON body",
                            code="bad_response") from None


def describe_error(resp: requests.Response) -> str:
    """Evia's error bodies have no published schema (§2.9): read ``message|error|title`` and ``errors``."""
    try:
        data = resp.json()
    except ValueError:
        return f"HTTP {resp.status_code}: {resp.text[:200]}".strip()
    if not isinstance(data, dict):
        return f"HTTP {resp.status_code}"
    message = ci_get(data, "message", "error_description", "error", "title") or f"HTTP {resp.status_code}"
    errors = ci_get(data, "errors")
    details = []
    if isinstance(errors, dict):
        for field, msgs in errors.items():
            text = "; ".join(str(m) for m in msgs) if isinstance(msgs, list) else str(msgs)
            if text and text not in str(message):
                details.append(f"{field}: {text}")
    elif isinstance(errors, list):
        details = [str(ci_get(e, "message", default=e)) for e in errors[:5]]
    return " — ".join([str(message), *details]) if details else str(message)
