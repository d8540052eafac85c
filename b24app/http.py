"""The one seam for outbound HTTP (Bitrix24 and providers): timeouts, User-Agent, no secrets in logs.

Signed file links and tokens travel in query strings, so anything we log goes through :func:`redact`.
Links someone else chose (a robot's document link, a portal's file link) are fetched with :func:`fetch`:
checked (SSRF), redirects followed by hand and checked again, the connection pinned to the checked address.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

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


MAX_HOPS = 3  # redirects followed by hand, each one checked again
REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class Target:
    """A URL that passed the checks, and the one address we will connect to for it."""
    url: str
    host: str
    port: int
    ip: str


def _exempt(host: str, port: int) -> bool:
    """Hosts allowed to be private (tests and demos only; a deploy check refuses it in production)."""
    allowed = settings.FETCH_PRIVATE_HOSTS
    return host in allowed or f"{host}:{port}" in allowed


def check_target(url: str, *, trusted_netloc: str = "") -> Target:
    """Refuse URLs a tenant could use to reach our own network (SSRF): https only (http too under
    ALLOW_HTTP_PORTALS), no credentials, and every address the host resolves to public, unless the
    URL is on ``trusted_netloc`` (the portal's own host, which we talk to anyway)."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (settings.ALLOW_HTTP_PORTALS and parts.scheme == "http"):
        raise UnsafeURL("only https:// links are accepted")
    if not parts.hostname:
        raise UnsafeURL("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeURL("the URL carries credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeURL("the URL has an invalid port") from None
    host = parts.hostname
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURL(f"cannot resolve {host}") from exc
    ips = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not ips:
        raise UnsafeURL(f"cannot resolve {host}")
    trusted = bool(trusted_netloc) and parts.netloc.lower() == trusted_netloc.lower()
    if not trusted and not _exempt(host, port) and not all(ip.is_global for ip in ips):
        raise UnsafeURL(f"{host} points to a private address")
    return Target(url=url, host=host, port=port, ip=str(ips[0]))


def check_public_url(url: str) -> str:
    check_target(url)
    return url


class _PinnedAdapter(requests.adapters.HTTPAdapter):
    """Connects to the address that passed :func:`check_target`, whatever DNS says by then (DNS
    rebinding); the host name still goes into the Host header, SNI and certificate check."""

    def __init__(self, ip: str):
        self._ip = ip
        super().__init__(max_retries=0)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        ip = self._ip

        def pinned(base):
            class Pinned(base):
                def _new_conn(self):
                    name, self._dns_host = self._dns_host, ip
                    try:
                        return super()._new_conn()
                    finally:
                        self._dns_host = name
            return Pinned

        self.poolmanager.pool_classes_by_scheme = {
            "http": type("PinnedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": pinned(HTTPConnection)}),
            "https": type("PinnedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": pinned(HTTPSConnection)}),
        }


@contextmanager
def fetch(url: str, *, headers: dict | None = None, timeout=(5.0, 120.0), trusted_netloc: str = "",
          max_hops: int = MAX_HOPS) -> Iterator[requests.Response]:
    """GET a link someone else chose, streamed: no automatic redirects; up to ``max_hops`` followed by
    hand, every ``Location`` checked again; each connection pinned to the checked address."""
    for hop in range(max_hops + 1):
        target = check_target(url, trusted_netloc=trusted_netloc)
        s = requests.Session()
        s.headers["User-Agent"] = USER_AGENT
        adapter = _PinnedAdapter(target.ip)
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        try:
            resp = s.get(url, headers=headers, stream=True, timeout=timeout, allow_redirects=False)
            log.debug("GET %s", redact(url))
            location = resp.headers.get("Location")
            if resp.status_code in REDIRECTS and location:
                resp.close()
                if hop == max_hops:
                    raise UnsafeURL("too many redirects")
                url = urljoin(url, location)
                continue
            with resp:
                yield resp
            return
        finally:
            s.close()
