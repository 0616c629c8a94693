"""The publish API: the one code path every event takes, whoever publishes it.

Python code calls ``publish`` (sync) or ``apublish`` (async); REST ``POST /v1/events`` and the model signals call
them too. Publishing validates the event against the registry, appends it to its stream's history (which assigns
``seq``), encodes the envelope once, and hands it to the channel layer group of the stream. Each gateway process's
hub (``realtime.hub``) receives it once and fans it out to its local subscribers, who add only their
``subscription_id`` in front of the shared, pre-encoded tail.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

from realtime import metrics
from realtime.errors import ChannelNotFound, InvalidParams, Unavailable
from realtime.protocol import envelope_tail, new_id, now_iso
from realtime.registry import PUBLIC_ID_PATTERN, ChannelSpec, Scope, get_channel
from realtime.stores import redis_client as shared_redis
from realtime.stores.history import get_history, record_json
from realtime.streams import CONTROL_GROUP, group_for_stream

logger = logging.getLogger(__name__)
T = TypeVar("T")
MAX_EVENT_DATA_BYTES = 64 * 1024
_PUBLIC_ID = re.compile(PUBLIC_ID_PATTERN)


@dataclass(frozen=True)
class PublishedEvent:
    event_id: str
    stream: str
    seq: int
    epoch: str


def resolve_target(
    channel: str, event: str, *, location_id: str | None, user_id: str | None
) -> tuple[ChannelSpec, str]:
    """Check the channel, the event name and the scope id; return the spec and the scope id."""
    spec = get_channel(channel) if isinstance(channel, str) else None
    if spec is None:
        raise ChannelNotFound(str(channel)[:64])
    if event not in spec.events:
        raise InvalidParams(
            f"Invalid event '{str(event)[:64]}' for channel '{spec.name}' (expected one of: {', '.join(spec.events)})",
            channel=spec.name,
        )
    wanted, other = ("user_id", "location_id") if spec.scope is Scope.USER else ("location_id", "user_id")
    scope_id = user_id if spec.scope is Scope.USER else location_id
    if (user_id if other == "user_id" else location_id) is not None:
        raise InvalidParams(f"Channel '{spec.name}' events take {wanted}, not {other}", channel=spec.name)
    if scope_id is None:
        raise InvalidParams(f"Missing required parameter: {wanted}", channel=spec.name)
    if not isinstance(scope_id, str) or not _PUBLIC_ID.fullmatch(scope_id):
        raise InvalidParams(f"Invalid parameter {wanted}: not a public id", channel=spec.name)
    return spec, scope_id


def filter_value(value: Any) -> Any:
    """Keep a filter field only when it is a scalar a filter can compare (a list or dict never matches)."""
    return value if isinstance(value, str | int | float | bool) else None


def build_event(spec: ChannelSpec, event: str, scope_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The stored record of an event: everything but its stream position."""
    try:
        data_json = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidParams(f"Invalid parameter data: not JSON-serializable ({exc})", channel=spec.name) from None
    if len(data_json) > MAX_EVENT_DATA_BYTES:
        raise InvalidParams(f"Invalid parameter data: larger than {MAX_EVENT_DATA_BYTES} bytes", channel=spec.name)
    scope_key = "user_id" if spec.scope is Scope.USER else "location_id"
    return {
        "event_id": new_id("evt"),
        "event": event,
        scope_key: scope_id,
        "timestamp": now_iso(),
        "data": data,
        "fields": {name: filter_value(data.get(name)) for name in spec.filter_fields},
    }


def hub_message(stream: str, seq: int, epoch: str, record: Mapping[str, Any], tail: str) -> dict[str, Any]:
    """What travels over the channel layer: the filter inputs plus the pre-encoded tail."""
    return {
        "type": "rt.event",
        "group": group_for_stream(stream),
        "stream": stream,
        "seq": seq,
        "epoch": epoch,
        "event": record["event"],
        "fields": record["fields"],
        "tail": tail,
        "timestamp": record["timestamp"],  # for the delivery-lag histogram (realtime.metrics)
    }


async def apublish(
    channel: str,
    event: str,
    *,
    location_id: str | None = None,
    user_id: str | None = None,
    data: Mapping[str, Any] | None = None,
    source: str = "python",
) -> PublishedEvent:
    """Publish one event to every subscriber of its stream, on every gateway process.

    ``source`` (``metrics.PUBLISH_SOURCES``: rest, python, model, outbox) only labels the published-events metric.
    """
    spec, scope_id = resolve_target(channel, event, location_id=location_id, user_id=user_id)
    if data is not None and not isinstance(data, Mapping):
        raise InvalidParams("Invalid parameter data: must be a JSON object", channel=spec.name)
    record = build_event(spec, event, scope_id, data or {})
    stream = spec.stream(scope_id)
    try:
        started = time.perf_counter()
        position = await get_history().append(stream, record_json(record))
        seq, epoch = position.seq, position.epoch
        appended = time.perf_counter() - started
        tail = envelope_tail(spec.name, stream, seq, epoch, record)
        await get_channel_layer().group_send(group_for_stream(stream), hub_message(stream, seq, epoch, record, tail))
    except Exception as exc:
        if not shared_redis.is_outage(exc):
            raise
        logger.warning("publish to %s failed: %s", stream, exc)
        metrics.record_redis_error("publish")
        raise Unavailable() from exc
    metrics.record_published(stream, source, appended)
    return PublishedEvent(record["event_id"], stream, seq, epoch)


async def abroadcast_control(message: dict[str, Any]) -> None:
    """Send a control message (access changes) to the hub of every gateway process."""
    await get_channel_layer().group_send(CONTROL_GROUP, message)


class _LoopThread:
    """A private event loop on a daemon thread, so sync publishers keep one Redis connection between calls."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="realtime-publisher", daemon=True).start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)


_publisher_loop = _LoopThread()


def run_sync(coro_fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run an async publish from sync code on the right loop for the configured layer.

    The in-memory layer only reaches subscribers through the server's own loop, which asgiref finds for code
    running under ``sync_to_async`` (views, the admin). A Redis layer is reached from any loop, and the private
    loop keeps its connection open across calls instead of opening one per event.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("publish() was called from async code; use 'await apublish(...)' instead")
    if isinstance(get_channel_layer(), InMemoryChannelLayer):
        return async_to_sync(coro_fn)(*args, **kwargs)
    return _publisher_loop.run(coro_fn(*args, **kwargs))


def publish(
    channel: str,
    event: str,
    *,
    location_id: str | None = None,
    user_id: str | None = None,
    data: Mapping[str, Any] | None = None,
    source: str = "python",
) -> PublishedEvent:
    """Publish from sync code (views, signals, management commands, workers)."""
    return run_sync(apublish, channel, event, location_id=location_id, user_id=user_id, data=data, source=source)  # type: ignore[no-any-return]


def publish_on_commit(
    channel: str,
    event: str,
    *,
    location_id: str | None = None,
    user_id: str | None = None,
    data: Mapping[str, Any] | None = None,
    using: str | None = None,
    source: str = "python",
) -> None:
    """Publish once the current transaction commits, so nobody sees a change that was rolled back."""
    resolve_target(channel, event, location_id=location_id, user_id=user_id)  # fail at the call site, not later
    send = partial(publish, channel, event, location_id=location_id, user_id=user_id, data=data, source=source)
    transaction.on_commit(send, using=using, robust=True)


def broadcast_control(message: dict[str, Any]) -> None:
    run_sync(abroadcast_control, message)
