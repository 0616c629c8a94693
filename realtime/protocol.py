"""The wire protocol, without I/O: text in, typed command out; command and state in, decisions and frames out.

Nothing here awaits, touches the ORM or the channel layer, so every rule is tested in microseconds and fuzzed
without a server. ``realtime.consumer`` is the thin I/O shell around it.

A subscribe, and the answer the seed document fixes::

    {"type": "subscribe", "id": "req-001", "channel": "orders", "params": {"location_id": "loc-xyz789"}}
    {"type": "response", "id": "req-001", "success": true, "subscription_id": "sub-abc123",
     "channel": "orders", "params": {"location_id": "loc-xyz789"}}
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)

from realtime.delivery import Cursor
from realtime.errors import (
    ChannelNotFound,
    InvalidMessage,
    InvalidParams,
    ProtocolError,
    SubscriptionLimit,
    SubscriptionNotFound,
    UnknownType,
)
from realtime.jsondecode import decode_json
from realtime.registry import ChannelParams, ChannelSpec, LocationParams, NotificationsParams, Scope, get_channel
from realtime.streams import group_for_stream


def is_request_id(value: Any) -> bool:
    """Request ids are strings of 1 to 128 characters or integers, echoed back as given."""
    return (isinstance(value, str) and 0 < len(value) <= 128) or (
        isinstance(value, int) and not isinstance(value, bool)
    )


def _check_request_id(value: Any) -> str | int:
    if is_request_id(value):
        return value  # type: ignore[no-any-return]
    raise ValueError("Invalid field id: must be a string of 1 to 128 characters or an integer")


def _seq_as_position(value: Any) -> Any:
    """A bare integer resume position means ``{"seq": n}`` (no epoch check)."""
    return {"seq": value} if isinstance(value, int) and not isinstance(value, bool) else value


RequestId = Annotated[
    Any,
    AfterValidator(_check_request_id),
    WithJsonSchema({"anyOf": [{"type": "string", "minLength": 1, "maxLength": 128}, {"type": "integer"}]}),
]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=128)]


def now_iso() -> str:
    """UTC now as ISO 8601 with a ``Z``: every time on the wire but ``expires_at`` (the JWT's epoch seconds)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode(frame: Mapping[str, Any]) -> str:
    """Encode a frame compactly; all frames leave through here or through a pre-encoded event tail."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_urlsafe(9)}"


# --- Client -> server messages ------------------------------------------------------------------------------


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    id: RequestId | None = None


class ResumePosition(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    seq: Annotated[int, Field(ge=0)]
    epoch: Annotated[str, StringConstraints(max_length=64)] | None = None


class Subscribe(Message):
    type: Literal["subscribe"]
    channel: ShortText
    params: dict[str, Any] = Field(default_factory=dict)
    resume: (
        Annotated[dict[ShortText, Annotated[ResumePosition, BeforeValidator(_seq_as_position)]], Field(max_length=50)]
        | None
    ) = None


class Unsubscribe(Message):
    type: Literal["unsubscribe"]
    subscription_id: ShortText


class UnsubscribeAll(Message):
    type: Literal["unsubscribe_all"]


class ListSubscriptions(Message):
    type: Literal["list_subscriptions"]


class Ping(Message):
    type: Literal["ping"]


class PresenceJoin(Message):
    type: Literal["presence_join"]
    channel: ShortText
    params: dict[str, Any] = Field(default_factory=dict)
    user_info: dict[str, Any] = Field(default_factory=dict)


class PresenceLeave(Message):
    type: Literal["presence_leave"]
    channel: ShortText
    params: dict[str, Any] = Field(default_factory=dict)


class PresenceList(Message):
    type: Literal["presence_list"]
    channel: ShortText
    params: dict[str, Any] = Field(default_factory=dict)


class Authenticate(Message):
    type: Literal["authenticate"]
    token: Annotated[str, StringConstraints(min_length=1, max_length=8192)]


Command = (
    Subscribe
    | Unsubscribe
    | UnsubscribeAll
    | ListSubscriptions
    | Ping
    | PresenceJoin
    | PresenceLeave
    | PresenceList
    | Authenticate
)
MESSAGE_TYPES: dict[str, type[Message]] = {
    model.model_fields["type"].annotation.__args__[0]: model  # type: ignore[union-attr]
    for model in (
        Subscribe,
        Unsubscribe,
        UnsubscribeAll,
        ListSubscriptions,
        Ping,
        PresenceJoin,
        PresenceLeave,
        PresenceList,
        Authenticate,
    )
}


def _describe_location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "message"


def describe_validation_error(error: ValidationError, *, what: str) -> str:
    """Turn pydantic's first error into one sentence naming the field and what is wrong with it."""
    first = error.errors(include_url=False)[0]
    kind, loc, msg = first["type"], first["loc"], first["msg"]
    name = _describe_location(loc)
    if kind == "missing":
        return f"Missing required {what}: {name}"
    if kind == "extra_forbidden":
        return f"Unknown {what}: {name}"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind in {"literal_error", "enum"}:
        return f"Invalid value for {what} {name}: {msg[0].lower()}{msg[1:]}"
    return f"Invalid {what} {name}: {msg[0].lower()}{msg[1:]}"


def request_id_of(raw: object) -> str | int | None:
    """The request id to echo, when the message carried a usable one (also for messages that fail validation)."""
    if isinstance(raw, dict) and is_request_id(raw.get("id")):
        return raw["id"]  # type: ignore[no-any-return]
    return None


def parse_message(text: str) -> Command:
    """Parse one client frame into a command, or raise the error that answers it.

    The error carries the frame's request id and claimed type when it had them, so the reply echoes the id and the
    metrics count the command even when its fields are invalid.
    """
    raw = decode_json(text)
    try:
        return parse_object(raw)
    except ProtocolError as exc:
        exc.request_id = request_id_of(raw)
        exc.message_type = raw.get("type") if isinstance(raw, dict) else None
        raise


def parse_object(raw: object) -> Command:
    if not isinstance(raw, dict):
        raise InvalidMessage("Message must be a JSON object")
    message_type = raw.get("type")
    if message_type is None:
        raise InvalidMessage("Missing required field: type")
    if not isinstance(message_type, str):
        raise InvalidMessage("Field type must be a string")
    model = MESSAGE_TYPES.get(message_type)
    if model is None:
        raise UnknownType(message_type)
    try:
        return model.model_validate(raw)  # type: ignore[return-value]
    except ValidationError as exc:
        raise InvalidMessage(describe_validation_error(exc, what="field")) from None


# --- Subscriptions -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventMatcher:
    """A subscription's filters, precomputed as sets: delivery asks it once per event per subscription."""

    events: frozenset[str] | None = None
    fields: tuple[tuple[str, frozenset[Any]], ...] = ()

    def matches(self, event: str, fields: Mapping[str, Any]) -> bool:
        if self.events is not None and event not in self.events:
            return False
        for name, allowed in self.fields:  # noqa: SIM110 (a plain loop beats all() on the hot path)
            if fields.get(name) not in allowed:
                return False
        return True


@dataclass(frozen=True)
class SubscriptionRequest:
    """A validated subscribe: what to authorize, which streams to join, how to filter, what to echo."""

    spec: ChannelSpec
    params: dict[str, Any]
    scope_ids: tuple[str, ...]
    matcher: EventMatcher

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(self.spec.stream(scope_id) for scope_id in self.scope_ids)


def _as_set(value: Any) -> frozenset[Any]:
    return frozenset(value) if isinstance(value, list) else frozenset([value])


def build_matcher(spec: ChannelSpec, params: ChannelParams) -> EventMatcher:
    events: set[str] | None = set(params.events) if params.events is not None else None
    for name_filter in spec.event_name_filters:
        values = getattr(params, name_filter.param)
        if values is not None:
            selected = {f"{name_filter.event_prefix}{value}" for value in values}
            events = selected if events is None else events & selected
    fields = tuple(
        (f.field, _as_set(getattr(params, f.param))) for f in spec.field_filters if getattr(params, f.param) is not None
    )
    return EventMatcher(frozenset(events) if events is not None else None, fields)


def lookup_channel(name: str) -> ChannelSpec:
    spec = get_channel(name)
    if spec is None:
        raise ChannelNotFound(name)
    return spec


def validate_params(spec: ChannelSpec, params: dict[str, Any]) -> Any:
    try:
        return spec.params.model_validate(params)
    except ValidationError as exc:
        raise InvalidParams(describe_validation_error(exc, what="parameter"), channel=spec.name) from None


def _normalized(params: BaseModel) -> dict[str, Any]:
    dumped = params.model_dump(exclude_none=True)
    return {k: list(dict.fromkeys(v)) if isinstance(v, list) else v for k, v in dumped.items()}


def prepare_subscription(channel: str, params: dict[str, Any], *, user_id: str) -> SubscriptionRequest:
    """Validate a subscribe's channel and parameters; authorization is the caller's (it needs the database)."""
    spec = lookup_channel(channel)
    model = validate_params(spec, params)
    if model.events is not None:
        unknown = [name for name in model.events if name not in spec.events]
        if unknown:
            raise InvalidParams(
                f"Invalid value for parameter events: '{unknown[0][:64]}' is not an event of channel "
                f"'{spec.name}' (expected one of: {', '.join(spec.events)})",
                channel=spec.name,
            )
    normalized = _normalized(model)
    if spec.scope is Scope.USER:
        assert isinstance(model, NotificationsParams)
        scope_ids: tuple[str, ...] = (model.user_id or user_id,)
        normalized["user_id"] = scope_ids[0]
    else:
        assert isinstance(model, LocationParams)
        scope_ids = tuple(model.location_scope())
    return SubscriptionRequest(spec, normalized, scope_ids, build_matcher(spec, model))


def prepare_presence_target(channel: str, params: dict[str, Any]) -> tuple[ChannelSpec, str]:
    """Validate a presence message's channel and ``{location_id}``; presence is per channel and location."""
    spec = lookup_channel(channel)
    if spec.scope is not Scope.LOCATION:
        raise InvalidParams(f"Channel '{spec.name}' has no presence: it is not location-scoped", channel=spec.name)
    unknown = sorted(set(params) - {"location_id"})
    if unknown:
        raise InvalidParams(f"Unknown parameter: {unknown[0][:64]}", channel=spec.name)
    location_id = params.get("location_id")
    if location_id is None:
        raise InvalidParams("Missing required parameter: location_id", channel=spec.name)
    try:
        TypeAdapter(LocationParams).validate_python({"location_id": location_id})
    except ValidationError as exc:
        raise InvalidParams(describe_validation_error(exc, what="parameter"), channel=spec.name) from None
    return spec, location_id


def check_user_info(user_info: dict[str, Any], *, max_bytes: int, max_depth: int, channel: str) -> dict[str, Any]:
    """Bound the client-supplied presence ``user_info`` in size and depth."""

    def depth(value: Any, level: int = 1) -> int:
        if level > max_depth + 1:
            return level
        if isinstance(value, dict):
            return max([depth(v, level + 1) for v in value.values()], default=level)
        if isinstance(value, list):
            return max([depth(v, level + 1) for v in value], default=level)
        return level - 1

    if depth(user_info) > max_depth:
        raise InvalidParams(f"user_info is nested deeper than {max_depth} levels", channel=channel)
    if len(encode(user_info).encode()) > max_bytes:
        raise InvalidParams(f"user_info is larger than {max_bytes} bytes", channel=channel)
    return user_info


@dataclass(slots=True, eq=False)
class Subscription:
    """One live subscription of one connection."""

    id: str
    spec: ChannelSpec
    params: dict[str, Any]
    streams: tuple[str, ...]
    groups: tuple[str, ...]
    matcher: EventMatcher
    created_at: str
    frame_prefix: str
    # Where each stream stands and what is held back, so replay and live feed meet without gap or duplicate.
    cursor: Cursor = field(default_factory=Cursor)
    # Replayed frames waiting for the subscribe response to go first.
    backlog: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "channel": self.spec.name, "params": self.params, "created_at": self.created_at}

    def event_frame(self, stream: str, seq: int, epoch: str, record: Mapping[str, Any]) -> str:
        """This subscription's frame of a stored event (a replay; live events arrive with their tail encoded)."""
        return self.frame_prefix + envelope_tail(self.spec.name, stream, seq, epoch, record)


def event_frame_prefix(subscription_id: str) -> str:
    """The start of every event frame of one subscription; the rest is the event's shared, pre-encoded tail."""
    return '{"type":"event","subscription_id":' + json.dumps(subscription_id) + ","


@dataclass(slots=True)
class ConnectionState:
    """The subscriptions of one connection, and which layer groups they need (each joined once)."""

    max_subscriptions: int
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    by_group: dict[str, list[Subscription]] = field(default_factory=dict)

    def check_room(self) -> None:
        if len(self.subscriptions) >= self.max_subscriptions:
            raise SubscriptionLimit(current=len(self.subscriptions), limit=self.max_subscriptions)

    def add(self, request: SubscriptionRequest) -> tuple[Subscription, list[str]]:
        """Record a subscription; return it and the groups this connection must newly join."""
        self.check_room()
        subscription_id = new_id("sub")
        streams = request.streams
        subscription = Subscription(
            id=subscription_id,
            spec=request.spec,
            params=request.params,
            streams=streams,
            groups=tuple(group_for_stream(s) for s in streams),
            matcher=request.matcher,
            created_at=now_iso(),
            frame_prefix=event_frame_prefix(subscription_id),
        )
        self.subscriptions[subscription_id] = subscription
        to_join = []
        for group in subscription.groups:
            members = self.by_group.setdefault(group, [])
            if not members:
                to_join.append(group)
            members.append(subscription)
        return subscription, to_join

    def remove(self, subscription_id: str) -> tuple[Subscription, list[str]]:
        """Forget a subscription; return it and the groups no other subscription of this connection needs."""
        subscription = self.subscriptions.pop(subscription_id, None)
        if subscription is None:
            raise SubscriptionNotFound(subscription_id)
        to_leave = []
        for group in subscription.groups:
            members = self.by_group.get(group, [])
            if subscription in members:
                members.remove(subscription)
            if not members:
                self.by_group.pop(group, None)
                to_leave.append(group)
        return subscription, to_leave

    def remove_all(self) -> tuple[list[Subscription], list[str]]:
        removed = list(self.subscriptions.values())
        groups = list(self.by_group)
        self.subscriptions.clear()
        self.by_group.clear()
        return removed, groups

    def listing(self) -> list[dict[str, Any]]:
        return [s.describe() for s in self.subscriptions.values()]


# --- Server -> client frames ---------------------------------------------------------------------------------


def response(request_id: str | int | None, **fields: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "response"}
    if request_id is not None:
        frame["id"] = request_id
    frame["success"] = True
    frame.update(fields)
    return frame


def with_id(frame_type: str, request_id: str | int | None, **fields: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": frame_type}
    if request_id is not None:
        frame["id"] = request_id
    frame.update(fields)
    return frame


def envelope_tail(spec_name: str, stream: str, seq: int, epoch: str, record: Mapping[str, Any]) -> str:
    """Encode an event once; each recipient's frame is its own prefix plus this tail."""
    envelope: dict[str, Any] = {
        "channel": spec_name,
        "event": record["event"],
        "event_id": record["event_id"],
        "stream": stream,
        "epoch": epoch,
        "seq": seq,
    }
    for key in ("location_id", "user_id"):
        if key in record:
            envelope[key] = record[key]
    envelope["timestamp"] = record["timestamp"]
    envelope["data"] = record["data"]
    return encode(envelope)[1:]


def connected(user_id: str, connection_id: str, limits: dict[str, int | float]) -> dict[str, Any]:
    """The first frame of an authenticated connection."""
    return {
        "type": "connected",
        "user_id": user_id,
        "connection_id": connection_id,
        "server_time": now_iso(),
        "limits": limits,
    }


def subscribed(
    request_id: str | int | None, subscription: Subscription, resumed: dict[str, bool] | None
) -> dict[str, Any]:
    """The subscribe response; one that asked to resume also says what was covered and where streams stand."""
    extra: dict[str, Any] = {}
    if resumed is not None:
        extra["resumed"] = resumed
        extra["positions"] = subscription.cursor.wire_positions()
    return response(
        request_id,
        subscription_id=subscription.id,
        channel=subscription.spec.name,
        params=subscription.params,
        **extra,
    )


def subscription_revoked(subscription: Subscription, reason: str) -> dict[str, Any]:
    """Sent when the server ends a subscription the user may no longer read."""
    return {
        "type": "subscription_revoked",
        "subscription_id": subscription.id,
        "channel": subscription.spec.name,
        "reason": reason,
    }
