"""OAuth against Bitrix24's authorization server: trusted-server checks, app.info, single-flight refresh.

Refresh tokens rotate and are treated as single-use (spec §2.3–2.4, unconfirmed U2): a refresh runs
under a per-portal lock, re-reads the row, and skips the call when a peer already rotated the pair.
"""
from __future__ import annotations

import logging
from urllib.parse import urlsplit

import requests
from django.conf import settings

from .. import coordination, http
from ..models import Portal
from .errors import B24Error, NeedsReinstall

log = logging.getLogger("b24sign.oauth")


def trusted_oauth_hosts() -> set[str]:
    return {urlsplit(settings.B24_OAUTH_URL).netloc, *settings.B24_TRUSTED_OAUTH_HOSTS}


def oauth_base(server_endpoint: str | None) -> str:
    """``scheme://host`` of the OAuth server to use for a portal, refusing hosts we do not trust.

    An install request names its own SERVER_ENDPOINT; trusting it blindly would let a forged install
    "validate" itself against an attacker's server.
    """
    default = urlsplit(settings.B24_OAUTH_URL)
    if not server_endpoint:
        return f"{default.scheme}://{default.netloc}"
    parts = urlsplit(server_endpoint)
    if parts.netloc not in trusted_oauth_hosts():
        raise B24Error("UNTRUSTED_OAUTH_SERVER", f"{parts.netloc} is not a Bitrix24 OAuth server")
    scheme = parts.scheme if (parts.scheme == "https" or settings.ALLOW_HTTP_PORTALS) else "https"
    return f"{scheme}://{parts.netloc}"


def _json(resp: requests.Response, method: str) -> dict:
    try:
        data = resp.json()
    except ValueError:
        raise B24Error("BAD_RESPONSE", f"HTTP {resp.status_code}, not JSON", status=resp.status_code,
                       method=method) from None
    if isinstance(data, dict) and data.get("error"):
        raise B24Error(str(data["error"]), str(data.get("error_description", "")), status=resp.status_code,
                       method=method)
    if resp.status_code >= 400:
        raise B24Error(f"HTTP_{resp.status_code}", "", status=resp.status_code, method=method)
    return data


def app_info(access_token: str, server_endpoint: str | None = None) -> dict:
    """``app.info`` on the trusted OAuth server: who this token belongs to (client_id, install{member_id…})."""
    url = f"{oauth_base(server_endpoint)}/rest/app.info"
    try:
        resp = http.request("POST", url, data={"auth": access_token}, timeout=(5, 15))
    except requests.RequestException as exc:
        raise B24Error("CONNECTION_ERROR", str(exc.__class__.__name__), method="app.info") from exc
    return _json(resp, "app.info").get("result") or {}


def verify_install_token(access_token: str, member_id: str, server_endpoint: str | None) -> dict:
    """Raise unless the token was issued to *our* app on *that* portal.  Returns the app.info result."""
    info = app_info(access_token, server_endpoint)
    install = info.get("install") or {}
    if str(info.get("client_id", "")) != settings.B24_CLIENT_ID:
        raise B24Error("WRONG_CLIENT", "the token belongs to another application", method="app.info")
    if str(install.get("member_id", "")) != member_id:
        raise B24Error("WRONG_PORTAL", "the token belongs to another portal", method="app.info")
    return info


def request_refresh(refresh_token: str, server_endpoint: str | None) -> dict:
    url = f"{oauth_base(server_endpoint)}/oauth/token/"
    params = {"grant_type": "refresh_token", "client_id": settings.B24_CLIENT_ID,
              "client_secret": settings.B24_CLIENT_SECRET, "refresh_token": refresh_token}
    try:
        resp = http.request("GET", url, params=params, timeout=(5, 15))
    except requests.RequestException as exc:
        raise B24Error("CONNECTION_ERROR", exc.__class__.__name__, method="oauth.refresh") from exc
    return _json(resp, "oauth.refresh")


def refresh_portal_tokens(portal, seen_version: int) -> None:
    """Rotate the portal's token pair once, however many workers ask at the same moment."""
    with coordination.lock(f"refresh:{portal.pk}", ttl=60, wait=45):
        portal.refresh_from_db()
        if portal.token_version != seen_version:
            return  # a peer rotated while we waited: use its tokens
        if not portal.refresh_token:
            raise NeedsReinstall("NO_REFRESH_TOKEN", "no refresh token stored", method="oauth.refresh")
        try:
            data = request_refresh(portal.refresh_token, portal.server_endpoint)
        except B24Error as exc:
            if exc.error in ("invalid_grant", "bad_verification_code", "invalid_client", "NOT_INSTALLED"):
                Portal.objects.filter(pk=portal.pk, token_version=seen_version).update(needs_reinstall=True)
                log.warning("portal %s: refresh rejected (%s); needs reinstall", portal.member_id, exc.error)
                raise NeedsReinstall(exc.error, exc.description, method="oauth.refresh") from exc
            raise
        portal.set_tokens(data["access_token"], data.get("refresh_token", ""), data.get("expires_in"),
                          data.get("user_id"))
        portal.save(update_fields=["access_token", "refresh_token", "token_expires_at", "token_user_id",
                                   "token_version", "needs_reinstall", "updated_at"])
        log.info("portal %s: tokens rotated (v%s)", portal.member_id, portal.token_version)
