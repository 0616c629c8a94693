"""What the state of each stateful channel is: one declaration per channel, registered with the gateway.

A snapshot item is exactly the ``data`` of that channel's events (the builders of ``locations.events``), so a
client keeps one map per channel, by the entity's id, fed by the snapshot first and the events after it
(``realtime.snapshots`` says why that is complete).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from locations import events
from locations.models import KitchenTicket, Order, OrderStatus, Table, TicketStatus
from realtime.snapshots import SnapshotSource, register_snapshot

ORDER_DONE_STATUSES = (OrderStatus.CLOSED.value, OrderStatus.CANCELLED.value)
TICKET_DONE_STATUSES = (TicketStatus.BUMPED.value,)


def open_orders(location_id: str, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Orders not closed or cancelled, oldest first."""
    rows = (
        Order.objects.filter(location__public_id=location_id)
        .exclude(status__in=ORDER_DONE_STATUSES)
        .select_related("location")
        .order_by("created_at", "pk")
    )
    return [events.order_data(order) for order in rows]


def open_tickets(location_id: str, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Tickets not bumped (of one station when ``station`` is given), oldest first."""
    rows = KitchenTicket.objects.filter(location__public_id=location_id).exclude(status__in=TICKET_DONE_STATUSES)
    if "station" in filters:
        rows = rows.filter(station=filters["station"])
    return [events.ticket_data(ticket) for ticket in rows.select_related("order").order_by("created_at", "pk")]


def all_tables(location_id: str, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every table with its status, by label."""
    rows = Table.objects.filter(location__public_id=location_id).order_by("label")
    return [events.table_data(table) for table in rows]


SNAPSHOTS: tuple[SnapshotSource, ...] = (
    SnapshotSource(
        "orders",
        id_field=events.ENTITY_ID_FIELD["orders"],
        read_items=open_orders,
        removed_statuses=ORDER_DONE_STATUSES,
    ),
    SnapshotSource(
        "kds",
        id_field=events.ENTITY_ID_FIELD["kds"],
        read_items=open_tickets,
        filters=("station",),
        removed_statuses=TICKET_DONE_STATUSES,
    ),
    SnapshotSource("tables", id_field=events.ENTITY_ID_FIELD["tables"], read_items=all_tables),
)


def register_snapshots() -> None:
    for source in SNAPSHOTS:
        register_snapshot(source)
