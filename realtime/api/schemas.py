"""The REST API's bodies as pydantic models: what the OpenAPI document says each endpoint answers.

The views build plain dicts; these models are their description, and schemathesis (tests/realtime/
test_openapi_fuzz.py) checks every answer against it, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from realtime.errors import ErrorCode
from realtime.registry import Scope


class ErrorBody(BaseModel):
    """Every error, on every endpoint: a code, a sentence, and the code's detail fields (e.g. ``retry_after_ms``)."""

    model_config = ConfigDict(extra="allow")
    code: ErrorCode
    message: str


class Location(BaseModel):
    id: str
    name: str
    organization: str
    time_zone: str
    permissions: list[str] = Field(description="What the user may do there, e.g. orders.read")


class LocationList(BaseModel):
    locations: list[Location]


class Channel(BaseModel):
    name: str
    description: str
    events: list[str]
    scope: Scope
    permission: str = Field(description="The permission a subscribe needs at every location it names")
    params: dict[str, Any] = Field(description="JSON Schema of the subscribe parameters")


class ChannelList(BaseModel):
    channels: list[Channel]


class StoredEvent(BaseModel):
    """One event of a stream's history, in the envelope the WebSocket delivers it in."""

    model_config = ConfigDict(extra="allow")
    channel: str
    event: str
    event_id: str
    stream: str
    epoch: str
    seq: int
    location_id: str | None = None
    user_id: str | None = None
    timestamp: str
    data: dict[str, Any]


class HistoryPage(BaseModel):
    stream: str
    epoch: str
    last_seq: int
    complete: bool = Field(description="False when events after `after` were already dropped from the history")
    events: list[StoredEvent]


class StreamPosition(BaseModel):
    seq: int = Field(description="The last seq of the stream when the snapshot was taken (0: no event yet)")
    epoch: str = Field(description="The epoch that seq belongs to (resume with both)")


class Snapshot(BaseModel):
    """The state of a channel at a location: apply the stream's events after ``position`` and it stays current."""

    channel: str
    location_id: str
    position: StreamPosition
    id_field: str = Field(description="The field of `items` and of event `data` that names the entity")
    removed_statuses: list[str] = Field(description="An event with one of these `data.status` removes the entity")
    items: list[dict[str, Any]] = Field(description="The live entities, each the `data` of the channel's events")


class PublishAccepted(BaseModel):
    event_id: str
    stream: str
    seq: int
    epoch: str


class BatchResult(PublishAccepted):
    duplicate: bool = Field(description="A repeat of an idempotency key: nothing published, the first's position")


class BatchAccepted(BaseModel):
    results: list[BatchResult] = Field(description="One per item, in the order of the request's events")


class Health(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: str = Field(description="ok, or unavailable when a check failed")
    database: str
    channel_layer: str
    outbox: str = Field(
        description="ok, or an error when the oldest unsent event is older than OUTBOX_UNHEALTHY_LAG_SECONDS"
    )
    backlog: int | None = Field(None, description="outbox events committed and not yet published")
    lag_seconds: float | None = Field(None, description="how long the oldest unpublished outbox event has waited")
