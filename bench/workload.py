"""What the simulated restaurants subscribe to and publish: the screens' filter mix and the event streams.

A location's screens subscribe to ``orders`` at that location; two in five take it unfiltered (manager dashboards),
the others filter the way the seed's "best practices" advise: by status (expo), by order type (front of house), by
event name (kitchen rail). Fan-out events match every one of these filters, so fan-out deliveries = N per event;
chain events draw event name, status and type at random (seeded), so some filters reject some events.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from bench.loadgen import ConnectionPlan, Endpoint, PlannedEvent, SubscriptionSpec

ORDER_EVENTS = ("order.created", "order.updated", "order.status_changed", "order.paid", "order.closed")
ORDER_STATUSES = ("open", "preparing", "ready", "served", "paid", "closed", "cancelled")
ORDER_TYPES = ("dine_in", "takeout", "delivery", "drive_thru")


def screen_subscription(location_id: str, screen: int) -> SubscriptionSpec:
    """The subscription of screen number ``screen`` at a location (a repeating mix of five)."""
    params: dict[str, object] = {"location_id": location_id}
    kind = screen % 5
    if kind == 2:
        params["statuses"] = ["open", "preparing"]
    elif kind == 3:
        params["types"] = ["dine_in", "takeout"]
    elif kind == 4:
        params["events"] = ["order.created", "order.status_changed"]
    return SubscriptionSpec("orders", params)


def screen_plans(
    endpoints: Sequence[Endpoint], tokens: dict[str, str], locations: Sequence[str], screens_per_location: int
) -> list[ConnectionPlan]:
    """One plan per screen, ``screens_per_location`` at each location, spread round-robin over ``endpoints``."""
    plans: list[ConnectionPlan] = []
    for location_id in locations:
        for screen in range(screens_per_location):
            endpoint = endpoints[len(plans) % len(endpoints)]
            subscription = screen_subscription(location_id, screen)
            plans.append(ConnectionPlan(endpoint, tokens[location_id], (subscription,)))
    return plans


def fanout_events(location_id: str, count: int) -> list[PlannedEvent]:
    """``count`` new dine-in orders at one location: every screen's filter accepts them."""
    return [
        PlannedEvent(
            i,
            "orders",
            "order.created",
            location_id,
            {"order_id": f"ord-{i:06d}", "status": "open", "type": "dine_in", "total": "42.50"},
        )
        for i in range(count)
    ]


def chain_events(locations: Sequence[str], count: int, seed: int = 6) -> list[PlannedEvent]:
    """``count`` order events spread evenly over ``locations`` with random (seeded) name, status and type."""
    chooser = random.Random(seed)
    return [
        PlannedEvent(
            i,
            "orders",
            chooser.choice(ORDER_EVENTS),
            locations[i % len(locations)],
            {
                "order_id": f"ord-{i:06d}",
                "status": chooser.choice(ORDER_STATUSES),
                "type": chooser.choice(ORDER_TYPES),
                "total": "42.50",
            },
        )
        for i in range(count)
    ]
