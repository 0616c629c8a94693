"""What each restaurant record says on the wire when it changes.

Every shape carries the record's ``version`` (``locations.models.claim_next_version``): it grows with every save, so
a client that holds version n of an entity drops any event of it at version n or lower (docs/protocol.md,
"Snapshots and versions"). The same builders make the items of a snapshot (``locations.snapshots``).
"""

from __future__ import annotations

from typing import Any

from locations.models import KitchenTicket, Order, Table


def order_data(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.public_id,
        "location_id": order.location.public_id,
        "type": order.type,
        "status": order.status,
        "total": str(order.total),
        "table": order.table_label or None,
        "created_at": order.created_at.isoformat().replace("+00:00", "Z") if order.created_at else None,
        "updated_at": order.updated_at.isoformat().replace("+00:00", "Z") if order.updated_at else None,
        "version": order.version,
    }


def table_data(table: Table) -> dict[str, Any]:
    return {
        "table_id": table.label,
        "label": table.label,
        "seats": table.seats,
        "status": table.status,
        "version": table.version,
    }


def ticket_data(ticket: KitchenTicket) -> dict[str, Any]:
    return {
        "ticket_id": ticket.public_id,
        "station": ticket.station,
        "order_id": ticket.order.public_id if ticket.order_id and ticket.order else None,
        "items": ticket.items,
        "status": ticket.status,
        "version": ticket.version,
    }


# The field of each channel's event data that names its entity (snapshots and the stream's version guard use it).
ENTITY_ID_FIELD = {"orders": "order_id", "tables": "table_id", "kds": "ticket_id"}

ORDER_STATUS_EVENTS = {"paid": "order.paid", "closed": "order.closed"}
TABLE_STATUS_EVENTS = {"seated": "table.seated", "available": "table.cleared", "reserved": "table.reserved"}
TICKET_STATUS_EVENTS = {"bumped": "kds.ticket.bumped", "late": "kds.ticket.late", "recalled": "kds.ticket.recalled"}


def order_events(order: Order, *, created: bool, previous_status: str | None) -> list[tuple[str, dict[str, Any]]]:
    """The order events one save produces, in the order subscribers should see them."""
    data = order_data(order)
    if created:
        return [("order.created", data)]
    events = [("order.updated", data)]
    if previous_status is not None and previous_status != order.status:
        events.append(("order.status_changed", {**data, "previous_status": previous_status}))
        if order.status in ORDER_STATUS_EVENTS:
            events.append((ORDER_STATUS_EVENTS[order.status], data))
    return events


def table_events(table: Table, *, created: bool, previous_status: str | None) -> list[tuple[str, dict[str, Any]]]:
    if not created and previous_status == table.status:
        return []
    if created and table.status == "available":
        return []
    event = TABLE_STATUS_EVENTS.get(table.status)
    return [(event, {**table_data(table), "previous_status": previous_status})] if event else []


def ticket_events(
    ticket: KitchenTicket, *, created: bool, previous_status: str | None
) -> list[tuple[str, dict[str, Any]]]:
    if created:
        return [("kds.ticket.created", ticket_data(ticket))]
    if previous_status != ticket.status and ticket.status in TICKET_STATUS_EVENTS:
        return [(TICKET_STATUS_EVENTS[ticket.status], ticket_data(ticket))]
    return []
