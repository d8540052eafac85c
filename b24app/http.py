"""The one seam for outbound HTTP (Bitrix24 and providers): timeouts, User-Agent, no secrets in logs.

Signed file links and tokens travel in query strings, so anything we log goes through :func:`redact`.
Tenant-supplied URLs (a robot's "document URL") pass :func:`check_public_url` first (SSRF guard).
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings

log = logging.getLogger("b24sign.http")
USER_AGENT = "b24sign/1.0 (+https://github.com/b24sign)"
_local = threading.local()


def session() -> requests.Session:
    """A per-thread keep-alive session (requests.Session is not thread-safe)."""
    s = getattr(_local, "session", None)
    if s is None:
        s = requests.Session()
        s.headers["User-Agent"] = USER_AGENT
        adapter = requests.adapters.HTTPAdapter(pool_connections=32, pool_maxsize=32)
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        _local.session = s
    return s


def redact(url: str) -> str:
    """The URL without its query string (which may carry auth tokens)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "…" if parts.query else "", ""))


def request(method: str, url: str, *, timeout: float | tuple | None = None, **kwargs) -> requests.Response:
    timeout = timeout or (5.0, settings.B24_HTTP_TIMEOUT)
    try:
        return session().request(method, url, timeout=timeout, **kwargs)
    finally:
        log.debug("%s %s", method, redact(url))


class UnsafeURL(ValueError):
    pass


def check_public_url(url: str) -> str:
    """Refuse URLs a tenant could use to reach our own network (SSRF)."""
    parts = urlsplit(url)
    allow_local = settings.ALLOW_HTTP_PORTALS
    if parts.scheme != "https" and not (allow_local and parts.scheme == "http"):
        raise UnsafeURL("only https:// document URLs are accepted")
    if not parts.hostname:
        raise UnsafeURL("the URL has no host")
    if allow_local:
        return url
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443)
    except socket.gaierror as exc:
        raise UnsafeURL(f"cannot resolve {parts.hostname}") from exc
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if not ip.is_global:
            raise UnsafeURL(f"{parts.hostname} points to a private address")
    return url
