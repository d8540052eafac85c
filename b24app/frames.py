"""Who is looking at the app page, without cookies (a third-party frame cannot rely on them).

Opening the app or a placement, Bitrix24 POSTs the user's token (AUTH_ID) with member_id (spec §1.2); a
cloud portal may add APPLICATION_TOKEN, which every user can read, so it is optional and never a proof.
We accept the POST only when the user's own token holds (``b24app.trust.verify_user_token``):

1. ``app.info`` on the trusted OAuth server says AUTH_ID was issued to our client_id on that member_id;
2. ``user.current`` on *that* portal's stored endpoint says who the user is, so a forged token, or a real
   one from another portal, is refused; ``user.admin`` there says whether the user is an administrator.

The page then carries a short-lived signed token (portal, user, admin flag, language) in its links
(``?t=``, GET only), forms (``t``) and XHR headers (``X-B24Sign-Token``); a POST never takes it from the
URL.  Every later request re-checks it and loads its portal again, so all queries are scoped by
``request.ui.portal``.  The user's own AUTH_ID stays server-side (encrypted in Redis, keyed by a random
id in the page token) for checks with the user's rights: CRM read access, and ``user.admin`` again
before an admin action on a page older than five minutes.
"""
from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from functools import wraps

from django.core import signing
from django.http import JsonResponse
from django.shortcuts import render
from django.utils import translation
from django.views.decorators.csrf import csrf_exempt

from b24app import coordination
from b24app.crypto import decrypt, encrypt
from b24app.framing import allow_portal_frame
from b24app.lifecycle import Rejected
from b24app.models import Portal
from b24app.rest import B24Error
from b24app.rest.client import call_with_token
from b24app.trust import VerifiedUser, truthy, verify_user_token

log = logging.getLogger("b24sign.ui")

SALT = "b24sign.ui"
MAX_AGE = 3600  # like the Bitrix24 access token itself; reopening the app issues a new one
ADMIN_RECHECK_AFTER = 300  # seconds: older pages ask user.admin again before an admin action
HEADER = "HTTP_X_B24SIGN_TOKEN"
RU_LANGS = {"ru", "by", "kz", "ua"}


def ui_language(code: str | None) -> str:
    """Bitrix24's LANG (en, de, ru, ua, by, kz, …) to one of ours."""
    return "ru" if (code or "").lower()[:2] in RU_LANGS else "en"


@dataclass
class UiSession:
    portal: Portal
    user_id: int
    is_admin: bool
    lang: str
    name: str = ""
    sid: str = ""        # keys the user's own Bitrix24 token, kept server-side (never in the page)
    issued: int = 0      # when the frame POST proved the user (epoch seconds)

    @property
    def token(self) -> str:
        # The digest prefix ties the token to this installation: after a reinstall old tokens are void.
        return signing.dumps({"p": self.portal.pk, "u": self.user_id, "a": self.is_admin, "l": self.lang,
                              "n": self.name[:60], "v": self.portal.app_token_digest[:12], "s": self.sid,
                              "i": self.issued}, salt=SALT)

    def call_as_user(self, method: str, params: dict | None = None):
        """A REST call with the user's own token (their rights, not the app's).  Rejected(401) once it is gone."""
        return call_with_token(self.portal.client_endpoint, self.user_access_token(), method, params)

    def user_access_token(self) -> str:
        """The user's own AUTH_ID kept for this page (work done on their behalf later, e.g. a send from the
        CRM card, reads with their rights).  Rejected(401) once it is gone."""
        raw = coordination.recall(f"ui-auth:{self.sid}") if self.sid else None
        if not raw:
            raise Rejected(401, "this page has expired: close it and open the application again")
        return decrypt(raw)


def _keep_user_token(portal: Portal, user: VerifiedUser, auth_id: str, expires) -> tuple[str, int]:
    """The user's AUTH_ID, encrypted in Redis for as long as it lives, so later pages can act with the
    user's own rights (CRM read checks, the admin re-check) without the token ever being in a URL."""
    try:
        ttl = max(60, min(int(expires or MAX_AGE), MAX_AGE))
    except (TypeError, ValueError):
        ttl = MAX_AGE
    sid = secrets.token_urlsafe(18)
    coordination.remember(f"ui-auth:{sid}", encrypt(auth_id), ttl)
    return sid, int(time.time())


def frame_post_portal(post) -> Portal:
    """The installed portal a frame POST names by ``member_id``.  ``APPLICATION_TOKEN`` is optional (Bitrix24's
    app layout does not send it) and never sufficient; when present it must still match (a stale frame)."""
    member_id = str(post.get("member_id", ""))
    if not member_id:
        raise Rejected(401, "member_id is required")
    portal = Portal.objects.filter(member_id=member_id).first()
    if portal is None:
        raise Rejected(401, "unknown portal")
    if not portal.is_installed:
        raise Rejected(403, "the application is not installed on this portal")
    app_token = str(post.get("APPLICATION_TOKEN", ""))
    if app_token and portal.app_token_digest and not portal.application_token_matches(app_token):
        raise Rejected(403, "application token mismatch")
    return portal


def verified_frame_user(post) -> tuple[Portal, VerifiedUser]:
    """Any frame (the app, every placement): the user's own AUTH_ID is the proof (module docstring)."""
    portal = frame_post_portal(post)
    auth_id = str(post.get("AUTH_ID", ""))
    if not auth_id:
        raise Rejected(401, "AUTH_ID is required")
    # The stored endpoints, never the DOMAIN or SERVER_ENDPOINT of the request: a forged page cannot
    # point us elsewhere.
    try:
        user = verify_user_token(auth_id, portal.member_id, portal.client_endpoint, portal.server_endpoint)
    except B24Error as exc:
        log.info("portal %s: frame auth refused (%s)", portal.member_id[:8], exc.error)
        raise Rejected(403, "the Bitrix24 authorization of this page is not valid for this portal") from exc
    if user.is_admin and (portal.token_admin_lost_at or portal.needs_reinstall or not portal.access_token):
        adopt_admin_token(portal, user, auth_id, str(post.get("REFRESH_ID", "")), post.get("AUTH_EXPIRES"))
    return portal, user


def adopt_admin_token(portal: Portal, user: VerifiedUser, access: str, refresh: str, expires) -> None:
    """The stored token's user stopped being an admin (or its refresh was rejected): an administrator
    opened the app, with a token just verified, so theirs becomes the app's token."""
    try:
        expires_in = int(expires or 3600)
    except (TypeError, ValueError):
        expires_in = 3600
    portal.set_tokens(access, refresh, expires_in, user.user_id)
    portal.token_admin_lost_at = None
    portal.save(update_fields=["access_token", "refresh_token", "token_expires_at", "token_user_id",
                               "token_version", "needs_reinstall", "token_admin_lost_at", "updated_at"])
    log.info("portal %s: administrator %s's verified token stored", portal.member_id, user.user_id)


def session_from_frame_post(request) -> UiSession:
    """The POST Bitrix24 sends when a user opens the app: the user's own token, or Rejected (401/403)."""
    portal, user = verified_frame_user(request.POST)
    sid, issued = _keep_user_token(portal, user, request.POST.get("AUTH_ID", ""), request.POST.get("AUTH_EXPIRES"))
    return UiSession(portal=portal, user_id=user.user_id, is_admin=user.is_admin,
                     lang=ui_language(request.GET.get("LANG") or portal.language), name=user.name,
                     sid=sid, issued=issued)


def session_from_token(request) -> UiSession:
    # A POST action takes its token from the form or the header only: a token in a URL lands in logs,
    # history and Referer headers, and a link must never be enough to act.
    raw = request.META.get(HEADER) or (request.POST.get("t") if request.method == "POST" else request.GET.get("t"))
    raw = raw or ""
    if not raw:
        raise Rejected(401, "open b24sign from your Bitrix24 portal")
    try:
        data = signing.loads(raw, salt=SALT, max_age=MAX_AGE)
    except signing.SignatureExpired:
        exc = Rejected(401, "this page has expired: close it and open the application again")
        # Our own token, only too old: its portal may frame the message (otherwise the frame is just blank).
        old = signing.loads(raw, salt=SALT)
        portal = Portal.objects.filter(pk=old.get("p")).first()
        exc.frame_domain, exc.lang = (portal.domain if portal else None), old.get("l", "en")
        raise exc from None
    except signing.BadSignature:
        raise Rejected(403, "invalid page token") from None
    portal = Portal.objects.filter(pk=data.get("p")).first()
    if portal is None or not portal.is_installed or portal.app_token_digest[:12] != data.get("v"):
        raise Rejected(403, "the application is not installed on this portal any more")
    return UiSession(portal=portal, user_id=int(data["u"]), is_admin=bool(data["a"]), lang=data.get("l", "en"),
                     name=data.get("n", ""), sid=str(data.get("s", "")), issued=int(data.get("i") or 0))


def recheck_admin(ui: UiSession) -> None:
    """Admin actions on a page older than ADMIN_RECHECK_AFTER ask Bitrix24 again, with the user's own token
    (an administrator demoted since opening the app must not keep the rights for the page's hour)."""
    if time.time() - ui.issued <= ADMIN_RECHECK_AFTER:
        return
    key = f"ui-admin:{ui.sid}"
    if coordination.recall(key):
        return
    try:
        admin = truthy(ui.call_as_user("user.admin"))
    except B24Error as exc:
        raise Rejected(401, "this page has expired: close it and open the application again") from exc
    if not admin:
        log.info("portal %s: user %s is no longer an administrator", ui.portal.member_id[:8], ui.user_id)
        raise Rejected(403, "only a Bitrix24 administrator can change b24sign's settings")
    coordination.remember(key, True, ADMIN_RECHECK_AFTER)


def refused(request, exc: Rejected, lang: str = "en"):
    lang = getattr(exc, "lang", lang)
    with translation.override(lang):
        response = render(request, "b24app/app/refused.html", {"message": exc.message, "lang": lang},
                          status=exc.status)
    if getattr(exc, "frame_domain", None):
        return allow_portal_frame(response, exc.frame_domain)
    return response  # otherwise X-Frame-Options: DENY, like every failure


def _wrap(view, source, admin: bool):
    @csrf_exempt  # no cookies in a third-party frame: the signed token in the form is the CSRF proof
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        lang = ui_language(request.GET.get("LANG"))
        try:
            ui = source(request)
            if admin and not ui.is_admin:
                raise Rejected(403, "only a Bitrix24 administrator can change b24sign's settings")
            if admin:
                recheck_admin(ui)
        except Rejected as exc:
            if request.headers.get("Accept", "").startswith("application/json"):
                return JsonResponse({"ok": False, "message": exc.message}, status=exc.status)
            return refused(request, exc, lang)
        request.ui = ui
        with translation.override(ui.lang):
            request.LANGUAGE_CODE = ui.lang
            try:
                response = view(request, *args, **kwargs)
            except Rejected as exc:  # e.g. the user's own token expired before the page did
                exc.frame_domain, exc.lang = ui.portal.domain, ui.lang
                if request.headers.get("Accept", "").startswith("application/json"):
                    return JsonResponse({"ok": False, "message": exc.message}, status=exc.status)
                return refused(request, exc, ui.lang)
        response.setdefault("Content-Language", ui.lang)
        response.setdefault("Cache-Control", "no-store")
        return allow_portal_frame(response, ui.portal.domain)

    return wrapped


def frame_entry(view):
    """The app's main URL: Bitrix24's POST is the proof."""
    return _wrap(view, session_from_frame_post, admin=False)


def ui_view(view):
    """Any page after the first: the signed token is the proof; managers and admins alike."""
    return _wrap(view, session_from_token, admin=False)


def admin_view(view):
    """Changes to settings, and actions on requests: administrators only (checked on the server)."""
    return _wrap(view, session_from_token, admin=True)
