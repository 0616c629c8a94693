"""The fixed catalog of permissions a role can grant.

The strings are what the protocol reports as ``required_permission``; they are stored as Django ``Permission``
codenames on the ``accounts.Role`` content type, so the admin's permission widgets and ``has_perm`` work on them.
"""

from __future__ import annotations

from enum import StrEnum


class Perm(StrEnum):
    ORDERS_READ = "orders.read"
    KDS_READ = "kds.read"
    INVENTORY_READ = "inventory.read"
    TABLES_READ = "tables.read"
    ANALYTICS_READ = "analytics.read"
    DELIVERY_READ = "delivery.read"
    NOTIFICATIONS_READ = "notifications.read"
    VOICE_READ = "voice.read"
    EVENTS_PUBLISH = "events.publish"


PERMISSION_DESCRIPTIONS: dict[Perm, str] = {
    Perm.ORDERS_READ: "Subscribe to order events",
    Perm.KDS_READ: "Subscribe to kitchen display events",
    Perm.INVENTORY_READ: "Subscribe to inventory events",
    Perm.TABLES_READ: "Subscribe to table events",
    Perm.ANALYTICS_READ: "Subscribe to analytics events",
    Perm.DELIVERY_READ: "Subscribe to delivery events",
    Perm.NOTIFICATIONS_READ: "Subscribe to one's own notifications",
    Perm.VOICE_READ: "Subscribe to voice-ordering events",
    Perm.EVENTS_PUBLISH: "Publish events",
}

CATALOG: frozenset[str] = frozenset(p.value for p in Perm)
