"""What b24sign has set up in a portal's CRM card, and what each request's card last showed.

``CardSetup`` (one per portal): the placements bound, the triggers registered, and per CRM entity type the
three status fields (created by us or mapped by an admin to existing ones) with their state.
``CardState`` (one per signature request): the timeline activity's id and what was last pushed to
Bitrix24 — the diff against it is what the next sync sends, so a retry never sends an event twice.
"""
from __future__ import annotations

from django.db import models
from django.utils import timezone

from b24app.models import Portal


class CardSetup(models.Model):
    portal = models.OneToOneField(Portal, on_delete=models.CASCADE, related_name="card_setup")
    # placement code -> {"state": "bound"|"failed", "message": str, "at": iso}
    placements = models.JSONField(default=dict, blank=True)
    triggers = models.JSONField(default=dict, blank=True)  # code -> "registered"|"failed: ..."
    # entityTypeId (str) -> {"enabled": bool, "status": UF name, "date": UF name, "file": UF name,
    #                        "state": "ok"|"missing"|"failed", "message": str, "mapped": bool}
    fields = models.JSONField(default=dict, blank=True)
    smart_types = models.JSONField(default=list, blank=True)  # [{"id", "entityTypeId", "title"}] at last bind
    synced_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"CRM card setup of portal {self.portal_id}"

    @classmethod
    def for_portal(cls, portal) -> "CardSetup":
        return cls.objects.get_or_create(portal=portal)[0]


class CardState(models.Model):
    request = models.OneToOneField("signing.SignatureRequest", on_delete=models.CASCADE, related_name="card")
    activity_id = models.PositiveBigIntegerField(null=True, blank=True)
    pushed_status = models.CharField(max_length=20, blank=True)
    pushed_signers = models.JSONField(default=dict, blank=True)   # email -> display status, as the card last showed
    pushed_views = models.JSONField(default=list, blank=True)     # emails whose "viewed" log message went out
    pushed_fields = models.JSONField(default=dict, blank=True)    # UF name -> value last written (file: its key)
    trigger_fired = models.CharField(max_length=40, blank=True)   # the trigger code fired for the outcome
    notified = models.JSONField(default=list, blank=True)         # outcome events already notified
    card_updates = models.PositiveIntegerField(default=0)         # configurable.add/update sent (for the bench)
    # Changes announced / changes synced: the portal's sync task takes every request with due > synced, so
    # the changes of many requests (a burst, a bulk signing) share batches instead of a request each.
    due = models.PositiveIntegerField(default=0)
    synced = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"card of request {self.request_id}"


class PortalNotice(models.Model):
    """An admin notification about a provider connection (sent once per account and kind until it recovers)."""

    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="card_notices")
    key = models.CharField(max_length=120)
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["portal", "key"], name="notice_once")]
