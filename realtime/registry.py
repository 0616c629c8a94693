"""The channel registry: every channel the gateway serves, declared once.

Each entry says which parameters the channel takes (a pydantic model), which events it carries, which permission a
subscriber needs, what its streams are scoped by, and which event fields its filters read. Adding a channel is adding
an entry to ``CHANNELS``; ``realtime.checks`` validates the registry at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from realtime.streams import stream_name

PUBLIC_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
PublicId = Annotated[str, StringConstraints(pattern=PUBLIC_ID_PATTERN)]
Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
MAX_LOCATIONS_PER_SUBSCRIPTION = 50
MAX_FILTER_VALUES = 64


class Scope(StrEnum):
    """What a channel's streams are partitioned by."""

    LOCATION = "location"
    USER = "user"


def _filter_list(item_type: object) -> object:
    return Annotated[list[item_type], Field(min_length=1, max_length=MAX_FILTER_VALUES)]  # type: ignore[valid-type]


class ChannelParams(BaseModel):
    """Parameters every channel accepts. Unknown names are refused, so a typo never widens a subscription."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    events: _filter_list(str) | None = None  # type: ignore[valid-type]


class LocationParams(ChannelParams):
    location_id: PublicId | None = None
    location_ids: Annotated[list[PublicId], Field(min_length=1, max_length=MAX_LOCATIONS_PER_SUBSCRIPTION)] | None = (
        None
    )

    @model_validator(mode="after")
    def _exactly_one_location_form(self) -> LocationParams:
        if self.location_id is None and self.location_ids is None:
            raise ValueError("Missing required parameter: location_id")
        if self.location_id is not None and self.location_ids is not None:
            raise ValueError("Give either location_id or location_ids, not both")
        return self

    def location_scope(self) -> list[str]:
        return [self.location_id] if self.location_id is not None else list(dict.fromkeys(self.location_ids or []))


OrderType = Literal["dine_in", "takeout", "delivery", "drive_thru"]
OrderStatus = Literal["open", "preparing", "ready", "served", "paid", "closed", "cancelled"]
TableStatus = Literal["available", "seated", "reserved"]
AlertType = Literal["low_stock", "out_of_stock"]


class OrdersParams(LocationParams):
    types: _filter_list(OrderType) | None = None  # type: ignore[valid-type]
    statuses: _filter_list(OrderStatus) | None = None  # type: ignore[valid-type]


class KdsParams(LocationParams):
    station: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class InventoryParams(LocationParams):
    alert_types: _filter_list(AlertType) | None = None  # type: ignore[valid-type]


class TablesParams(LocationParams):
    statuses: _filter_list(TableStatus) | None = None  # type: ignore[valid-type]


class AnalyticsParams(LocationParams):
    metrics: _filter_list(Identifier) | None = None  # type: ignore[valid-type]


class DeliveryParams(LocationParams):
    platforms: _filter_list(Identifier) | None = None  # type: ignore[valid-type]


class VoiceParams(LocationParams):
    lane: Annotated[int, Field(gt=0, le=1000)] | None = None


class NotificationsParams(ChannelParams):
    user_id: PublicId | None = None


@dataclass(frozen=True)
class FieldFilter:
    """A parameter whose values must contain the event's ``data[field]``."""

    param: str
    field: str


@dataclass(frozen=True)
class EventNameFilter:
    """A parameter whose values select events by name: value ``low_stock`` keeps ``inventory.low_stock``."""

    param: str
    event_prefix: str


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    description: str
    events: tuple[str, ...]
    params: type[ChannelParams]
    scope: Scope = Scope.LOCATION
    field_filters: tuple[FieldFilter, ...] = ()
    event_name_filters: tuple[EventNameFilter, ...] = field(default=())

    @property
    def permission(self) -> str:
        return f"{self.name}.read"

    @property
    def filter_fields(self) -> tuple[str, ...]:
        """The event data fields that subscribers' filters read; publishers ship only these to the hub."""
        return tuple(f.field for f in self.field_filters)

    def stream(self, scope_id: str) -> str:
        """The stream an event belongs to: channel plus location (or user)."""
        return stream_name(self.name, scope_id)


CHANNELS: tuple[ChannelSpec, ...] = (
    ChannelSpec(
        name="orders",
        description="Order lifecycle events.",
        events=("order.created", "order.updated", "order.status_changed", "order.paid", "order.closed"),
        params=OrdersParams,
        field_filters=(FieldFilter("types", "type"), FieldFilter("statuses", "status")),
    ),
    ChannelSpec(
        name="kds",
        description="Kitchen display system events.",
        events=("kds.ticket.created", "kds.ticket.bumped", "kds.ticket.late", "kds.ticket.recalled"),
        params=KdsParams,
        field_filters=(FieldFilter("station", "station"),),
    ),
    ChannelSpec(
        name="inventory",
        description="Inventory and stock events.",
        events=("inventory.low_stock", "inventory.out_of_stock", "inventory.received"),
        params=InventoryParams,
        event_name_filters=(EventNameFilter("alert_types", "inventory."),),
    ),
    ChannelSpec(
        name="tables",
        description="Table and seating events.",
        events=("table.seated", "table.cleared", "table.reserved"),
        params=TablesParams,
        field_filters=(FieldFilter("statuses", "status"),),
    ),
    ChannelSpec(
        name="analytics",
        description="Real-time analytics updates.",
        events=("analytics.metric_update", "analytics.hourly_summary"),
        params=AnalyticsParams,
        field_filters=(FieldFilter("metrics", "metric"),),
    ),
    ChannelSpec(
        name="delivery",
        description="Delivery platform events.",
        events=("delivery.order_received", "delivery.driver_assigned", "delivery.picked_up"),
        params=DeliveryParams,
        field_filters=(FieldFilter("platforms", "platform"),),
    ),
    ChannelSpec(
        name="notifications",
        description="User notifications and alerts.",
        events=(
            "notification.alert",
            "notification.message",
            "kds.ticket_unacknowledged",
            "kds.station_dark",
            "kds.station_restored",
        ),
        params=NotificationsParams,
        scope=Scope.USER,
    ),
    ChannelSpec(
        name="voice",
        description="Voice AI session events.",
        events=("voice.session_started", "voice.order_completed"),
        params=VoiceParams,
        field_filters=(FieldFilter("lane", "lane"),),
    ),
)

REGISTRY: dict[str, ChannelSpec] = {spec.name: spec for spec in CHANNELS}


def get_channel(name: str) -> ChannelSpec | None:
    return REGISTRY.get(name)
