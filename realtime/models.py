"""The transactional outbox: an event written in the same database transaction as the change that caused it.

A row exists exactly when its transaction committed; the relay (``realtime.relay``) publishes the rows of each
stream in commit order and marks them sent (``realtime.outbox`` explains how commit order is known).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

NOTIFY_CHANNEL = "realtime_outbox"
"""The PostgreSQL LISTEN/NOTIFY channel a trigger on the outbox table notifies after every insert statement."""


class OutboxEvent(models.Model):
    """One event waiting to be published (``sent_at`` null), or published and kept for ``OUTBOX_RETENTION_SECONDS``."""

    stream = models.CharField(max_length=200, help_text="channel:scope, e.g. orders:loc-xyz789")
    channel = models.CharField(max_length=32)
    event = models.CharField(max_length=64)
    scope_id = models.CharField(max_length=64, help_text="The location_id, or the user_id of a user channel.")
    data = models.JSONField(default=dict)
    source = models.CharField(max_length=16, default="outbox", help_text="metrics.PUBLISH_SOURCES: model, outbox")
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    commit_seq = models.BigIntegerField(
        null=True, blank=True, editable=False, help_text="PostgreSQL: the row's place in commit order, set at commit."
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["id"]
        indexes = [
            # The relay's claim and the backlog read only unsent rows; partial indexes stay small.
            models.Index(fields=["id"], name="outbox_unsent", condition=Q(sent_at__isnull=True)),
            models.Index(fields=["stream", "id"], name="outbox_unsent_stream", condition=Q(sent_at__isnull=True)),
            models.Index(fields=["commit_seq"], name="outbox_unsent_commit", condition=Q(sent_at__isnull=True)),
            models.Index(fields=["sent_at"], name="outbox_sent", condition=Q(sent_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.pk} {self.stream} {self.event}"

    @property
    def target(self) -> dict[str, str]:
        """The scope keyword of ``publishing.apublish``: location_id, or user_id for a user channel."""
        from realtime.outbox import target_of

        return target_of(self.channel, self.scope_id)
