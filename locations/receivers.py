"""Model saves -> events, published after the transaction commits (nothing is sent for a rollback)."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from locations import events
from locations.models import KitchenTicket, Order, Table
from realtime.publishing import EntityVersion, publish_on_commit

CHANNEL_OF: dict[type, str] = {Order: "orders", Table: "tables", KitchenTicket: "kds"}
EVENTS_OF: dict[type, Any] = {
    Order: events.order_events,
    Table: events.table_events,
    KitchenTicket: events.ticket_events,
}


@receiver(pre_save, sender=Order)
@receiver(pre_save, sender=Table)
@receiver(pre_save, sender=KitchenTicket)
def remember_stored_status(sender: type, instance: Any, using: str, **kwargs: Any) -> None:
    """Read the status the database holds before this save (an in-memory copy can be stale)."""
    stored_rows = sender.objects.using(using).filter(pk=instance.pk).values_list("status", flat=True)  # type: ignore[attr-defined]
    stored = stored_rows.first() if instance.pk else None
    instance.__dict__["_stored_status"] = stored


@receiver(post_save, sender=Order)
@receiver(post_save, sender=Table)
@receiver(post_save, sender=KitchenTicket)
def publish_record_change(sender: type, instance: Any, created: bool, using: str, **kwargs: Any) -> None:
    previous = None if created else instance.__dict__.pop("_stored_status", None)
    location_id = instance.location.public_id
    channel = CHANNEL_OF[sender]
    for event, data in EVENTS_OF[sender](instance, created=created, previous_status=previous):
        entity = EntityVersion(data[events.ENTITY_ID_FIELD[channel]], data["version"])  # an older save never wins
        publish_on_commit(
            channel, event, location_id=location_id, data=data, using=using, source="model", entity=entity
        )
