"""Installation and the app's own events (ONAPPINSTALL, ONAPPUPDATE, ONAPPUNINSTALL).

Trust: an install or ONAPPINSTALL/ONAPPUPDATE carries an access token, which we check with ``app.info``
on the trusted OAuth server (our client id, the same member_id) and ``user.admin`` before storing
anything.  ONAPPUNINSTALL carries no usable token: after the application-token check, the trusted OAuth
server must confirm the stored tokens are dead (``trust.uninstall_confirmed``) before anything changes.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import signals
from .crypto import token_matches
from .models import Portal
from .rest import B24Client, B24Error
from .rest.oauth import oauth_base
from .trust import Unconfirmed, uninstall_confirmed, verify_user_token

log = logging.getLogger("b24sign.lifecycle")

APP_EVENTS = ("ONAPPINSTALL", "ONAPPUPDATE", "ONAPPUNINSTALL")


class Rejected(Exception):
    """A call we refuse: ``status`` is the HTTP answer (400 malformed, 401 unknown, 403 forged)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Credentials:
    member_id: str
    access_token: str
    refresh_token: str
    expires_in: int
    server_endpoint: str
    application_token: str
    status: str = ""
    scope: str = ""
    language: str = ""


def events_url() -> str:
    return f"{settings.APP_BASE_URL}/b24/events/"


def _client_endpoint(info: dict) -> tuple[str, str]:
    install = info.get("install") or {}
    endpoint = str(install.get("client_endpoint") or "")
    domain = str(install.get("domain") or urlsplit(endpoint).netloc)
    if not endpoint and domain:
        endpoint = f"https://{domain}/rest/"
    scheme = urlsplit(endpoint).scheme
    if scheme != "https" and not (settings.ALLOW_HTTP_PORTALS and scheme == "http"):
        raise Rejected(403, "portal endpoint must be https")
    return domain, endpoint


def upsert_portal(creds: Credentials) -> Portal:
    """Verify the credentials (app.info on the trusted OAuth server, then ``user.admin``), then create or
    update the portal with them.  Only an administrator's verified token is ever stored, every time:
    any user who opens the app holds a valid token, and the application token is readable by all."""
    if not (creds.member_id and creds.access_token):
        raise Rejected(400, "member_id and an access token are required")
    try:
        oauth_base(creds.server_endpoint)
        user = verify_user_token(creds.access_token, creds.member_id, None, creds.server_endpoint)
    except B24Error as exc:
        log.warning("install for %s refused: %s", creds.member_id[:8], exc.error)
        raise Rejected(403, f"token check failed: {exc.error}") from exc
    if not user.is_admin:
        log.warning("install for %s refused: user %s is not an administrator", creds.member_id[:8], user.user_id)
        raise Rejected(403, "only a portal administrator can install the application")
    info = user.info
    domain, endpoint = _client_endpoint(info)
    with transaction.atomic():
        portal = Portal.objects.select_for_update().filter(member_id=creds.member_id).first() or \
            Portal(member_id=creds.member_id)
        reinstall = portal.pk is None or not portal.is_installed
        portal.domain = domain
        portal.client_endpoint = endpoint
        portal.server_endpoint = creds.server_endpoint or portal.server_endpoint or f"{oauth_base(None)}/rest/"
        portal.status = creds.status or (info.get("install") or {}).get("status", "") or portal.status
        portal.scope = creds.scope or info.get("scope", "") or portal.scope
        if creds.language:
            portal.language = creds.language[:8]
        if creds.application_token:
            portal.set_application_token(creds.application_token)
        elif reinstall:
            # The last installation's token is void; ONAPPINSTALL brings the new one (auth[application_token]).
            portal.app_token_digest = ""
        portal.set_tokens(creds.access_token, creds.refresh_token, creds.expires_in, user.user_id)
        portal.token_admin_lost_at = None
        if portal.uninstalled_at:
            portal.uninstalled_at = None
            portal.installed_at = timezone.now()
        portal.save()
    forget_verified(portal.member_id)
    return portal


def detect_plan(portal: Portal, client: B24Client) -> None:
    """Enterprise portals get a bigger bucket (250/5); app.info tells the licence family."""
    try:
        info = client.call("app.info") or {}
    except B24Error:
        return
    family = str(info.get("LICENSE_FAMILY") or info.get("LICENSE") or "")
    if family and family != portal.license_family:
        Portal.objects.filter(pk=portal.pk).update(license_family=family[:32])
        portal.license_family = family[:32]


def bind_app_events(portal: Portal, client: B24Client) -> None:
    """Bind our lifecycle events once (event.get first, so re-install does not bind twice)."""
    handler = events_url()
    bound = {(str(e.get("event", "")).upper(), e.get("handler")) for e in (client.call("event.get") or [])}
    calls = {f"bind_{name}": ("event.bind", {"event": name, "handler": handler})
             for name in APP_EVENTS if (name, handler) not in bound}
    # Portal events the upper layers subscribed to (e.g. KEDO status changes, handled by signing).
    calls.update({f"bind_{name}": ("event.bind", {"event": name, "handler": handler})
                  for name in signals.portal_event_names() if (name, handler) not in bound})
    if calls:
        result = client.batch(calls)
        for key, err in result.errors.items():
            # A portal without the sign.b2e module cannot bind its events; KEDO is then just unavailable.
            if key.removeprefix("bind_") in APP_EVENTS:
                raise B24Error(str(err.get("error")), str(err.get("error_description", "")), method="event.bind")
            log.info("portal %s: %s not bound (%s)", portal.member_id, key, err.get("error"))


def complete_install(portal: Portal) -> dict:
    """Everything the install page does with the admin's token: plan and events here, then the upper
    layers' own setup (robots) through ``app_installed``; their returned dicts are merged for the page."""
    client = B24Client(portal)
    detect_plan(portal, client)
    bind_app_events(portal, client)
    shown: dict = {}
    for _receiver, outcome in signals.app_installed.send(sender=Portal, portal=portal, client=client):
        if isinstance(outcome, dict):
            shown.update(outcome)
    return shown


def credentials_from_event(form: dict) -> Credentials:
    auth = form.get("auth") if isinstance(form.get("auth"), dict) else {}  # auth=x: no token, refused
    data = form.get("data") or {}
    return Credentials(
        member_id=str(auth.get("member_id", "")), access_token=str(auth.get("access_token", "")),
        refresh_token=str(auth.get("refresh_token", "")), expires_in=_seconds(auth.get("expires_in")),
        server_endpoint=str(auth.get("server_endpoint", "")), application_token=str(auth.get("application_token", "")),
        status=str(auth.get("status", "")), scope=str(auth.get("scope", "")),
        language=str(data.get("LANGUAGE_ID", "")) if isinstance(data, dict) else "")


def _seconds(value, default: int = 3600) -> int:
    """A token lifetime as sent (``expires_in``): digits within a day, else the documented hour."""
    text = str(value or "").strip()
    return min(int(text), 86400) if text.isdigit() and int(text) > 0 else default


def verified_portal(form: dict, only: tuple[str, ...] = ()) -> Portal:
    """The installed portal this callback claims to come from, or Rejected (401 unknown, 403 forged).

    ``only`` loads just those columns (plus what the checks need): the robot handler needs the id alone,
    and skipping the encrypted token columns saves a third of its lookup (bench/handler.py)."""
    auth = form.get("auth") if isinstance(form.get("auth"), dict) else {}
    member_id = str(auth.get("member_id", ""))
    token = str(auth.get("application_token", ""))
    if not member_id or not token:
        raise Rejected(401, "auth[member_id] and auth[application_token] are required")
    portals = Portal.objects.filter(member_id=member_id)
    if only:
        portals = portals.only("member_id", "app_token_digest", "uninstalled_at", *only)
    portal = portals.first()
    if portal is None:
        raise Rejected(401, "unknown portal")
    if not portal.application_token_matches(token):
        raise Rejected(403, "application token mismatch")
    if not portal.is_installed:
        raise Rejected(403, "the application is not installed on this portal")
    return portal


_verified: dict[str, tuple[int, str, float]] = {}  # member_id -> (portal id, token digest, valid until)


def verified_portal_id(form: dict) -> int:
    """verified_portal(form).pk, with the answer kept ``ROBOT_PORTAL_CACHE_TTL`` seconds per process.

    The robot handler's hot path (issue 14): a burst of calls from one portal costs one portal read per
    process and TTL instead of one per call.  The token is still compared on every call; a token that does
    not match the cached digest (rotated by ONAPPUPDATE) is checked against the database at once.  An
    uninstall in another process is seen within the TTL; the worker checks ``is_installed`` anyway."""
    auth = form.get("auth") if isinstance(form.get("auth"), dict) else {}
    member_id = str(auth.get("member_id", ""))
    hit = _verified.get(member_id)
    if hit and hit[2] > time.monotonic() and token_matches(str(auth.get("application_token", "")), hit[1]):
        return hit[0]
    portal = verified_portal(form, only=("id",))
    ttl = float(getattr(settings, "ROBOT_PORTAL_CACHE_TTL", 0) or 0)
    if ttl > 0:
        if len(_verified) > 10000:
            _verified.clear()
        _verified[member_id] = (portal.pk, portal.app_token_digest, time.monotonic() + ttl)
    return portal.pk


def forget_verified(member_id: str) -> None:
    _verified.pop(member_id, None)


def handle_app_event(event: str, form: dict) -> str:
    """Apply one verified lifecycle event; returns a short outcome for the response body."""
    if event == "ONAPPUNINSTALL":
        portal = verified_portal(form)
        try:
            confirmed = uninstall_confirmed(portal)
        except Unconfirmed as exc:
            log.warning("portal %s: ONAPPUNINSTALL not confirmed, OAuth server unreachable (%s); nothing changed",
                        portal.member_id, exc)
            raise Rejected(503, "the uninstall could not be confirmed; nothing was changed") from exc
        if not confirmed:
            log.warning("portal %s: forged ONAPPUNINSTALL refused (the app's tokens still work); nothing changed",
                        portal.member_id)
            raise Rejected(403, "the application is still installed on this portal")
        data = form.get("data") if isinstance(form.get("data"), dict) else {}
        clean = str(data.get("CLEAN", "0")) == "1"
        uninstall(portal, clean)
        return "purged" if clean else "uninstalled"
    # ONAPPINSTALL / ONAPPUPDATE carry a full token set: verified with app.info like an install.
    creds = credentials_from_event(form)
    if not creds.access_token:
        raise Rejected(401, "event carries no access token")
    portal = upsert_portal(creds)
    if event == "ONAPPUPDATE":
        signals.app_updated.send(sender=Portal, portal=portal)
    return "stored"


def uninstall(portal: Portal, clean: bool) -> None:
    """All tokens are void after uninstall; with CLEAN=1 every row of the portal goes too."""
    forget_verified(portal.member_id)
    with transaction.atomic():
        if clean:
            signals.app_uninstalled.send(sender=Portal, portal=portal, clean=True)
            portal.delete()  # cascades to robot calls, provider accounts (secrets), requests
            log.info("portal %s uninstalled and purged", portal.member_id)
            return
        portal.access_token = ""
        portal.refresh_token = ""
        portal.token_expires_at = None
        portal.uninstalled_at = timezone.now()
        portal.save()
        signals.app_uninstalled.send(sender=Portal, portal=portal, clean=False)
    log.info("portal %s uninstalled (data kept)", portal.member_id)


def handle_portal_event(event: str, form: dict) -> str:
    """A portal event an upper layer registered for: verified like an app event, then handed over."""
    handler = signals.portal_event_handler(event)
    if handler is None:
        raise Rejected(400, f"unsupported event {event or '(none)'}")
    portal = verified_portal(form)
    data = form.get("data") if isinstance(form.get("data"), dict) else {}
    return handler(portal, data)
