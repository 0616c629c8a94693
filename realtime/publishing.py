"""The publish API: the one code path every event takes, whoever publishes it.

Python code calls ``publish`` (sync) or ``apublish`` (async); REST ``POST /v1/events`` and the outbox relay
(``realtime.relay``, which publishes model saves and ``publish_on_commit``) call them too. Publishing validates the
event against the registry, appends it to its stream's history (which assigns ``seq``), encodes the envelope once,
and hands it to the channel layer group of the stream. Each gateway process's
hub (``realtime.hub``) receives it once and fans it out to its local subscribers, who add only their
``subscription_id`` in front of the shared, pre-encoded tail.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

from realtime import acks, metrics
from realtime.conf import realtime_settings
from realtime.errors import ChannelNotFound, IdempotencyConflict, InvalidParams, ProtocolError, Unavailable
from realtime.protocol import envelope_tail, new_id, now_iso
from realtime.registry import PUBLIC_ID_PATTERN, ChannelSpec, Scope, get_channel
from realtime.stores import redis_client as shared_redis
from realtime.stores.history import Announce, Appended, Entry, KeyConflict, RedisHistory, get_history, record_json
from realtime.streams import CONTROL_GROUP, group_for_stream

logger = logging.getLogger(__name__)
T = TypeVar("T")
MAX_EVENT_DATA_BYTES = 64 * 1024
MAX_IDEMPOTENCY_KEY_LENGTH = 128
_PUBLIC_ID = re.compile(PUBLIC_ID_PATTERN)


@dataclass(frozen=True)
class PublishedEvent:
    """Where an event landed; ``duplicate``: a repeat of an idempotency key, answered with the first's position."""

    event_id: str
    stream: str
    seq: int
    epoch: str
    duplicate: bool = False

    def as_body(self) -> dict[str, Any]:
        """The REST answer: ``{event_id, stream, seq, epoch}`` (``duplicate`` is told by the status, 200 vs 202)."""
        return {"event_id": self.event_id, "stream": self.stream, "seq": self.seq, "epoch": self.epoch}


@dataclass(frozen=True)
class PublishItem:
    """One event of a batch (``apublish_many``): the arguments of ``apublish``."""

    channel: str
    event: str
    location_id: str | None = None
    user_id: str | None = None
    data: Mapping[str, Any] | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class PreparedEvent:
    """A validated event, ready to append: its channel, stream, stored record and history entry."""

    spec: ChannelSpec
    scope_id: str
    stream: str
    record: dict[str, Any]
    entry: Entry


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


_PLACEHOLDER = f"@{secrets.token_hex(8)}@"  # stands for the epoch and the seq until the history script knows them


def envelope_tail_parts(spec_name: str, stream: str, record: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """``envelope_tail`` cut around its epoch and seq values (None if the data happens to hold the placeholder)."""
    tail = envelope_tail(spec_name, stream, 0, _PLACEHOLDER, record).replace(
        '"seq":0,"', f'"seq":"{_PLACEHOLDER}","', 1
    )
    before, *rest = tail.split(f'"{_PLACEHOLDER}"')
    if len(rest) != 2:
        return None
    return before + '"', '"' + rest[0], rest[1]


def layer_channel_for(group: str) -> str | None:
    """The Redis pub/sub channel the layer would send ``group``'s messages on, when the history script may PUBLISH
    them itself: the default ``RedisPubSubChannelLayer`` (msgpack, no encryption) on the history's one Redis."""
    layer = get_channel_layer()
    fused = _fusable.get(layer)
    if fused is None:
        fused = _fusable[layer] = _can_fuse(layer)
    return layer._get_group_channel_name(group) if fused else None  # type: ignore[no-any-return, union-attr]


_fusable: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _can_fuse(layer: Any) -> bool:
    """Only where the script's message is exactly the layer's; anything unknown (another channels-redis whose
    internals differ) keeps the layer's own ``group_send``."""
    from django.conf import settings

    try:
        from channels_redis.pubsub import RedisPubSubChannelLayer
        from channels_redis.serializers import MsgPackSerializer

        if not isinstance(layer, RedisPubSubChannelLayer) or not isinstance(get_history(), RedisHistory):
            return False
        serializer = layer._serializer
        if type(serializer) is not MsgPackSerializer or serializer.crypter or serializer.random_prefix_length:
            return False
        shards = layer._get_layer()._shards
        address = shards[0].host.get("address") if len(shards) == 1 else None
        layer._get_group_channel_name("rt.probe")
    except (ImportError, AttributeError, TypeError):
        return False
    return bool(address) and address == settings.REDIS_URL and not getattr(settings, "REDIS_SENTINELS", [])


def announce_for(stream: str, events: Sequence[PreparedEvent]) -> Announce | None:
    """The channel-layer message the history script can publish for ``events`` itself, or None (then: group_send).

    Packed as the layer's msgpack serializer packs a dict: a map of the static fields (``packb`` in C, its header
    counting the three the script appends: seq, epoch, tail).
    """
    if any(acks.needs_ack(event.spec.name, event.record["event"]) for event in events):
        return None  # a ticket awaiting an ack is recorded after its append and before it is sent (realtime.acks)
    group = group_for_stream(stream)
    channel = layer_channel_for(group)
    if channel is None:
        return None
    import msgpack

    entries = []
    for event in events:
        parts = envelope_tail_parts(event.spec.name, stream, event.record)
        if parts is None:
            return None
        static = msgpack.packb(
            {
                "type": "rt.event",
                "group": group,
                "stream": stream,
                "event": event.record["event"],
                "fields": event.record["fields"],
                "timestamp": event.record["timestamp"],
            }
        )
        entries.append((b"\x89" + static[1:] + _PACKED["seq"], *parts))  # fixmap of 6 -> of 9
    head = b"\x83" + msgpack.packb({"type": "rt.events", "group": group})[1:] + _PACKED["events"]
    return Announce(channel, head, _PACKED["epoch"], _PACKED["tail"], entries)


_PACKED = {name: bytes([0xA0 + len(name)]) + name.encode() for name in ("seq", "epoch", "tail", "events")}  # fixstr


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


def check_idempotency_key(key: Any, channel: str | None = None) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidParams(
            f"Invalid parameter idempotency_key: must be a string of 1-{MAX_IDEMPOTENCY_KEY_LENGTH} characters",
            channel=channel,
        )
    return key


def fingerprint(spec: ChannelSpec, event: str, scope_id: str, data: Mapping[str, Any]) -> str:
    """What makes two publishes "the same event" under one key: channel, event, scope and data (not ids or time)."""
    canonical = json.dumps([spec.name, event, spec.scope.value, scope_id, data], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def prepare(item: PublishItem) -> PreparedEvent:
    """Validate one event and build what the history stores; raises the ``ProtocolError`` a caller answers with."""
    spec, scope_id = resolve_target(item.channel, item.event, location_id=item.location_id, user_id=item.user_id)
    data = item.data
    if data is not None and not isinstance(data, Mapping):
        raise InvalidParams("Invalid parameter data: must be a JSON object", channel=spec.name)
    key = check_idempotency_key(item.idempotency_key, spec.name)
    record = build_event(spec, item.event, scope_id, data or {})
    entry = Entry(
        record_json(record),
        record["event_id"],
        key,
        fingerprint(spec, item.event, scope_id, data or {}) if key is not None else "",
    )
    return PreparedEvent(spec, scope_id, spec.stream(scope_id), record, entry)


def dedup_window(dedup_seconds: float | None) -> float:
    return float(realtime_settings.PUBLISH_DEDUP_SECONDS if dedup_seconds is None else dedup_seconds)


def _conflict(
    clash: KeyConflict, stream: str, indexes: Sequence[int], prepared: Sequence[PreparedEvent], batch: bool
) -> IdempotencyConflict:
    index = indexes[clash.position]
    detail = {"index": index} if batch else {}
    return IdempotencyConflict(prepared[index].entry.key or "", stream, **detail)


async def _deliver(
    stream: str,
    events: Sequence[PreparedEvent],
    appended: Sequence[Appended],
    announced: bool,
    spent: float,
    source: str,
) -> None:
    """Hand a stream's new events to the channel layer in order (unless its history script published them)."""
    fresh = [(event, where) for event, where in zip(events, appended, strict=True) if not where.duplicate]
    if fresh and not announced:
        group = group_for_stream(stream)
        messages = []
        for event, where in fresh:
            tail = envelope_tail(event.spec.name, stream, where.seq, where.epoch, event.record)
            message = hub_message(stream, where.seq, where.epoch, event.record, tail)
            await acks.arecord_if_needed(event.spec.name, event.record, message)  # before it is sent: see acks
            messages.append(message)
        if len(messages) == 1:
            await get_channel_layer().group_send(group, messages[0])
        else:  # one channel-layer message (one Redis PUBLISH) for all of them; each hub fans them out in order
            await get_channel_layer().group_send(group, {"type": "rt.events", "group": group, "events": messages})
    for _ in fresh:
        metrics.record_published(stream, source, spent / len(fresh))


async def _append_and_deliver(
    by_stream: dict[str, list[int]], prepared: Sequence[PreparedEvent], window: float, source: str, batch: bool
) -> list[list[Appended]]:
    """One history call for all the streams (one Redis round trip: one script per stream, pipelined), then the
    deliveries; a stream whose key clashed appended nothing, the others are delivered before the error is raised."""
    streams = list(by_stream)
    events = {stream: [prepared[index] for index in by_stream[stream]] for stream in streams}
    announces = {stream: announce_for(stream, events[stream]) for stream in streams}
    started = time.perf_counter()
    history = get_history()
    if len(streams) == 1:
        stream = streams[0]
        try:
            answers: list[list[Appended] | KeyConflict] = [
                await history.append_many(stream, [e.entry for e in events[stream]], window, announces[stream])
            ]
        except KeyConflict as clash:
            answers = [clash]
    else:
        answers = await history.append_streams(
            [(stream, [e.entry for e in events[stream]], window, announces[stream]) for stream in streams]
        )
    spent = (time.perf_counter() - started) / len(streams)
    conflict: IdempotencyConflict | None = None
    appended: list[list[Appended]] = []
    deliveries = []
    for stream, answer in zip(streams, answers, strict=True):
        if isinstance(answer, KeyConflict):
            conflict = conflict or _conflict(answer, stream, by_stream[stream], prepared, batch)
            appended.append([])
            continue
        deliveries.append(_deliver(stream, events[stream], answer, announces[stream] is not None, spent, source))
        appended.append(answer)
    await asyncio.gather(*deliveries)  # streams apart; each stream's events stay in order
    if conflict is not None:
        raise conflict
    return appended


async def _publish_prepared(
    prepared: Sequence[PreparedEvent], window: float, source: str, batch: bool
) -> list[PublishedEvent]:
    by_stream: dict[str, list[int]] = {}
    for index, event in enumerate(prepared):
        by_stream.setdefault(event.stream, []).append(index)
    streams = list(by_stream)
    try:
        answers = await _append_and_deliver(by_stream, prepared, window, source, batch)
    except Exception as exc:
        if not shared_redis.is_outage(exc):
            raise
        logger.warning("publish to %s failed: %s", ", ".join(streams[:5]), exc)
        metrics.record_redis_error("publish")
        raise Unavailable() from exc
    results: list[PublishedEvent] = [None] * len(prepared)  # type: ignore[list-item]
    for stream, appended in zip(streams, answers, strict=True):
        for index, where in zip(by_stream[stream], appended, strict=True):
            results[index] = PublishedEvent(where.event_id, stream, where.seq, where.epoch, where.duplicate)
    return results


async def apublish(
    channel: str,
    event: str,
    *,
    location_id: str | None = None,
    user_id: str | None = None,
    data: Mapping[str, Any] | None = None,
    source: str = "python",
    idempotency_key: str | None = None,
    dedup_seconds: float | None = None,
) -> PublishedEvent:
    """Publish one event to every subscriber of its stream, on every gateway process.

    With ``idempotency_key``, a repeat of the key for the same stream within ``PUBLISH_DEDUP_SECONDS`` (or
    ``dedup_seconds``) publishes nothing and returns the first publish's position with ``duplicate=True``; a repeat
    with a different event raises ``IdempotencyConflict``. The check, the append and the key's record are one atomic
    step of the history store, so this holds across processes. ``source`` (``metrics.PUBLISH_SOURCES``: rest,
    python, model, outbox) only labels the published-events metric.
    """
    item = PublishItem(channel, event, location_id, user_id, data, idempotency_key)
    prepared = prepare(item)
    result = (await apublish_prepared([prepared], source=source, dedup_seconds=dedup_seconds, batch=False))[0]
    if result.duplicate:
        logger.debug("publish to %s: idempotency key repeated, nothing published", result.stream)
    return result


async def apublish_many(
    items: Sequence[PublishItem], *, source: str = "python", dedup_seconds: float | None = None
) -> list[PublishedEvent]:
    """Publish a batch: all validated first (nothing is published when any item is bad), then one history call for
    all its streams (one Redis round trip: a script per stream, pipelined), in item order within each stream; the
    results in item order.

    A bad item raises ``InvalidParams`` whose ``errors`` detail lists each bad item's ``index`` and ``message``.
    Keyed items are checked for a clash before anything is appended, so an ``IdempotencyConflict`` (``index``: the
    item) normally means nothing was published; only a clash that races this batch in from another publisher, in
    a later stream of the batch, can leave the earlier streams published (their keyed items answer as duplicates
    when the batch is sent again).
    """
    return await apublish_prepared(prepare_batch(items), source=source, dedup_seconds=dedup_seconds)


def invalid_batch(errors: list[dict[str, Any]], count: int) -> InvalidParams:
    """One error for a batch's bad items: ``errors`` holds each one's ``index`` and ``message``."""
    first = errors[0]
    return InvalidParams(
        f"{len(errors)} of {count} events are invalid; nothing was published (item {first['index']}: "
        f"{first['message']})",
        errors=errors,
    )


def prepare_batch(items: Sequence[Any], to_item: Callable[[Any], PublishItem] | None = None) -> list[PreparedEvent]:
    """Validate every item (``to_item`` first turns each into a ``PublishItem``, raising a ``ProtocolError`` when it
    cannot); raise one ``InvalidParams`` naming each bad item's index, or return them all prepared."""
    prepared: list[PreparedEvent] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            prepared.append(prepare(item if to_item is None else to_item(item)))
        except ProtocolError as error:
            errors.append({"index": index, "message": error.message})
    if errors:
        raise invalid_batch(errors, len(items))
    return prepared


async def apublish_prepared(
    prepared: Sequence[PreparedEvent],
    *,
    source: str = "python",
    dedup_seconds: float | None = None,
    batch: bool = True,
) -> list[PublishedEvent]:
    """Publish events ``prepare`` (or ``prepare_batch``) checked; ``batch``: a key clash names its item's index."""
    window = dedup_window(dedup_seconds)
    if window > 0 and len({event.stream for event in prepared}) > 1:  # within one stream the script is atomic
        await _check_keys(prepared)
    return await _publish_prepared(prepared, window, source, batch)


async def _check_keys(prepared: Sequence[PreparedEvent]) -> None:
    """Refuse a batch whose keys clash with earlier publishes, before any stream is appended (one read, if keyed)."""
    keyed = [(index, event) for index, event in enumerate(prepared) if event.entry.key is not None]
    if not keyed:
        return
    try:
        known = await get_history().fingerprints([(event.stream, event.entry.key or "") for _, event in keyed])
    except Exception as exc:
        if not shared_redis.is_outage(exc):
            raise
        metrics.record_redis_error("publish")
        raise Unavailable() from exc
    first_seen: dict[tuple[str, str], str] = {}
    for (index, event), stored in zip(keyed, known, strict=True):
        key = event.entry.key or ""
        expected = stored if stored is not None else first_seen.setdefault((event.stream, key), event.entry.fingerprint)
        if expected != event.entry.fingerprint:
            raise IdempotencyConflict(key, event.stream, index=index)


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
    idempotency_key: str | None = None,
    dedup_seconds: float | None = None,
) -> PublishedEvent:
    """Publish from sync code (views, signals, management commands, workers); see ``apublish``."""
    return run_sync(  # type: ignore[no-any-return]
        apublish,
        channel,
        event,
        location_id=location_id,
        user_id=user_id,
        data=data,
        source=source,
        idempotency_key=idempotency_key,
        dedup_seconds=dedup_seconds,
    )


def publish_many(
    items: Sequence[PublishItem], *, source: str = "python", dedup_seconds: float | None = None
) -> list[PublishedEvent]:
    """``apublish_many`` from sync code."""
    return run_sync(apublish_many, items, source=source, dedup_seconds=dedup_seconds)  # type: ignore[no-any-return]


def publish_on_commit(
    channel: str,
    event: str,
    *,
    location_id: str | None = None,
    user_id: str | None = None,
    data: Mapping[str, Any] | None = None,
    using: str | None = None,
    source: str = "outbox",
) -> None:
    """Publish once the current transaction commits: an outbox row written in it (``realtime.outbox``).

    Nobody sees an event of a rolled-back change, and a committed one is delivered even when Redis is down at the
    commit or the process dies right after it. A bad channel, event or scope id fails here, at the call site.
    """
    from realtime.outbox import enqueue

    enqueue(channel, event, location_id=location_id, user_id=user_id, data=data, using=using, source=source)


def broadcast_control(message: dict[str, Any]) -> None:
    run_sync(abroadcast_control, message)
