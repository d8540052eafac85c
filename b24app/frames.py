"""Who is looking at the app page, without cookies (a third-party frame cannot rely on them).

Opening the app or a placement, Bitrix24 POSTs the user's token (AUTH_ID) with member_id (spec §1.2); a
cloud portal may add APPLICATION_TOKEN, which every user can read, so it is optional and never a proof.
We accept the POST only when the user's own token holds (``b24app.trust.verify_user_token``):

1. ``app.info`` on the trusted OAuth server says AUTH_ID was issued to our client_id on that member_id;
2. ``user.current`` on *that* portal's stored endpoint says who the user is, so a forged token, or a real
   one from another portal, is refused; ``user.admin`` there says whether the user is an administrator.

The page then carries a short-lived signed token (portal, user, admin flag, language) in its links
(``?t=``), forms (``t``) and XHR headers (``X-B24Sign-Token``).  Every later request re-checks it and
loads its portal again, so all queries are scoped by ``request.ui.portal``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import wraps

from django.core import signing
from django.http import JsonResponse
from django.shortcuts import render
from django.utils import translation
from django.views.decorators.csrf import csrf_exempt

from b24app.framing import allow_portal_frame
from b24app.lifecycle import Rejected
from b24app.models import Portal
from b24app.rest import B24Error
from b24app.trust import VerifiedUser, verify_user_token

log = logging.getLogger("b24sign.ui")

SALT = "b24sign.ui"
MAX_AGE = 3600  # like the Bitrix24 access token itself; reopening the app issues a new one
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

    @property
    def token(self) -> str:
        # The digest prefix ties the token to this installation: after a reinstall old tokens are void.
        return signing.dumps({"p": self.portal.pk, "u": self.user_id, "a": self.is_admin, "l": self.lang,
                              "n": self.name[:60], "v": self.portal.app_token_digest[:12]}, salt=SALT)


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
    return UiSession(portal=portal, user_id=user.user_id, is_admin=user.is_admin,
                     lang=ui_language(request.GET.get("LANG") or portal.language), name=user.name)


def session_from_token(request) -> UiSession:
    raw = request.META.get(HEADER) or request.POST.get("t") or request.GET.get("t") or ""
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
                     name=data.get("n", ""))


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
        except Rejected as exc:
            if request.headers.get("Accept", "").startswith("application/json"):
                return JsonResponse({"ok": False, "message": exc.message}, status=exc.status)
            return refused(request, exc, lang)
        request.ui = ui
        with translation.override(ui.lang):
            request.LANGUAGE_CODE = ui.lang
            response = view(request, *args, **kwargs)
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
