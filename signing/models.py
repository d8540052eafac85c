"""Connected provider accounts, signature requests, their signers and their history."""
from __future__ import annotations

import hashlib
import secrets
import uuid

from django.conf import settings
from django.db import models, transaction
from django.db.models.functions import Upper
from django.utils import timezone

from b24app.crypto import EncryptedJSONField, EncryptedTextField
from b24app.models import Portal

from . import states
from .registry import provider_class
from .signals import request_changed


def _new_webhook_secret() -> str:
    return secrets.token_urlsafe(24)


class ProviderAccount(models.Model):
    """One portal's connection to one provider; its credentials are encrypted at rest."""

    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="provider_accounts")
    provider = models.CharField(max_length=32)
    label = models.CharField(max_length=100, blank=True)
    credentials = EncryptedJSONField(blank=True, default=dict)
    # The secret path segment of our webhook URL; stored encrypted, looked up through its digest.
    webhook_secret = EncryptedTextField(blank=True)
    webhook_secret_digest = models.CharField(max_length=64, unique=True)
    is_default = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    last_test_at = models.DateTimeField(null=True, blank=True)
    last_test_ok = models.BooleanField(null=True)
    last_test_message = models.TextField(blank=True)
    # A webhook subscription found missing by the periodic check, until it is restored and announced:
    # the admins' notice is keyed by it, so each loss is told once however often the check runs.
    callbacks_lost_at = models.DateTimeField(null=True, blank=True)
    callbacks_checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["portal", "provider"], name="one_account_per_provider")]

    def __str__(self):
        return f"{self.provider} @ {self.portal_id}"

    @staticmethod
    def digest(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    def ensure_webhook_secret(self) -> None:
        if not self.webhook_secret:
            self.webhook_secret = _new_webhook_secret()
            self.webhook_secret_digest = self.digest(self.webhook_secret)

    def webhook_url(self) -> str:
        return f"{settings.APP_BASE_URL}/signing/webhooks/{self.provider}/{self.webhook_secret}/"

    def provider_impl(self):
        return provider_class(self.provider)(self)

    def save(self, *args, **kwargs):
        self.ensure_webhook_secret()
        super().save(*args, **kwargs)


class SignatureRequestQuerySet(models.QuerySet):
    def open(self):
        return self.filter(status__in=states.OPEN)


class SignatureRequest(models.Model):
    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="signature_requests")
    account = models.ForeignKey(ProviderAccount, on_delete=models.PROTECT, related_name="requests")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    provider = models.CharField(max_length=32)
    external_id = models.CharField(max_length=255, blank=True, db_index=True)
    title = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=20, choices=states.CHOICES, default=states.DRAFT, db_index=True)
    status_changed_at = models.DateTimeField(default=timezone.now)
    error = models.TextField(blank=True)

    # Which CRM item it belongs to (entityTypeId: 1 lead, 2 deal, 31 invoice, >=128 smart process).
    entity_type_id = models.PositiveIntegerField(null=True, blank=True)
    entity_id = models.PositiveIntegerField(null=True, blank=True)
    document_name = models.CharField(max_length=255, blank=True)
    document_size = models.PositiveBigIntegerField(default=0)

    # Send recovery point: "sending" with no external_id after a crash means ask the provider first.
    send_phase = models.CharField(max_length=10, default="pending")  # pending | sending | sent
    options = models.JSONField(default=dict, blank=True)  # the spec as sent (without the file)
    provider_state = models.JSONField(default=dict, blank=True)  # provider's ids and raw states

    # Signing links handed out instead of the provider's e-mails ({email: {url, expires_at}}); bearer
    # secrets, so encrypted like credentials.  Replaced whenever new ones are issued.
    signing_links = EncryptedJSONField(blank=True, default=dict)
    signed_file = models.FileField(upload_to="signed/%Y/%m/", max_length=300, blank=True)
    audit_file = models.FileField(upload_to="signed/%Y/%m/", max_length=300, blank=True)
    signed_attached_at = models.DateTimeField(null=True, blank=True)
    timeline_comment_id = models.CharField(max_length=32, blank=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    next_poll_at = models.DateTimeField(null=True, blank=True, db_index=True)
    poll_count = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SignatureRequestQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["portal", "-created_at"], name="req_portal_newest"),
            models.Index(fields=["portal", "status", "-created_at"], name="req_portal_status_newest"),
            models.Index(fields=["portal", "provider", "-created_at"], name="req_portal_provider_newest"),
        ]

    def __str__(self):
        return f"{self.provider}:{self.public_id} {self.status}"

    @property
    def is_terminal(self) -> bool:
        return states.is_terminal(self.status)

    def move_to(self, new_status: str, *, message: str = "", source: str = "", payload=None,
                error: str = "") -> bool:
        """Apply one state-machine step.  False (and nothing written) when it is not a step forward."""
        while True:
            current = self.status
            if not states.can_move(current, new_status):
                return False
            # No savepoint inside a caller's transaction (a send's, a snapshot's): nothing here is caught and
            # gone on from, so a failure undoes the caller's transaction as a whole anyway.
            with transaction.atomic(savepoint=False):
                now = timezone.now()
                fields = {"status": new_status, "status_changed_at": now, "updated_at": now}
                if error:
                    fields["error"] = error[:4000]
                won = SignatureRequest.objects.filter(pk=self.pk, status=current).update(**fields)
                if won:
                    for k, v in fields.items():
                        setattr(self, k, v)
                    RequestEvent.objects.create(request=self, kind="status", from_status=current,
                                                to_status=new_status, message=message[:2000], source=source,
                                                payload=payload or {})
                    request_changed.send(sender=SignatureRequest, request=self, old_status=current,
                                         new_status=new_status)
                    return True
            self.refresh_from_db(fields=["status", "error"])  # lost the race: look again

    def log(self, kind: str, message: str, *, source: str = "", payload=None, dedupe_key: str | None = None) -> bool:
        """Append to the history; with ``dedupe_key`` the same event is recorded once (False if seen)."""
        if dedupe_key:
            _, created = RequestEvent.objects.get_or_create(
                request=self, dedupe_key=dedupe_key,
                defaults={"kind": kind, "message": message[:2000], "source": source, "payload": payload or {}})
            return created
        RequestEvent.objects.create(request=self, kind=kind, message=message[:2000], source=source,
                                    payload=payload or {})
        return True


class SignerRow(models.Model):
    request = models.ForeignKey(SignatureRequest, on_delete=models.CASCADE, related_name="signers")
    email = models.CharField(max_length=254, db_index=True)
    name = models.CharField(max_length=200, blank=True)
    phone = models.CharField(max_length=32, blank=True)
    role = models.CharField(max_length=20, default="signer")
    order = models.PositiveIntegerField(default=1)
    user_id = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=20, default="pending")  # pending | signed | declined | cancelled
    external_id = models.CharField(max_length=255, blank=True)
    signed_at = models.DateTimeField(null=True, blank=True)
    # The first time the provider saw this signer open the document (set once, while still to sign).
    viewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["order", "id"]
        # The dashboard's search by signer email (``email__iexact``) stays an index lookup at any size.
        indexes = [models.Index(Upper("email"), name="signer_email_upper")]

    @property
    def display_status(self) -> str:
        """What the card and the tab show: ``viewed`` is a pending signer who has opened the document."""
        return "viewed" if self.status == "pending" and self.viewed_at else self.status


class RequestEvent(models.Model):
    """The request's history: status moves, webhooks, reminders, errors, the answer to the workflow."""

    request = models.ForeignKey(SignatureRequest, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=32)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    message = models.TextField(blank=True)
    source = models.CharField(max_length=32, blank=True)  # webhook | poll | robot | admin | worker
    payload = models.JSONField(default=dict, blank=True)
    dedupe_key = models.CharField(max_length=255, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["request", "dedupe_key"], name="event_once")]


class PortalSettings(models.Model):
    """A portal's defaults for new signature requests, edited by its admins in the app's settings page.

    The default provider is ``ProviderAccount.is_default``; everything else a robot does not say comes from here.
    """

    portal = models.OneToOneField(Portal, on_delete=models.CASCADE, related_name="signing_settings")
    sender_name = models.CharField(max_length=100, blank=True, help_text="shown to signers as the sender")
    reply_to = models.EmailField(blank=True, help_text="where signers' replies go")
    expiry_days = models.PositiveSmallIntegerField(default=30)
    reminder_days = models.PositiveSmallIntegerField(default=3, help_text="0: no automatic reminders")
    attach_signed_copy = models.BooleanField(default=True, help_text="signed PDF on the CRM item's timeline")
    updated_by = models.PositiveIntegerField(null=True, blank=True, help_text="Bitrix24 user id")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"settings of portal {self.portal_id}"

    @classmethod
    def for_portal(cls, portal) -> "PortalSettings":
        """The portal's settings; an unsaved row with the defaults when the admin never saved any."""
        return cls.objects.filter(portal=portal).first() or cls(portal=portal)
