"""What proves a caller: a user's own token, checked where it cannot be forged.

Every user who opens the app can read the ``APPLICATION_TOKEN`` of a cloud frame POST, so it proves
nothing about *who* is calling.  A user's ``AUTH_ID`` does:

1. ``app.info`` on the trusted OAuth server (never the SERVER_ENDPOINT a request names unless it is one
   of ours) says the token was issued to our ``client_id`` on that ``member_id``;
2. ``user.current`` on the portal's endpoint says who the user is, ``user.admin`` whether an admin.

``ONAPPUNINSTALL`` carries no token at all: :func:`uninstall_confirmed` asks the OAuth server whether
the stored tokens still work before anything is deleted.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from django.utils import timezone

from . import coordination
from .models import Portal
from .rest import B24Client, B24Error
from .rest.client import call_with_token
from .rest.oauth import app_info, request_refresh, verify_install_token
from .rest.permissions import is_admin_only

log = logging.getLogger("b24sign.trust")

def truthy(value) -> bool:
    return value in (True, "true", 1, "1", "Y", "y")


@dataclass
class VerifiedUser:
    """A user token that passed both checks."""
    info: dict          # the app.info result of the trusted OAuth server
    endpoint: str       # the REST endpoint the user was checked on
    user_id: int
    is_admin: bool
    name: str = ""


def verify_user_token(access_token: str, member_id: str, endpoint: str | None,
                      server_endpoint: str | None = None) -> VerifiedUser:
    """Raise B24Error unless ``access_token`` is a live token of our app on ``member_id``.

    ``endpoint`` is the portal's stored REST endpoint; ``None`` (a portal we do not know yet) takes the
    one the trusted OAuth server names in ``app.info``."""
    if not access_token:
        raise B24Error("NO_AUTH_FOUND", "no access token", method="app.info")
    info = verify_install_token(access_token, member_id, server_endpoint)
    install = info.get("install") or {}
    endpoint = endpoint or str(install.get("client_endpoint") or "")
    if not endpoint:
        raise B24Error("BAD_RESPONSE", "app.info names no portal endpoint", method="app.info")
    user = call_with_token(endpoint, access_token, "user.current") or {}
    admin = call_with_token(endpoint, access_token, "user.admin")
    try:
        user_id = int(user.get("ID"))
    except (TypeError, ValueError, AttributeError):
        raise B24Error("BAD_RESPONSE", "Bitrix24 did not say who the user is", method="user.current") from None
    info_user = info.get("user_id")
    if info_user not in (None, "") and str(info_user) != str(user_id):
        raise B24Error("WRONG_USER", "the token's user differs between app.info and user.current", method="app.info")
    name = " ".join(str(user.get(k) or "") for k in ("NAME", "LAST_NAME")).strip()
    return VerifiedUser(info=info, endpoint=endpoint, user_id=user_id, is_admin=truthy(admin), name=name)


# OAuth answers that mean "this app is no longer on that portal" (error-codes.md; the emulator follows them).
GONE = {"invalid_token", "invalid_grant", "invalid_client", "NOT_INSTALLED", "APPLICATION_NOT_FOUND",
        "expired_token", "WRONG_CLIENT", "WRONG_PORTAL", "NO_AUTH_FOUND"}


class Unconfirmed(Exception):
    """The OAuth server could not be asked (network, 5xx): neither confirmed nor refuted."""


def uninstall_confirmed(portal) -> bool:
    """True when the trusted OAuth server confirms the app is gone from ``portal``; False when the stored
    tokens still work (the event is forged).  A successful refresh is stored: refresh tokens are
    single-use, so dropping the new pair would itself kill the portal."""
    if portal.access_token:
        try:
            verify_install_token(portal.access_token, portal.member_id, portal.server_endpoint)
            return False  # the app still answers for this portal: somebody forged the event
        except B24Error as exc:
            if exc.error not in GONE:
                raise Unconfirmed(exc.error) from exc
    if not portal.refresh_token:
        return True
    try:
        data = request_refresh(portal.refresh_token, portal.server_endpoint)
    except B24Error as exc:
        if exc.error in GONE or (exc.status or 0) in (400, 401, 403):
            return True
        raise Unconfirmed(exc.error) from exc
    portal.set_tokens(data["access_token"], data.get("refresh_token", ""), data.get("expires_in"),
                      data.get("user_id"))
    portal.save(update_fields=["access_token", "refresh_token", "token_expires_at", "token_user_id",
                               "token_version", "needs_reinstall", "updated_at"])
    return False


__all__ = ["VerifiedUser", "verify_user_token", "uninstall_confirmed", "Unconfirmed", "is_admin_only", "truthy",
           "app_info"]


ADMIN_CHECK_TTL = 300  # seconds: the settings page asks Bitrix24 at most this often


def stored_token_is_admin(portal) -> bool:
    """Whether the user of the portal's stored token is still an administrator (``user.admin`` with that
    token, remembered for a few minutes).  Records the answer on the portal: admin-only methods stop
    while it is False (B24Client), and an administrator opening the app puts their token in its place."""
    key = f"token-admin:{portal.pk}:{portal.token_version}"
    known = coordination.recall(key)
    if known is None:
        try:
            known = truthy(B24Client(portal).call("user.admin"))
        except B24Error as exc:
            log.info("portal %s: admin check of the stored token failed (%s)", portal.member_id, exc.error)
            return portal.token_admin_lost_at is None
        coordination.remember(key, known, ADMIN_CHECK_TTL)
    lost = None if known else (portal.token_admin_lost_at or timezone.now())
    if lost != portal.token_admin_lost_at:
        Portal.objects.filter(pk=portal.pk).update(token_admin_lost_at=lost)
        portal.token_admin_lost_at = lost
        if lost:
            log.warning("portal %s: the stored token's user %s is no longer an administrator",
                        portal.member_id, portal.token_user_id)
    return bool(known)
