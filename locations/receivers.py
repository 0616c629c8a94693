"""Model saves -> events, published after the transaction commits (nothing is sent for a rollback)."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_init, post_save
from django.dispatch import receiver

from locations import events
from locations.models import KitchenTicket, Order, Table
from realtime.publishing import publish_on_commit

CHANNEL_OF: dict[type, str] = {Order: "orders", Table: "tables", KitchenTicket: "kds"}
EVENTS_OF: dict[type, Any] = {
    Order: events.order_events,
    Table: events.table_events,
    KitchenTicket: events.ticket_events,
}


@receiver(post_init, sender=Order)
@receiver(post_init, sender=Table)
@receiver(post_init, sender=KitchenTicket)
def remember_loaded_status(sender: type, instance: Any, **kwargs: Any) -> None:
    """Keep the status as loaded, so a save can tell whether it changed."""
    instance._loaded_status = instance.__dict__.get("status")


@receiver(post_save, sender=Order)
@receiver(post_save, sender=Table)
@receiver(post_save, sender=KitchenTicket)
def publish_record_change(sender: type, instance: Any, created: bool, using: str, **kwargs: Any) -> None:
    previous = None if created else getattr(instance, "_loaded_status", None)
    location_id = instance.location.public_id
    for event, data in EVENTS_OF[sender](instance, created=created, previous_status=previous):
        publish_on_commit(CHANNEL_OF[sender], event, location_id=location_id, data=data, using=using)
    instance._loaded_status = instance.status
