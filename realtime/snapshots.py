"""Snapshots with a position: the current state of a channel at one location, and the seq it is valid from.

``GET /v1/snapshots/kds?location_id=loc-xyz789`` answers::

    {"channel": "kds", "location_id": "loc-xyz789", "position": {"seq": 61, "epoch": "9f3a1c22"},
     "id_field": "ticket_id", "removed_statuses": ["bumped"],
     "items": [{"ticket_id": "tkt-...", "station": "grill", ..., "status": "new", "version": 3}]}

The contract: apply every event of the stream with ``seq`` greater than ``position`` to ``items``, by
``data[id_field]``, dropping an event whose ``version`` is not greater than the one held and removing an entity whose
status is one of ``removed_statuses``, and you have the current state. Why it holds: the position is read FIRST, the
items after. Events are published after their transaction commits, so an event with ``seq <= position`` describes
a change that had committed before the position was read, which the items (read later) already show. A change the
items show whose event has ``seq > position`` arrives again through resume, and its version makes it a no-op. And
the stream never carries an older version of an entity after a newer one (saves claim versions under the row's
lock and the outbox relays each stream in commit order: ``locations.models.save_versioned``), so an entity the
items no longer show (bumped) cannot come back through a late event of an earlier save.

What a channel's state is belongs to the app that owns the records: ``locations.snapshots`` declares one
``SnapshotSource`` per channel and registers it here from ``AppConfig.ready()`` (explicitly; no import magic), so
the gateway reads state the way it publishes events, through one small interface, without importing models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from accounts.models import User
from realtime import protocol
from realtime.authorization import authorize
from realtime.errors import ChannelNotFound, InvalidParams, StatelessChannel, Unavailable
from realtime.publishing import run_sync
from realtime.registry import Scope, get_channel
from realtime.stores import redis_client as shared_redis
from realtime.stores.history import get_history

ItemReader = Callable[[str, Mapping[str, Any]], list[dict[str, Any]]]


@dataclass(frozen=True)
class SnapshotSource:
    """What "the state of ``channel`` at a location" is: its live entities, in the ``data`` shape of its events.

    ``read_items(location_id, filters)`` returns them (one query, so the list is one consistent read);
    ``filters`` are the subscribe parameters a snapshot may narrow by (``station`` for ``kds``), validated by the
    channel's parameter schema; ``removed_statuses`` are the statuses whose event takes an entity off the state.
    """

    channel: str
    id_field: str
    read_items: ItemReader
    filters: tuple[str, ...] = ()
    removed_statuses: tuple[str, ...] = ()


_SOURCES: dict[str, SnapshotSource] = {}


def register_snapshot(source: SnapshotSource) -> None:
    """Declare a channel's state; refuses a channel that is unknown or not location-scoped, or an unknown filter."""
    spec = get_channel(source.channel)
    if spec is None or spec.scope is not Scope.LOCATION:
        raise ValueError(f"Snapshot of '{source.channel}': not a location-scoped channel of the registry")
    unknown = set(source.filters) - set(spec.params.model_fields)
    if unknown:
        raise ValueError(f"Snapshot of '{source.channel}': {sorted(unknown)} are not parameters of the channel")
    _SOURCES[spec.name] = source


def snapshot_channels() -> tuple[str, ...]:
    """The channels that have a snapshot, in registration order."""
    return tuple(_SOURCES)


def take_snapshot(user: User, channel: str, query: Mapping[str, str]) -> dict[str, Any]:
    """The snapshot body for ``user``; raises the protocol's errors (authorized exactly like a subscribe)."""
    spec = get_channel(channel)
    if spec is None:
        raise ChannelNotFound(channel[:64])
    source = _SOURCES.get(spec.name)
    if source is None:
        raise StatelessChannel(spec.name, snapshot_channels())
    allowed = {"location_id", *source.filters}
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise InvalidParams(f"Unknown parameter: {unknown[0][:64]}", channel=spec.name)
    request = protocol.prepare_subscription(spec.name, dict(query), user_id=user.public_id)
    authorize(user, spec, request.scope_ids)
    location_id = request.scope_ids[0]
    # The position first, then the items: see the module docstring for why this order makes the contract hold.
    try:
        position = run_sync(get_history().anchor, spec.stream(location_id))
    except Exception as exc:
        if not shared_redis.is_outage(exc):
            raise
        raise Unavailable() from exc
    filters = {name: request.params[name] for name in source.filters if name in request.params}
    items = source.read_items(location_id, filters)
    return {
        "channel": spec.name,
        "location_id": location_id,
        "position": {"seq": position.seq, "epoch": position.epoch},
        "id_field": source.id_field,
        "removed_statuses": list(source.removed_statuses),
        "items": items,
    }
