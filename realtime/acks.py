"""Acknowledged KDS tickets (issue 16): pending acks, their redelivery and their escalation, shared by every process.

Publishing a ``kds.ticket.created`` or ``kds.ticket.recalled`` records one pending ack per event (``record``), in the
publish path, whoever publishes, at every location that has had an ack screen within ``SCREENS_TTL_SECONDS``: a
location whose screens never ack is not tracked, so its managers are not alerted for every ticket. A screen whose
``kds`` subscription asked for ``"ack": true`` answers with an ``ack`` message (``acknowledge``). Every gateway
process runs a sweeper (started with its heartbeat) whose claim is one Redis script: each due entry is handed to
exactly one process per step, which then either sends the event again to every matching ack subscription
(``"redelivery": n``, through the stream's layer group) or, after ``KDS_ACK_MAX_REDELIVERIES``, alerts the
location's kitchen managers on ``notifications``. The state lives in Redis (or in memory in the single-process
mode), so a gateway restart loses nothing.

An escalation is claimed with a lease (``ESCALATION_LEASE_SECONDS``) and finished once its alerts are published: a
process killed in between leaves the lease to run out, and another process escalates instead.

Key layout (``P`` = ``REDIS_PREFIX``; all deadlines are ms of the Redis server's ``TIME``)::

    P:acks:screens:<loc>  string  present while the location has had an ack screen within SCREENS_TTL_SECONDS
    P:acks:due            zset    event_id -> when its next step is due
    P:acks:e:<id>         hash    ticket_id, station, location_id, message (the hub message JSON), created_ms,
                                  redeliveries, state (pending | escalating | escalated | acked),
                                  acked_ms, acked_by, acked_connection
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from realtime.conf import realtime_settings
from realtime.outages import OutageLog
from realtime.stores import redis_client as shared_redis

logger = logging.getLogger(__name__)

ACK_EVENTS = frozenset({"kds.ticket.created", "kds.ticket.recalled"})
ACK_CHANNEL = "kds"
ESCALATION_LEASE_SECONDS = 30.0
"""How long a claimed escalation stays with its process before another may take it over (a crash in between)."""
CLAIM_MAX_ENTRIES = 100
"""Due entries claimed per sweep at most, so one sweep never blocks Redis for long; the rest go next sweep."""
REDELIVERY_MESSAGE_TYPE = "rt.redelivery"
SCREENS_TTL_SECONDS = 3600
"""A location's tickets are tracked while it has had an ack subscription within this time (renewed by sweepers)."""
SCREENS_REFRESH_SECONDS = 60.0


def needs_ack(channel: str, event: str) -> bool:
    """The events each ack subscription must acknowledge."""
    return channel == ACK_CHANNEL and event in ACK_EVENTS


@dataclass(frozen=True)
class PendingAck:
    """What the gateway knows of one event awaiting acknowledgement."""

    event_id: str
    ticket_id: str
    station: str
    location_id: str
    state: str
    redeliveries: int
    acked_ms: int | None = None


@dataclass(frozen=True)
class AckResult:
    """The outcome of an ack: whether it was the first, and when the first was."""

    first: bool
    acked_ms: int


@dataclass(frozen=True)
class Redelivery:
    event_id: str
    redelivery: int
    message: dict[str, Any]


@dataclass(frozen=True)
class Escalation:
    event_id: str
    ticket_id: str
    station: str
    location_id: str
    age_seconds: float


def _settings_ms(name: str) -> int:
    return max(1, int(float(getattr(realtime_settings, name)) * 1000))


def retention_seconds() -> int:
    """How long an entry is kept: its whole course plus ``KDS_ACK_RETENTION_SECONDS`` (for duplicate acks)."""
    timeout = realtime_settings.KDS_ACK_TIMEOUT_SECONDS
    steps = realtime_settings.KDS_ACK_MAX_REDELIVERIES + 2
    return int(timeout * steps + ESCALATION_LEASE_SECONDS + realtime_settings.KDS_ACK_RETENTION_SECONDS)


class AckStore(Protocol):
    async def mark_screens(self, location_ids: Iterable[str]) -> None:
        """These locations have ack screens: track their tickets for ``SCREENS_TTL_SECONDS`` from now."""
        ...

    async def record(
        self, event_id: str, *, ticket_id: str, station: str, location_id: str, message: dict[str, Any]
    ) -> bool:
        """Remember an event awaiting acknowledgement, due after ``KDS_ACK_TIMEOUT_SECONDS``, if its location has
        ack screens; idempotent. True when it was recorded now."""
        ...

    async def lookup(self, event_id: str) -> PendingAck | None: ...

    async def acknowledge(self, event_id: str, *, user_id: str, connection_id: str) -> AckResult | None:
        """Settle an entry; atomic: exactly one caller is told ``first``; None when the entry is gone."""
        ...

    async def claim(self) -> tuple[list[Redelivery], list[Escalation]]:
        """Take every due step; atomic across processes, so each step goes to exactly one caller."""
        ...

    async def finish_escalation(self, event_id: str) -> None:
        """The escalation's alerts are out: the entry is settled (an ack may still come, and is recorded)."""
        ...


def _now_ms() -> int:
    return int(time.time() * 1000)


class MemoryAcks:
    """One process's pending acks (the embedded single-process mode), guarded for publishers on other threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = {}
        self._screens: dict[str, int] = {}  # location -> until (ms)

    async def mark_screens(self, location_ids: Iterable[str]) -> None:
        until = _now_ms() + SCREENS_TTL_SECONDS * 1000
        with self._lock:
            for location_id in location_ids:
                self._screens[location_id] = until

    async def record(
        self, event_id: str, *, ticket_id: str, station: str, location_id: str, message: dict[str, Any]
    ) -> bool:
        now = _now_ms()
        with self._lock:
            if self._screens.get(location_id, 0) < now or event_id in self._entries:
                return False
            self._expire(now)
            self._entries.setdefault(
                event_id,
                {
                    "ticket_id": ticket_id,
                    "station": station,
                    "location_id": location_id,
                    "message": message,
                    "created_ms": now,
                    "redeliveries": 0,
                    "state": "pending",
                    "due": now + _settings_ms("KDS_ACK_TIMEOUT_SECONDS"),
                    "expires": now + retention_seconds() * 1000,
                },
            )
            return True

    def _expire(self, now: int) -> None:
        for event_id in [k for k, v in self._entries.items() if v["expires"] < now]:
            del self._entries[event_id]

    async def lookup(self, event_id: str) -> PendingAck | None:
        with self._lock:
            entry = self._entries.get(event_id)
            if entry is None or entry["expires"] < _now_ms():
                return None
            return PendingAck(
                event_id,
                entry["ticket_id"],
                entry["station"],
                entry["location_id"],
                entry["state"],
                entry["redeliveries"],
                entry.get("acked_ms"),
            )

    async def acknowledge(self, event_id: str, *, user_id: str, connection_id: str) -> AckResult | None:
        with self._lock:
            entry = self._entries.get(event_id)
            if entry is None:
                return None
            if entry["state"] == "acked":
                return AckResult(False, entry["acked_ms"])
            now = _now_ms()
            entry.update(state="acked", acked_ms=now, acked_by=user_id, acked_connection=connection_id, due=None)
            entry["expires"] = now + int(realtime_settings.KDS_ACK_RETENTION_SECONDS * 1000)
            return AckResult(True, now)

    async def claim(self) -> tuple[list[Redelivery], list[Escalation]]:
        now = _now_ms()
        redeliveries: list[Redelivery] = []
        escalations: list[Escalation] = []
        timeout = _settings_ms("KDS_ACK_TIMEOUT_SECONDS")
        limit = realtime_settings.KDS_ACK_MAX_REDELIVERIES
        with self._lock:
            self._expire(now)
            for event_id, entry in self._entries.items():
                due = entry["due"]
                if due is None or due > now or entry["state"] not in ("pending", "escalating"):
                    continue
                if entry["state"] == "pending" and entry["redeliveries"] < limit:
                    entry["redeliveries"] += 1
                    entry["due"] = now + timeout
                    redeliveries.append(Redelivery(event_id, entry["redeliveries"], entry["message"]))
                else:
                    entry["state"] = "escalating"
                    entry["due"] = now + int(ESCALATION_LEASE_SECONDS * 1000)
                    age = (now - entry["created_ms"]) / 1000
                    escalations.append(
                        Escalation(event_id, entry["ticket_id"], entry["station"], entry["location_id"], age)
                    )
        return redeliveries, escalations

    async def finish_escalation(self, event_id: str) -> None:
        with self._lock:
            entry = self._entries.get(event_id)
            if entry is not None and entry["state"] == "escalating":
                entry.update(state="escalated", due=None)


# ARGV: prefix, event id, ticket id, station, location id, message JSON, timeout ms, ttl s.
_RECORD = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = ARGV[1] .. ':acks:e:' .. ARGV[2]
if redis.call('EXISTS', ARGV[1] .. ':acks:screens:' .. ARGV[5]) == 0 then return 0 end
if redis.call('EXISTS', key) == 1 then return 0 end
redis.call('HSET', key, 'ticket_id', ARGV[3], 'station', ARGV[4], 'location_id', ARGV[5], 'message', ARGV[6],
  'created_ms', now, 'redeliveries', 0, 'state', 'pending')
redis.call('EXPIRE', key, tonumber(ARGV[8]))
redis.call('ZADD', ARGV[1] .. ':acks:due', now + tonumber(ARGV[7]), ARGV[2])
return 1
"""

# ARGV: prefix, event id, user id, connection id, retention s. Returns {first (0/1), acked_ms} or false.
_ACK = r"""
local key = ARGV[1] .. ':acks:e:' .. ARGV[2]
local state = redis.call('HGET', key, 'state')
if not state then return false end
if state == 'acked' then return {0, tonumber(redis.call('HGET', key, 'acked_ms'))} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', key, 'state', 'acked', 'acked_ms', now, 'acked_by', ARGV[3], 'acked_connection', ARGV[4])
redis.call('EXPIRE', key, tonumber(ARGV[5]))
redis.call('ZREM', ARGV[1] .. ':acks:due', ARGV[2])
return {1, now}
"""

# ARGV: prefix, timeout ms, max redeliveries, lease ms, limit.
# Returns a flat list: 'r', event id, n, message | 'e', event id, ticket, station, location, age ms.
_CLAIM = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = ARGV[1] .. ':acks:due'
local timeout, limit, lease = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))) do
  local key = ARGV[1] .. ':acks:e:' .. id
  local f = redis.call('HMGET', key, 'state', 'redeliveries', 'message', 'ticket_id', 'station', 'location_id',
    'created_ms')
  local state = f[1]
  if state ~= 'pending' and state ~= 'escalating' then
    redis.call('ZREM', due, id)
  elseif state == 'pending' and tonumber(f[2]) < limit then
    local n = tonumber(f[2]) + 1
    redis.call('HSET', key, 'redeliveries', n)
    redis.call('ZADD', due, now + timeout, id)
    table.insert(out, 'r'); table.insert(out, id); table.insert(out, n); table.insert(out, f[3])
  else
    redis.call('HSET', key, 'state', 'escalating')
    redis.call('ZADD', due, now + lease, id)
    table.insert(out, 'e'); table.insert(out, id); table.insert(out, f[4]); table.insert(out, f[5])
    table.insert(out, f[6]); table.insert(out, now - tonumber(f[7]))
  end
end
return out
"""

# ARGV: prefix, event id.
_FINISH = r"""
local key = ARGV[1] .. ':acks:e:' .. ARGV[2]
if redis.call('HGET', key, 'state') == 'escalating' then
  redis.call('HSET', key, 'state', 'escalated')
  redis.call('ZREM', ARGV[1] .. ':acks:due', ARGV[2])
end
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisAcks:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    async def mark_screens(self, location_ids: Iterable[str]) -> None:
        pipe = shared_redis.client().pipeline(transaction=False)
        for location_id in location_ids:
            pipe.set(f"{self.prefix}:acks:screens:{location_id}", 1, ex=SCREENS_TTL_SECONDS)
        await pipe.execute()

    async def record(
        self, event_id: str, *, ticket_id: str, station: str, location_id: str, message: dict[str, Any]
    ) -> bool:
        recorded = await shared_redis.script(_RECORD)(
            args=[
                self.prefix,
                event_id,
                ticket_id,
                station,
                location_id,
                json.dumps(message, separators=(",", ":")),
                _settings_ms("KDS_ACK_TIMEOUT_SECONDS"),
                retention_seconds(),
            ]
        )
        return bool(recorded)

    async def lookup(self, event_id: str) -> PendingAck | None:
        raw = await shared_redis.client().hgetall(f"{self.prefix}:acks:e:{event_id}")
        if not raw:
            return None
        entry = {_text(k): _text(v) for k, v in raw.items()}
        return PendingAck(
            event_id,
            entry.get("ticket_id", ""),
            entry.get("station", ""),
            entry.get("location_id", ""),
            entry.get("state", "pending"),
            int(entry.get("redeliveries", 0)),
            int(entry["acked_ms"]) if "acked_ms" in entry else None,
        )

    async def acknowledge(self, event_id: str, *, user_id: str, connection_id: str) -> AckResult | None:
        result = await shared_redis.script(_ACK)(
            args=[
                self.prefix,
                event_id,
                user_id,
                connection_id,
                int(realtime_settings.KDS_ACK_RETENTION_SECONDS),
            ]
        )
        if not result:
            return None
        return AckResult(bool(int(result[0])), int(result[1]))

    async def claim(self) -> tuple[list[Redelivery], list[Escalation]]:
        flat = await shared_redis.script(_CLAIM)(
            args=[
                self.prefix,
                _settings_ms("KDS_ACK_TIMEOUT_SECONDS"),
                realtime_settings.KDS_ACK_MAX_REDELIVERIES,
                int(ESCALATION_LEASE_SECONDS * 1000),
                CLAIM_MAX_ENTRIES,
            ]
        )
        redeliveries: list[Redelivery] = []
        escalations: list[Escalation] = []
        i = 0
        while i < len(flat):
            if _text(flat[i]) == "r":
                redeliveries.append(Redelivery(_text(flat[i + 1]), int(flat[i + 2]), json.loads(flat[i + 3])))
                i += 4
            else:
                escalations.append(
                    Escalation(
                        _text(flat[i + 1]),
                        _text(flat[i + 2]),
                        _text(flat[i + 3]),
                        _text(flat[i + 4]),
                        int(flat[i + 5]) / 1000,
                    )
                )
                i += 6
        return redeliveries, escalations

    async def finish_escalation(self, event_id: str) -> None:
        await shared_redis.script(_FINISH)(args=[self.prefix, event_id])


_store: AckStore | None = None


def get_acks() -> AckStore:
    global _store
    if _store is None:
        _store = RedisAcks(shared_redis.key_prefix()) if shared_redis.redis_configured() else MemoryAcks()
    return _store


def reset_acks() -> None:
    global _store
    _store = None


# --- Ack screens: which locations' tickets are tracked -----------------------------------------------------------

_screens: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()


async def atrack_screen(connection: Any, location_ids: Iterable[str]) -> None:
    """A connection subscribed with ack: its locations' tickets are tracked from now, renewed while it is open."""
    locations = frozenset(location_ids)
    _screens[connection] = _screens.get(connection, frozenset()) | locations
    await get_acks().mark_screens(locations)


def screen_locations() -> set[str]:
    """The locations of this process's open connections that subscribed with ack (closed ones are skipped)."""
    return {loc for conn, locs in list(_screens.items()) if not getattr(conn, "closing", False) for loc in locs}


# --- Recording (the publish path) ------------------------------------------------------------------------------


async def arecord_if_needed(channel: str, record: dict[str, Any], message: dict[str, Any]) -> None:
    """Called by ``apublish`` once per event, before it is sent, so an ack never arrives before its entry."""
    if not needs_ack(channel, record["event"]):
        return
    data = record["data"]
    await get_acks().record(
        record["event_id"],
        ticket_id=str(data.get("ticket_id") or ""),
        station=str(data.get("station") or ""),
        location_id=record["location_id"],
        message=message,
    )


# --- Acknowledging (the consumer's ack message) ----------------------------------------------------------------


def _record_ack_on_ticket(ticket_id: str, user_pk: Any, connection_id: str, acked_ms: int) -> int:
    """The first ack of each event (created, then perhaps recalled) is the ticket's latest acknowledgement."""
    from locations.models import KitchenTicket

    acked_at = datetime.fromtimestamp(acked_ms / 1000, tz=UTC)
    return KitchenTicket.objects.filter(public_id=ticket_id).update(
        acked_at=acked_at, acked_by_id=user_pk, acked_connection=connection_id
    )


arecord_ack_on_ticket = database_sync_to_async(_record_ack_on_ticket)


async def arecord_ack_on_ticket_logged(ticket_id: str, user_pk: Any, connection_id: str, acked_ms: int) -> None:
    """Write the first ack on its ticket; the ack stands (it is settled in the store) even if the database fails."""
    try:
        await arecord_ack_on_ticket(ticket_id, user_pk, connection_id, acked_ms)
    except Exception:
        logger.exception("ack of ticket %s settled but not written to the database", ticket_id)


# --- Sweeping: redelivery and escalation -----------------------------------------------------------------------


def _managers_of(location_id: str) -> list[str]:
    from accounts.authz import kitchen_managers_at
    from locations.models import Location

    location = Location.objects.filter(public_id=location_id).first()
    if location is None:
        return []
    return [user.public_id for user in kitchen_managers_at(location)]


def _flag_unacknowledged(ticket_id: str) -> int:
    """Flag the ticket: its latest event went unacknowledged after every redelivery."""
    from django.utils import timezone

    from locations.models import KitchenTicket

    # Also after an earlier event of the ticket was acked (a recall nobody acked): the admin compares the two times.
    return KitchenTicket.objects.filter(public_id=ticket_id).update(unacknowledged_at=timezone.now())


amanagers_of = database_sync_to_async(_managers_of)
aflag_unacknowledged = database_sync_to_async(_flag_unacknowledged)


async def aredeliver(redelivery: Redelivery) -> None:
    """Send the event again to the stream's group: each process hands it to its ack subscriptions only."""
    message = {**redelivery.message, "type": REDELIVERY_MESSAGE_TYPE, "redelivery": redelivery.redelivery}
    await get_channel_layer().group_send(message["group"], message)


async def aescalate(escalation: Escalation, managers: dict[str, list[str]] | None = None) -> None:
    """Alert each kitchen manager of the location, flag the ticket, and settle the entry.

    ``managers`` caches each location's managers for one sweep: a kitchen whose screens all died escalates many
    tickets at once, and each must be done well within the lease.
    """
    from realtime.publishing import apublish

    managers = {} if managers is None else managers
    if escalation.location_id not in managers:
        managers[escalation.location_id] = await amanagers_of(escalation.location_id)

    data = {
        "ticket_id": escalation.ticket_id or None,
        "station": escalation.station or None,
        "location_id": escalation.location_id,
        "age_seconds": round(escalation.age_seconds, 1),
    }
    for user_id in managers[escalation.location_id]:
        await apublish("notifications", "kds.ticket_unacknowledged", user_id=user_id, data=data, source="python")
    if escalation.ticket_id:
        await aflag_unacknowledged(escalation.ticket_id)
    await get_acks().finish_escalation(escalation.event_id)
    logger.warning(
        "ticket %s at %s/%s not acknowledged after %.0f s: managers alerted",
        escalation.ticket_id or escalation.event_id,
        escalation.location_id,
        escalation.station,
        escalation.age_seconds,
    )


async def asweep_once() -> int:
    """Claim what is due and act on it; return how many steps were taken."""
    redeliveries, escalations = await get_acks().claim()
    for redelivery in redeliveries:
        try:
            await aredeliver(redelivery)
        except Exception as exc:  # this step is lost; the entry stays due, so the next step still comes
            logger.warning("redelivery of %s failed (%s: %s)", redelivery.event_id, type(exc).__name__, exc)
    managers: dict[str, list[str]] = {}
    for escalation in escalations:
        try:
            await aescalate(escalation, managers)
        except Exception:  # the lease runs out and a process (perhaps this one) escalates again
            logger.exception("escalation of %s failed; retried after the lease", escalation.event_id)
    return len(redeliveries) + len(escalations)


async def arun_sweeper() -> None:
    """Sweep every ``KDS_ACK_SWEEP_SECONDS`` for as long as the event loop runs."""
    outage = OutageLog("ack sweep", logger)
    loop = asyncio.get_running_loop()
    renewed = loop.time()
    while True:
        try:
            if loop.time() - renewed >= SCREENS_REFRESH_SECONDS:
                renewed = loop.time()
                locations = screen_locations()
                if locations:
                    await get_acks().mark_screens(locations)
            await asweep_once()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outage.failed(exc)
        else:
            outage.succeeded()
        await asyncio.sleep(realtime_settings.KDS_ACK_SWEEP_SECONDS)


_sweepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = weakref.WeakKeyDictionary()


def start_sweeper(loop: asyncio.AbstractEventLoop) -> asyncio.Task[None]:
    """Start this loop's sweeper (from the heartbeat's start, never from a short-lived loop); idempotent."""
    task = _sweepers.get(loop)
    if task is None or task.done():
        task = _sweepers[loop] = loop.create_task(arun_sweeper(), name="realtime-ack-sweeper")
    return task
