"""The frames the gateway sends, declared as pydantic models for the AsyncAPI document (``realtime.asyncapi``).

The wire is built elsewhere (``protocol.response``/``with_id``/``connected``/``subscribed``/``subscription_revoked``/
``envelope_tail``, ``ProtocolError.as_frame``, ``presence.presence_frame``): these models only describe it, and
``tests/realtime/test_asyncapi.py`` checks real frames from the live consumer against them, so a change on the wire
that is not declared here fails a test. Event and error models are derived from the channel registry and from
``realtime.errors``, one per channel and per code.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from realtime.errors import REST_ONLY_CODES, ErrorCode
from realtime.registry import CHANNELS, ChannelSpec, Scope

RequestIdSchema: dict[str, Any] = {
    "anyOf": [{"type": "string", "minLength": 1, "maxLength": 128}, {"type": "integer"}],
    "description": "The request's `id`, echoed as given.",
}


class Frame(BaseModel):
    """Every server frame is a JSON object with a ``type``; fields beyond the declared ones are never sent."""

    model_config = ConfigDict(extra="forbid")


class Reply(Frame):
    id: str | int | None = Field(default=None, json_schema_extra=RequestIdSchema)  # type: ignore[arg-type]


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_subscriptions: int
    max_message_bytes: int
    rate_limit_per_second: float
    rate_limit_burst: int
    max_connections_per_user: int


class Connected(Frame):
    """The first frame of an authenticated connection."""

    type: Literal["connected"]
    user_id: str
    connection_id: str
    server_time: str = Field(description="ISO 8601, UTC, milliseconds, `Z`.")
    limits: Limits


class StreamPosition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seq: int = Field(ge=0)
    epoch: str | None = Field(default=None, description="Absent when the stream had no history yet.")


class SubscribeResponse(Reply):
    type: Literal["response"]
    success: Literal[True]
    subscription_id: str
    channel: str
    params: dict[str, Any] = Field(description="The normalized parameters (nulls dropped, duplicates removed).")
    resumed: dict[str, bool] | None = Field(
        default=None, description="Per stream asked to resume: whether the history covered the gap."
    )
    positions: dict[str, StreamPosition] | None = Field(
        default=None, description="Where each stream of the subscription stands (sent when `resume` was given)."
    )


class UnsubscribeResponse(Reply):
    type: Literal["response"]
    success: Literal[True]
    subscription_id: str
    message: Literal["Unsubscribed successfully"]


class AckResponse(Reply):
    """The answer to ``ack``; a duplicate ack is a success too, with ``duplicate`` true and the first ack's time."""

    type: Literal["response"]
    success: Literal[True]
    subscription_id: str
    event_id: str
    acked_at: str = Field(description="When the event was first acknowledged (by any screen): ISO 8601, UTC.")
    duplicate: bool = Field(description="True when the event had been acknowledged before.")


class UnsubscribeAllResponse(Reply):
    type: Literal["response"]
    success: Literal[True]
    unsubscribed: int = Field(ge=0, description="How many subscriptions were dropped.")


class PresenceResponse(Reply):
    """The answer to ``presence_join`` and ``presence_leave``."""

    type: Literal["response"]
    success: Literal[True]
    channel: str
    params: dict[str, Any]


class AuthenticateResponse(Reply):
    type: Literal["response"]
    success: Literal[True]
    user_id: str
    expires_at: float = Field(description="The new token's `exp`: seconds since the epoch (not ISO 8601).")


class SubscriptionInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    channel: str
    params: dict[str, Any]
    created_at: str


class SubscriptionsList(Reply):
    type: Literal["subscriptions_list"]
    subscriptions: list[SubscriptionInfo] = Field(description="In creation order.")


class Pong(Reply):
    type: Literal["pong"]
    server_time: str


class PresenceMember(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(description="Set by the server from the token, beside (not inside) `user_info`.")
    user_info: dict[str, Any]
    joined_at: str


class PresenceListResponse(Reply):
    type: Literal["presence_list_response"]
    channel: str
    params: dict[str, Any]
    users: list[PresenceMember] = Field(description="Each user once, with their earliest `joined_at`.")


class Presence(Frame):
    """Sent to every connection subscribed or present at the channel and location."""

    type: Literal["presence"]
    event: Literal["user_joined", "user_left"]
    channel: str
    location_id: str
    data: PresenceMember


class SubscriptionRevoked(Frame):
    type: Literal["subscription_revoked"]
    subscription_id: str
    channel: str
    reason: Literal["permission_removed"]


def _title(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace(".", "_").split("_"))


def event_model(spec: ChannelSpec) -> type[Frame]:
    """The event frame of one channel: the envelope of ``protocol.envelope_tail`` around the publisher's data."""
    fields: dict[str, Any] = {
        "type": (Literal["event"], ...),
        "subscription_id": (str, ...),
        "channel": (Literal[spec.name], ...),
        "event": (Literal[spec.events], ...),
        "event_id": (str, ...),
        "stream": (str, Field(description=f"`{spec.name}:<{'user' if spec.scope is Scope.USER else 'location'} id>`")),
        "epoch": (str, ...),
        "seq": (int, Field(ge=1, description="Numbers the stream's events without gaps.")),
        ("user_id" if spec.scope is Scope.USER else "location_id"): (str, ...),
        "timestamp": (str, ...),
        "data": (dict[str, Any], Field(description="The publisher's payload.")),
    }
    if spec.name == "kds":  # issue 16: an unacknowledged ticket sent again to ack subscriptions
        fields["redelivery"] = (
            int | None,
            Field(default=None, ge=1, description="Only on ack subscriptions: the n-th resend of an unacked event."),
        )
    doc = f"An event of `{spec.name}`: {spec.description}"
    return create_model(f"{_title(spec.name)}Event", __base__=Frame, __doc__=doc, **fields)  # type: ignore[no-any-return]


# The detail fields each error code carries beside type/id/code/message (``ProtocolError.details``).
ERROR_DETAILS: dict[ErrorCode, dict[str, Any]] = {
    ErrorCode.UNAUTHORIZED: {
        "channel": (str, ...),
        "required_permission": (str, Field(description="The permission missing, e.g. `orders.read`.")),
    },
    ErrorCode.INVALID_PARAMS: {
        "channel": (str | None, None),
        "errors": (
            list[dict[str, Any]] | None,
            Field(None, description="REST batch publish only: each bad item's `index` and `message`."),
        ),
    },
    ErrorCode.SUBSCRIPTION_LIMIT: {
        "current": (int, Field(description="Subscriptions this connection holds.")),
        "limit": (int, Field(description="MAX_SUBSCRIPTIONS.")),
    },
    ErrorCode.SUBSCRIPTION_NOT_FOUND: {"subscription_id": (str, ...)},
    ErrorCode.ACK_NOT_ENABLED: {"subscription_id": (str, ...)},
    ErrorCode.EVENT_NOT_FOUND: {"event_id": (str, ...)},
    ErrorCode.EVENT_NOT_IN_SUBSCRIPTION: {"event_id": (str, ...), "subscription_id": (str, ...)},
    ErrorCode.RATE_LIMITED: {"retry_after_ms": (int, Field(ge=1, description="Wait this long before sending."))},
    ErrorCode.CONNECTION_LIMIT: {"limit": (int, Field(description="MAX_CONNECTIONS_PER_USER."))},
    ErrorCode.METHOD_NOT_ALLOWED: {"allowed": (list[str], Field(description="The methods the route accepts."))},
    ErrorCode.PAYLOAD_TOO_LARGE: {"limit": (int, Field(description="The largest accepted body, in bytes."))},
    ErrorCode.IDEMPOTENCY_CONFLICT: {
        "idempotency_key": (str, ...),
        "stream": (str, ...),
        "index": (int | None, Field(None, description="Batch publish: the item whose key clashed.")),
    },
    ErrorCode.STATELESS_CHANNEL: {"channel": (str, Field(description="The channel that has no snapshot."))},
}


def error_model(code: ErrorCode) -> type[Frame]:
    rest_only = (
        " (REST only: the body of the HTTP response, without `type` and `id`)." if code in REST_ONLY_CODES else "."
    )
    fields: dict[str, Any] = {
        "type": (Literal["error"], ...),
        "code": (Literal[code.value], ...),
        "message": (str, ...),
        **ERROR_DETAILS.get(code, {}),
    }
    doc = f"Error `{code.value}`{rest_only}"
    return create_model(f"{_title(code.value)}Error", __base__=Reply, __doc__=doc, **fields)  # type: ignore[no-any-return]


EVENT_MODELS: dict[str, type[Frame]] = {spec.name: event_model(spec) for spec in CHANNELS}
ERROR_MODELS: dict[ErrorCode, type[Frame]] = {code: error_model(code) for code in ErrorCode}

# What answers each client message type when it succeeds.
REPLIES: dict[str, tuple[type[Frame], ...]] = {
    "subscribe": (SubscribeResponse,),
    "unsubscribe": (UnsubscribeResponse,),
    "unsubscribe_all": (UnsubscribeAllResponse,),
    "list_subscriptions": (SubscriptionsList,),
    "ping": (Pong,),
    "presence_join": (PresenceResponse,),
    "presence_leave": (PresenceResponse,),
    "presence_list": (PresenceListResponse,),
    "authenticate": (AuthenticateResponse,),
    "ack": (AckResponse,),
}
# Frames the server sends on its own, not as the answer to a request.
UNSOLICITED: tuple[type[Frame], ...] = (Connected, Presence, SubscriptionRevoked)
