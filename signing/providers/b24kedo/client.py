"""The ``sign.b2e.*`` calls, made with the portal's app token through ``B24Client`` (app context only).

Bitrix24 errors become ProviderErrors with Bitrix24's own text; permanence follows B24Error.permanent.
"""
from __future__ import annotations

import base64
import logging
from pathlib import Path
from urllib.parse import urlsplit

import requests

from b24app import http
from b24app.rest.client import B24Client
from b24app.rest.errors import B24Error
from signing.base import ProviderError

log = logging.getLogger("b24sign.providers.b24kedo")

# Bitrix24 serves signed files only to browser-like requests (spec §3.2: download with the app token).
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36 " \
             "b24sign/1.0"
TAIL_PAGE = 50
TAIL_MAX_PAGES = 20  # 1000 newest company-safe rows


def provider_error(exc: B24Error, what: str = "") -> ProviderError:
    text = exc.description or exc.error
    if exc.error == "ERROR_METHOD_NOT_FOUND":
        text = "this portal has no sign.b2e methods (Bitrix24 Sign for HR documents is not available on it)"
    elif exc.error == "WRONG_AUTH_TYPE":
        text = "sign.b2e works only with the app's own authorization"
    elif exc.error in ("insufficient_scope", "ACCESS_DENIED") and not exc.description:
        text = "access denied (the app needs the sign.b2e scope and a user allowed to create KEDO documents)"
    prefix = f"Bitrix24 Sign{': ' + what if what else ''}: "
    return ProviderError(prefix + text, permanent=exc.permanent, code=exc.error, retry_after=exc.retry_after)


def encode_file_b64(path: Path, chunk: int = 3 * 256 * 1024) -> str:
    """Base64 of a file, read in chunks (multiples of 3 bytes so the pieces concatenate cleanly): only the
    encoded text is ever whole in memory, never the raw file beside it."""
    out = bytearray()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            out += base64.b64encode(block)
    text = out.decode("ascii")
    del out
    return text


class KedoClient:
    def __init__(self, portal):
        self.portal = portal
        self.rest = B24Client(portal)

    def call(self, method: str, params: dict, what: str = ""):
        try:
            return self.rest.call(method, params)
        except B24Error as exc:
            raise provider_error(exc, what) from exc

    # -- companies and signing providers --------------------------------------------------------------------
    def my_companies(self) -> list[dict]:
        result = self.call("crm.item.list", {"entityTypeId": 4, "filter": {"=isMyCompany": "Y"},
                                             "select": ["id", "title"]}, "my companies") or {}
        items = result.get("items", []) if isinstance(result, dict) else []
        return [{"id": int(i["id"]), "title": i.get("title", "")} for i in items if str(i.get("id", "")).isdigit()]

    def providers(self, company_id: int | None = None, company_uuid: str = "", language: str = "en") -> list[dict]:
        params = {"companyUuid": company_uuid} if company_uuid else {"companyCrmId": company_id}
        result = self.call("sign.b2e.company.provider.list", {**params, "language": language, "limit": 100},
                           "signing providers")
        return [p for p in (result or []) if isinstance(p, dict)]

    # -- documents ----------------------------------------------------------------------------------------
    def send(self, fields: dict, language: str = "en") -> dict:
        """One ``sign.b2e.document.send``; B24Error passes through (the caller decides what is ambiguous)."""
        return self.rest.call("sign.b2e.document.send", {"fields": fields, "language": language}) or {}

    def get(self, uid: str, language: str = "en") -> dict:
        return self.call("sign.b2e.document.get", {"uid": uid, "language": language}, "document status") or {}

    def find_in_safe(self, match) -> dict | None:
        """The newest ``sign.b2e.mysafe.tail`` row for which ``match(row)`` is true."""
        for page in range(TAIL_MAX_PAGES):
            rows = self.call("sign.b2e.mysafe.tail", {"limit": TAIL_PAGE, "offset": page * TAIL_PAGE},
                             "signed documents") or []
            for row in rows:
                if isinstance(row, dict) and match(row):
                    return row
            if len(rows) < TAIL_PAGE:
                return None
        return None

    def download(self, file_url: str) -> tuple[bytes, str]:
        """A signed ``file_url`` (carries auth: never logged).  Browser-like headers, or Bitrix24 answers 404."""
        portal_host = urlsplit(self.portal.client_endpoint).netloc
        headers = {"User-Agent": BROWSER_UA, "Accept": "application/pdf,application/octet-stream;q=0.9,*/*;q=0.8",
                   "Accept-Language": "en", "Referer": f"{self.portal.base_url}/"}
        try:  # checked (public, unless on the portal's own host), redirects by hand, pinned
            with http.fetch(file_url, headers=headers, timeout=(5, 120), trusted_netloc=portal_host) as resp:
                content, disposition = resp.content, resp.headers.get("Content-Disposition", "")
        except http.UnsafeURL as exc:
            raise ProviderError(f"Bitrix24 Sign: refusing the signed file link ({exc})", permanent=True,
                                code="unsafe_url") from exc
        except requests.RequestException as exc:
            raise ProviderError(f"Bitrix24 Sign: signed file download failed ({exc.__class__.__name__})",
                                code="network") from exc
        if resp.status_code != 200 or not content.startswith(b"%PDF-"):
            raise ProviderError(f"Bitrix24 Sign: the signed file could not be downloaded (HTTP {resp.status_code})",
                                code=str(resp.status_code), permanent=False)
        return content, _disposition_name(disposition)


def _disposition_name(value: str) -> str:
    if "filename=" not in value:
        return ""
    return value.split("filename=", 1)[1].split(";")[0].strip().strip('"')
