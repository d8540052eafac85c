"""Portals: one row per Bitrix24 account that installed b24sign, keyed by its stable member_id."""
from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models
from django.utils import timezone

from .crypto import EncryptedTextField, token_digest, token_matches


class PortalQuerySet(models.QuerySet):
    def installed(self):
        return self.filter(uninstalled_at__isnull=True)


class Portal(models.Model):
    """A Bitrix24 portal.  Every other tenant-owned row points here and is queried through it."""

    member_id = models.CharField(max_length=64, unique=True)
    domain = models.CharField(max_length=255)
    client_endpoint = models.URLField(help_text="https://<portal>/rest/")
    server_endpoint = models.URLField(help_text="OAuth server REST URL")
    status = models.CharField(max_length=1, blank=True, help_text="L local, F free, S subscription")
    scope = models.CharField(max_length=500, blank=True)
    language = models.CharField(max_length=8, default="en")
    license_family = models.CharField(max_length=32, blank=True)

    # application_token is only ever compared, so only its HMAC is kept.
    app_token_digest = models.CharField(max_length=64)
    # Tokens of the installing admin, used for app-context calls (robot registration, event.send).
    access_token = EncryptedTextField(blank=True)
    refresh_token = EncryptedTextField(blank=True)
    token_expires_at = models.DateTimeField(null=True, blank=True)
    token_user_id = models.IntegerField(null=True, blank=True)
    token_version = models.PositiveIntegerField(default=0)
    needs_reinstall = models.BooleanField(default=False, help_text="refresh token was rejected")
    # Set when Bitrix24 says the stored token's user is no longer an administrator: admin-only methods
    # then stop until an administrator opens the app once (their verified token replaces it).
    token_admin_lost_at = models.DateTimeField(null=True, blank=True)
    access_problem = models.CharField(max_length=500, blank=True,
                                      help_text="why Bitrix24 refuses the app's calls (shown in the settings)")
    access_problem_at = models.DateTimeField(null=True, blank=True)

    rate_burst = models.FloatField(null=True, blank=True, help_text="override of the plan's bucket size")
    rate_drain = models.FloatField(null=True, blank=True, help_text="override of the plan's drain rate /s")

    installed_at = models.DateTimeField(default=timezone.now)
    uninstalled_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PortalQuerySet.as_manager()

    def __str__(self):
        return f"{self.domain} ({self.member_id[:8]})"

    @property
    def granted_scopes(self) -> frozenset[str]:
        """The scopes Bitrix24 granted the app on this portal (``APPLICATION_SCOPE`` / ``app.info``)."""
        return frozenset(s for s in re.split(r"[,\s]+", self.scope or "") if s)

    def missing_scopes(self, needed) -> list[str]:
        """Of ``needed``, the scopes not granted (nothing when the grant is unknown: an old row)."""
        granted = self.granted_scopes
        return sorted(set(needed) - granted) if granted else []

    @property
    def is_installed(self) -> bool:
        return self.uninstalled_at is None

    @property
    def base_url(self) -> str:
        parts = urlsplit(self.client_endpoint)
        return f"{parts.scheme}://{parts.netloc}"

    def set_application_token(self, token: str) -> None:
        self.app_token_digest = token_digest(token)

    def application_token_matches(self, token: str) -> bool:
        return token_matches(token, self.app_token_digest)

    def set_tokens(self, access_token: str, refresh_token: str, expires_in: int | float | None,
                   user_id: int | None = None) -> None:
        self.access_token = access_token
        if refresh_token:
            self.refresh_token = refresh_token
        self.token_expires_at = timezone.now() + timedelta(seconds=int(expires_in or 3600))
        if user_id:
            self.token_user_id = int(user_id)
        self.token_version += 1
        self.needs_reinstall = False

    @property
    def plan(self) -> str:
        """The rate-limit plan, as a metrics label: "enterprise" (250/5) or "standard" (50/2)."""
        return "enterprise" if (self.license_family or "").lower().startswith("ent") else "standard"

    def rate_limits(self) -> tuple[float, float]:
        """(burst, drain/s) for this portal's leaky bucket, less a reserve for other apps on our IP."""
        if self.rate_burst and self.rate_drain:
            burst, drain = self.rate_burst, self.rate_drain
        elif self.license_family.lower().startswith("ent"):
            burst, drain = 250.0, 5.0
        else:
            burst, drain = settings.B24_RATE_BURST, settings.B24_RATE_DRAIN
        reserve = settings.B24_RATE_RESERVE
        return max(1.0, burst * (1 - reserve)), drain * (1 - reserve / 2)
