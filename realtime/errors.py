"""Error codes, close codes and the protocol errors that carry them.

An error is data: each class knows its code, its default message and, where it ends the connection, its close code.
The wire shape is derived in one place (``ProtocolError.as_frame``)::

    {"type": "error", "id": "req-001", "code": "unauthorized",
     "message": "Not authorized to subscribe to this channel",
     "channel": "orders", "required_permission": "orders.read"}
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any, ClassVar


class ErrorCode(StrEnum):
    CHANNEL_NOT_FOUND = "channel_not_found"
    UNAUTHORIZED = "unauthorized"
    INVALID_PARAMS = "invalid_params"
    SUBSCRIPTION_LIMIT = "subscription_limit"
    SUBSCRIPTION_NOT_FOUND = "subscription_not_found"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TYPE = "unknown_type"
    RATE_LIMITED = "rate_limited"
    UNAUTHENTICATED = "unauthenticated"
    TOKEN_EXPIRED = "token_expired"
    CONNECTION_LIMIT = "connection_limit"
    FORBIDDEN = "forbidden"
    UNAVAILABLE = "unavailable"
    INTERNAL_ERROR = "internal_error"
    DISCONNECTED = "disconnected"
    # Acknowledged KDS tickets (issue 16)
    ACK_NOT_ENABLED = "ack_not_enabled"
    EVENT_NOT_FOUND = "event_not_found"
    EVENT_NOT_IN_SUBSCRIPTION = "event_not_in_subscription"
    # REST only
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    STATELESS_CHANNEL = "stateless_channel"


# Codes only the REST API answers with; a WebSocket never carries them.
REST_ONLY_CODES = frozenset(
    {
        ErrorCode.NOT_FOUND,
        ErrorCode.METHOD_NOT_ALLOWED,
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        ErrorCode.PAYLOAD_TOO_LARGE,
        ErrorCode.IDEMPOTENCY_CONFLICT,
        ErrorCode.STATELESS_CHANNEL,
    }
)


class CloseCode(IntEnum):
    """RFC 6455 codes the gateway uses, and its own in the 4000-4999 application range."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    DISCONNECTED = 4000
    UNAUTHENTICATED = 4401
    FORBIDDEN = 4403
    SLOW_CONSUMER = 4408
    TOO_MANY_CONNECTIONS = 4429


class ProtocolError(Exception):
    """A request the gateway answers with an error frame instead of a result."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR
    default_message: ClassVar[str] = "Internal error"
    close_code: ClassVar[CloseCode | None] = None
    http_status: ClassVar[int] = 400
    # Set by ``protocol.parse_message`` on a frame that failed to parse: the id to echo and the type it claimed.
    request_id: str | int | None = None
    message_type: object = None

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.default_message
        self.details = details
        super().__init__(self.message)

    def as_frame(self, request_id: str | int | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "error"}
        if request_id is not None:
            frame["id"] = request_id
        frame["code"] = self.code.value
        frame["message"] = self.message
        frame.update(self.details)
        return frame

    def as_body(self) -> dict[str, Any]:
        """The REST shape of the same error."""
        return {"code": self.code.value, "message": self.message, **self.details}


class ChannelNotFound(ProtocolError):
    code = ErrorCode.CHANNEL_NOT_FOUND
    http_status = 400

    def __init__(self, channel: str) -> None:
        super().__init__(f"Channel '{channel}' does not exist")


class Unauthorized(ProtocolError):
    code = ErrorCode.UNAUTHORIZED
    default_message = "Not authorized to subscribe to this channel"
    http_status = 403

    def __init__(self, channel: str, permission: str, message: str | None = None) -> None:
        super().__init__(message, channel=channel, required_permission=permission)


class InvalidParams(ProtocolError):
    code = ErrorCode.INVALID_PARAMS

    def __init__(self, message: str, channel: str | None = None, **details: Any) -> None:
        if channel is not None:
            details = {"channel": channel, **details}
        super().__init__(message, **details)


class SubscriptionLimit(ProtocolError):
    code = ErrorCode.SUBSCRIPTION_LIMIT
    default_message = "Maximum subscriptions reached"

    def __init__(self, current: int, limit: int) -> None:
        super().__init__(None, current=current, limit=limit)


class SubscriptionNotFound(ProtocolError):
    code = ErrorCode.SUBSCRIPTION_NOT_FOUND
    http_status = 404

    def __init__(self, subscription_id: str) -> None:
        super().__init__(f"Subscription '{subscription_id}' does not exist", subscription_id=subscription_id)


class InvalidMessage(ProtocolError):
    code = ErrorCode.INVALID_MESSAGE
    default_message = "Invalid message"


class UnknownType(ProtocolError):
    code = ErrorCode.UNKNOWN_TYPE

    def __init__(self, message_type: str) -> None:
        super().__init__(f"Unknown message type '{message_type[:64]}'")


class RateLimited(ProtocolError):
    code = ErrorCode.RATE_LIMITED
    default_message = "Too many messages; slow down"
    http_status = 429

    def __init__(self, retry_after_ms: int) -> None:
        super().__init__(None, retry_after_ms=retry_after_ms)


class Unauthenticated(ProtocolError):
    code = ErrorCode.UNAUTHENTICATED
    default_message = "A valid access token is required"
    close_code = CloseCode.UNAUTHENTICATED
    http_status = 401


class TokenExpired(ProtocolError):
    code = ErrorCode.TOKEN_EXPIRED
    default_message = "The access token has expired; send an authenticate message with a fresh token"
    close_code = CloseCode.UNAUTHENTICATED
    http_status = 401


class ConnectionLimit(ProtocolError):
    code = ErrorCode.CONNECTION_LIMIT
    close_code = CloseCode.TOO_MANY_CONNECTIONS

    def __init__(self, limit: int) -> None:
        super().__init__(f"Maximum concurrent connections per user reached ({limit})", limit=limit)


class Forbidden(ProtocolError):
    code = ErrorCode.FORBIDDEN
    default_message = "Not allowed"
    http_status = 403


class Unavailable(ProtocolError):
    code = ErrorCode.UNAVAILABLE
    default_message = "The event backend is unavailable; try again"
    http_status = 503


class InternalError(ProtocolError):
    code = ErrorCode.INTERNAL_ERROR
    default_message = "Internal error; the request was not processed"
    http_status = 500


class Disconnected(ProtocolError):
    """An operator closed this connection (admin action); the client may reconnect after backoff."""

    code = ErrorCode.DISCONNECTED
    default_message = "Disconnected by an operator"
    close_code = CloseCode.DISCONNECTED


class AckNotEnabled(ProtocolError):
    """An ack on a subscription that did not ask for acknowledgements (``"ack": true``)."""

    code = ErrorCode.ACK_NOT_ENABLED

    def __init__(self, subscription_id: str) -> None:
        super().__init__(
            f"Subscription '{subscription_id}' was not made with \"ack\": true", subscription_id=subscription_id
        )


class EventNotFound(ProtocolError):
    """No event awaiting acknowledgement has this id (never one, or forgotten after KDS_ACK_RETENTION_SECONDS)."""

    code = ErrorCode.EVENT_NOT_FOUND
    http_status = 404

    def __init__(self, event_id: str) -> None:
        super().__init__(f"No event awaiting acknowledgement has id '{event_id}'", event_id=event_id)


class EventNotInSubscription(ProtocolError):
    """The event belongs to a location (or station) this subscription does not receive."""

    code = ErrorCode.EVENT_NOT_IN_SUBSCRIPTION

    def __init__(self, event_id: str, subscription_id: str) -> None:
        super().__init__(
            f"Event '{event_id}' is not delivered to subscription '{subscription_id}' (another location or station)",
            event_id=event_id,
            subscription_id=subscription_id,
        )


class NotFound(ProtocolError):
    code = ErrorCode.NOT_FOUND
    default_message = "Not found"
    http_status = 404


class MethodNotAllowed(ProtocolError):
    code = ErrorCode.METHOD_NOT_ALLOWED
    http_status = 405

    def __init__(self, method: str, allowed: list[str]) -> None:
        super().__init__(f"Method {method[:16]} is not allowed here", allowed=allowed)


class UnsupportedMediaType(ProtocolError):
    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE
    default_message = "Send the body as application/json"
    http_status = 415


class PayloadTooLarge(ProtocolError):
    code = ErrorCode.PAYLOAD_TOO_LARGE
    http_status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body is larger than {limit} bytes", limit=limit)


class IdempotencyConflict(ProtocolError):
    """A repeat of an idempotency key (same stream, within ``PUBLISH_DEDUP_SECONDS``) with a different event."""

    code = ErrorCode.IDEMPOTENCY_CONFLICT
    default_message = "This idempotency key was already used for a different event"
    http_status = 409

    def __init__(self, idempotency_key: str, stream: str, **details: Any) -> None:
        super().__init__(None, idempotency_key=idempotency_key, stream=stream, **details)


class StatelessChannel(ProtocolError):
    """A snapshot of a channel that carries events but no state (analytics, delivery, ...): subscribe instead."""

    code = ErrorCode.STATELESS_CHANNEL
    http_status = 400

    def __init__(self, channel: str, snapshot_channels: tuple[str, ...]) -> None:
        super().__init__(
            f"Channel '{channel}' has no state to snapshot (snapshots exist for: {', '.join(snapshot_channels)}); "
            "subscribe to it instead",
            channel=channel,
        )


def error_classes() -> list[type[ProtocolError]]:
    """Every concrete protocol error, one per code, for documents generated from this module."""
    found: list[type[ProtocolError]] = []
    pending = list(ProtocolError.__subclasses__())
    while pending:
        cls = pending.pop(0)
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found
