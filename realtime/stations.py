"""Dark stations: tell a location's kitchen managers when an active station has no live screen, and when one is back.

Screens declare their station when they join presence on ``kds`` (``"user_info": {"station": "grill"}``). Every
gateway process runs a monitor beside its heartbeat (``realtime.heartbeat``): every ``KDS_STATION_CHECK_SECONDS``
it counts, for each active ``Station`` of each active location, the *live* ``kds`` presence members declaring that
station (members of a lapsed process never count, ``realtime.stores.liveness``), and moves the station's state::

    (none) / lit --no screen--> unlit(since=now)
    unlit --still no screen KDS_DARK_STATION_SECONDS after since--> dark(since)  => kds.station_dark
    unlit --a screen--> lit (no alert: it was never reported)
    dark  --a screen--> lit  => kds.station_restored
    any   --station or location inactive--> (none), no alert

``decide`` is that rule, pure. The state of every station lives in one store shared by the processes (a Redis hash;
memory without Redis) and is changed only by compare-and-set: every process observes and decides, but only the one
whose compare-and-set wins a transition publishes its alert, so each transition is announced exactly once however
many processes watch. Observations and the clock come from one Redis script (the server's ``TIME``), so skewed
process clocks do not matter.

The dark clock starts when a monitor first finds the station without a screen, also for a station that never had
one and after a restart of every process (the stored state survives process restarts; a ``lit`` station then
starts ``unlit`` at the first check and its screens have ``KDS_DARK_STATION_SECONDS`` to reconnect, so a restart
raises no alerts, and a station already reported ``dark`` is not reported again). Station names a screen declares
that are no configured active ``Station`` are accepted and simply raise no alerts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from realtime import metrics
from realtime.conf import realtime_settings
from realtime.outages import OutageLog
from realtime.registry import get_channel
from realtime.stores import redis_client as shared_redis
from realtime.stores.liveness import LUA_LIBRARY, procs_key
from realtime.stores.presence import PresenceStore, get_presence_store

logger = logging.getLogger(__name__)


class Status(StrEnum):
    LIT = "lit"  # at least one live screen at the last check
    UNLIT = "unlit"  # no live screen since ``since``, not reported yet
    DARK = "dark"  # no live screen since ``since``, reported with kds.station_dark


class Alert(StrEnum):
    DARK = "kds.station_dark"
    RESTORED = "kds.station_restored"


@dataclass(frozen=True)
class StationState:
    status: Status
    since_ms: int | None = None  # when a monitor first found no live screen (UNLIT, DARK), Redis server clock

    def to_json(self) -> str:
        return json.dumps({"status": self.status.value, "since_ms": self.since_ms}, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> StationState | None:
        if not raw:
            return None
        data = json.loads(raw)
        return cls(Status(data["status"]), data.get("since_ms"))


@dataclass(frozen=True)
class Decision:
    state: StationState | None  # None: forget the station's state
    alert: Alert | None = None
    dark_since_ms: int | None = None  # with an alert: when the dark spell it reports began


def decide(state: StationState | None, *, screens: int, active: bool, now_ms: int, dark_after_ms: int) -> Decision:
    """The one rule: a station's stored state and what a check saw -> its next state and the alert, if any."""
    if not active:
        return Decision(None)  # deactivated: no alert; watched again from scratch when active again
    if screens > 0:
        if state is not None and state.status is Status.DARK:
            return Decision(StationState(Status.LIT), Alert.RESTORED, state.since_ms)
        return Decision(StationState(Status.LIT))
    if state is None or state.status is Status.LIT:
        return Decision(StationState(Status.UNLIT, now_ms))
    if state.status is Status.UNLIT and state.since_ms is not None and now_ms - state.since_ms >= dark_after_ms:
        return Decision(StationState(Status.DARK, state.since_ms), Alert.DARK, state.since_ms)
    return Decision(state)


@dataclass(frozen=True)
class StationRef:
    """A configured station; ``active`` is the station's flag and its location's."""

    location_id: str
    name: str
    active: bool = True

    @property
    def field(self) -> str:
        return f"{self.location_id}\n{self.name}"

    @property
    def presence_key(self) -> str:
        spec = get_channel("kds")
        assert spec is not None
        return spec.stream(self.location_id)


@dataclass(frozen=True)
class Seen:
    """One station at one check: its live screens and its stored state (raw, for the compare-and-set)."""

    station: StationRef
    screens: int
    raw_state: str | None

    @property
    def state(self) -> StationState | None:
        return StationState.from_json(self.raw_state)


@dataclass(frozen=True)
class Observation:
    now_ms: int
    seen: list[Seen]


@dataclass(frozen=True)
class Change:
    station: StationRef
    expected: str | None
    new: str | None


def station_of(user_info: Any) -> str | None:
    """The station a presence member declared, if any (what the Redis script reads too)."""
    station = user_info.get("station") if isinstance(user_info, dict) else None
    return station if isinstance(station, str) else None


class StationStore(Protocol):
    async def observe(self, stations: Sequence[StationRef]) -> Observation:
        """Count each station's live screens and read its state, atomically, with the store's clock."""
        ...

    async def apply(self, changes: Sequence[Change]) -> list[bool]:
        """Compare-and-set each change (atomic per change); True where the state was still ``expected``."""
        ...


class MemoryStationStore:
    """One process (the embedded mode): the state dies with the process."""

    def __init__(self, presence: PresenceStore | None = None) -> None:
        self.states: dict[str, str] = {}
        self.lock = threading.Lock()
        self.presence = presence  # None: this process's presence store

    async def observe(self, stations: Sequence[StationRef]) -> Observation:
        store = self.presence or get_presence_store()
        counts: dict[str, dict[str, int]] = {}
        for key in {station.presence_key for station in stations}:
            per_station = counts.setdefault(key, {})
            for member in await store.members(key):
                name = station_of(member.user_info)
                if name is not None:
                    per_station[name] = per_station.get(name, 0) + 1
        now_ms = int(time.time() * 1000)
        with self.lock:
            seen = [Seen(s, counts[s.presence_key].get(s.name, 0), self.states.get(s.field)) for s in stations]
        return Observation(now_ms, seen)

    async def apply(self, changes: Sequence[Change]) -> list[bool]:
        results = []
        with self.lock:
            for change in changes:
                won = self.states.get(change.station.field) == change.expected
                if won:
                    if change.new is None:
                        self.states.pop(change.station.field, None)
                    else:
                        self.states[change.station.field] = change.new
                results.append(won)
        return results


# KEYS: procs, the states hash. ARGV: prefix, then (presence key, state field, station name) per station.
# Returns {now_ms, screens, state or false, screens, state or false, ...}.
_OBSERVE = (
    LUA_LIBRARY
    + r"""
local states = KEYS[2]
local counted = {}
local function screens(key)
  local found = counted[key]
  if found == nil then
    found = {}
    local flat = redis.call('HGETALL', pres_base(key) .. ':m')
    for i = 2, #flat, 2 do
      local member = cjson.decode(flat[i])
      local info = member['user_info']
      if type(info) == 'table' and type(info['station']) == 'string' and is_live(member['proc']) then
        found[info['station']] = (found[info['station']] or 0) + 1
      end
    end
    counted[key] = found
  end
  return found
end
local out = {now}
for i = 2, #ARGV, 3 do
  table.insert(out, screens(ARGV[i])[ARGV[i + 2]] or 0)
  table.insert(out, redis.call('HGET', states, ARGV[i + 1]) or false)
end
return out
"""
)

# KEYS: the states hash. ARGV: (field, expected or "", new or "") per change. Returns 1 (set) or 0 per change.
_APPLY = r"""
local out = {}
for i = 1, #ARGV, 3 do
  local current = redis.call('HGET', KEYS[1], ARGV[i]) or ''
  if current == ARGV[i + 1] then
    if ARGV[i + 2] == '' then
      redis.call('HDEL', KEYS[1], ARGV[i])
    else
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    end
    table.insert(out, 1)
  else
    table.insert(out, 0)
  end
end
return out
"""


def _text(value: Any) -> str | None:
    if value is None or value is False:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStationStore:
    """Station states in one Redis hash (``<prefix>:kds:stations``, field ``<location_id>\\n<station>``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    @property
    def states_key(self) -> str:
        return f"{self.prefix}:kds:stations"

    async def observe(self, stations: Sequence[StationRef]) -> Observation:
        args: list[str] = [self.prefix]
        for station in stations:
            args += [station.presence_key, station.field, station.name]
        flat = await shared_redis.script(_OBSERVE)(keys=[procs_key(self.prefix), self.states_key], args=args)
        seen = [Seen(station, int(flat[1 + 2 * i]), _text(flat[2 + 2 * i])) for i, station in enumerate(stations)]
        return Observation(int(flat[0]), seen)

    async def apply(self, changes: Sequence[Change]) -> list[bool]:
        if not changes:
            return []
        args: list[str] = []
        for change in changes:
            args += [change.station.field, change.expected or "", change.new or ""]
        flat = await shared_redis.script(_APPLY)(keys=[self.states_key], args=args)
        return [bool(won) for won in flat]


_store: StationStore | None = None


def get_station_store() -> StationStore:
    global _store
    if _store is None:
        redis_mode = shared_redis.redis_configured()
        _store = RedisStationStore(shared_redis.key_prefix()) if redis_mode else MemoryStationStore()
    return _store


def reset_station_store() -> None:
    global _store
    _store = None


# The database, off the event loop: one thread of our own, never asgiref's thread-sensitive one (a task started
# under a short-lived ``async_to_sync`` would wait for that call's thread forever), and no connection kept open.
_database = ThreadPoolExecutor(max_workers=1, thread_name_prefix="realtime-stations")


def _closing_connections(function: Any) -> Any:
    def run(*args: Any) -> Any:
        from django.db import connections

        try:
            return function(*args)
        finally:
            connections.close_all()

    return run


@_closing_connections
def load_stations() -> list[StationRef]:
    """Every configured station, active only when it and its location are."""
    from locations.models import Station

    rows = Station.objects.values_list("location__public_id", "name", "is_active", "location__is_active")
    return [StationRef(location, name, active and location_active) for location, name, active, location_active in rows]


@_closing_connections
def load_manager_ids(location_id: str) -> list[str]:
    """The public ids of the users who get ``location_id``'s kitchen alerts (``kitchen_managers_at``)."""
    from accounts.authz import kitchen_managers_at
    from locations.models import Location

    location = Location.objects.filter(public_id=location_id).first()
    return [] if location is None else [user.public_id for user in kitchen_managers_at(location)]


def alert_data(station: StationRef, since_ms: int, now_ms: int) -> dict[str, Any]:
    """``{location_id, station, dark_since, seconds}``: since when it has had no screen, and for how long."""
    since = datetime.fromtimestamp(since_ms / 1000, tz=UTC)
    return {
        "location_id": station.location_id,
        "station": station.name,
        "dark_since": since.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "seconds": round(max(0, now_ms - since_ms) / 1000, 1),
    }


class StationMonitor:
    """One event loop's monitor: a check every ``KDS_STATION_CHECK_SECONDS``, run by the heartbeat."""

    def __init__(self) -> None:
        self.stations: list[StationRef] = []
        self.loaded_at: float | None = None
        self.last_check: float | None = None
        self.outage = OutageLog("station check", logger)

    def due(self, now: float) -> bool:
        interval = realtime_settings.KDS_STATION_CHECK_SECONDS
        return interval > 0 and (self.last_check is None or now - self.last_check >= interval)

    async def _stations(self) -> list[StationRef]:
        loop = asyncio.get_running_loop()
        ttl = realtime_settings.KDS_STATION_LIST_CACHE_SECONDS
        if self.loaded_at is None or loop.time() - self.loaded_at >= ttl:
            self.stations = await loop.run_in_executor(_database, load_stations)
            self.loaded_at = loop.time()
        return self.stations

    async def check(self) -> list[tuple[Alert, dict[str, Any]]]:
        """Observe, decide, compare-and-set; publish the transitions this process won. Returns what it published."""
        self.last_check = asyncio.get_running_loop().time()
        stations = await self._stations()
        if not stations:
            return []
        store = get_station_store()
        observation = await store.observe(stations)
        dark_after_ms = int(realtime_settings.KDS_DARK_STATION_SECONDS * 1000)
        changes: list[Change] = []
        alerts: list[tuple[Alert, dict[str, Any]] | None] = []
        for seen in observation.seen:
            old = seen.state
            decision = decide(
                old,
                screens=seen.screens,
                active=seen.station.active,
                now_ms=observation.now_ms,
                dark_after_ms=dark_after_ms,
            )
            if decision.state == old:
                continue
            changes.append(Change(seen.station, seen.raw_state, decision.state.to_json() if decision.state else None))
            alerts.append(
                (decision.alert, alert_data(seen.station, decision.dark_since_ms, observation.now_ms))
                if decision.alert is not None and decision.dark_since_ms is not None
                else None
            )
        published: list[tuple[Alert, dict[str, Any]]] = []
        for change, won, alert in zip(changes, await store.apply(changes), alerts, strict=True):
            if won and alert is not None:  # only the process whose compare-and-set took the transition tells
                await self._publish(change.station, *alert)
                published.append(alert)
        return published

    async def _publish(self, station: StationRef, alert: Alert, data: dict[str, Any]) -> None:
        from realtime.publishing import apublish  # late: publishing is heavier than the heartbeat needs at import

        loop = asyncio.get_running_loop()
        managers = await loop.run_in_executor(_database, load_manager_ids, station.location_id)
        logger.info("%s at %s: %s, to %d managers", station.name, station.location_id, alert.value, len(managers))
        for user_id in managers:
            try:
                await apublish("notifications", alert.value, user_id=user_id, data=data, source="python")
            except Exception as exc:
                logger.warning("%s to %s not published (%s: %s)", alert.value, user_id, type(exc).__name__, exc)

    async def run_check(self) -> None:
        """``check``, logging a failure once per outage (the heartbeat runs the next one on time)."""
        try:
            await self.check()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if shared_redis.is_outage(exc):
                metrics.record_redis_error("stations")
            self.outage.failed(exc)
        else:
            self.outage.succeeded()
