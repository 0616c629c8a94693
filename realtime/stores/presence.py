"""Presence: who is connected to a channel at a location, across every gateway process.

Members are connections; the protocol shows users. A user's first connection to join produces ``user_joined``,
their last one to leave (by ``presence_leave``, by closing, or with its process) produces ``user_left``.

Members are tied to their process's liveness (``stores.liveness``), not renewed one by one: a member of a process
whose liveness lapsed (``PRESENCE_TTL_SECONDS`` after its last heartbeat, on the Redis server's clock) never counts,
in ``presence_list`` or in deciding ``user_joined``/``user_left``, swept or not; the next sweep by any live process
removes all of that process's members at once and announces ``user_left`` for each user with no member left.

With ``REDIS_URL`` set the state is in Redis and every change is one Lua script, so two tabs of one user joining or
leaving at once give exactly one ``user_joined`` and one ``user_left``. Without Redis it lives in memory behind the
same interface (one process, always live).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from channels.layers import get_channel_layer

from realtime.protocol import encode
from realtime.stores import PerLoop, Singleton
from realtime.stores import redis_client as shared_redis
from realtime.stores.liveness import LUA_LIBRARY, ProcessNotLive, aretry_when_not_live, process_id, procs_key
from realtime.streams import group_for_stream, split_stream

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Member:
    user_id: str
    user_info: dict[str, Any]
    joined_at: str

    def as_wire(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "user_info": self.user_info, "joined_at": self.joined_at}

    @classmethod
    def from_json(cls, raw: str | bytes) -> Member:
        data = json.loads(raw)
        return cls(data["user_id"], data["user_info"], data["joined_at"])

    def to_json(self) -> str:
        return encode(self.as_wire())


def list_users(members: Iterable[Member]) -> list[dict[str, Any]]:
    """One entry per user, with the earliest ``joined_at`` of their connections."""
    earliest: dict[str, Member] = {}
    for member in members:
        seen = earliest.get(member.user_id)
        if seen is None or member.joined_at < seen.joined_at:
            earliest[member.user_id] = member
    return [m.as_wire() for m in sorted(earliest.values(), key=lambda m: (m.joined_at, m.user_id))]


@dataclass(frozen=True)
class Joined:
    """What a join changed: ``first`` means announce ``user_joined``; ``ended`` is a member of a dead process that
    was the user's last one and was removed on the way (announce its ``user_left`` first)."""

    first: bool
    ended: Member | None = None


class PresenceStore(Protocol):
    """Who is present at each presence key, by connection; shared by every process in Redis (tied to each process's
    liveness, ``stores.liveness``), one process's in memory.

    - ``join`` / ``join_many``: each join is atomic per key (one Lua script); idempotent: the same connection joining
      again changes nothing and is not ``first``. ``first`` is true for exactly one join of a user across all
      processes until that user's last live connection leaves.
    - ``leave``: atomic per key; idempotent: leaving twice, or leaving without having joined, returns None. It
      returns the member exactly once across processes, when the user's last live connection at the key left.
    - ``members``: read only; never counts a member of a lapsed process, swept or not.
    """

    async def join(self, key: str, connection_id: str, member: Member) -> Joined:
        """Add the member (idempotent: joining again changes nothing); atomic per key and user.

        Raises ``ProcessNotLive`` when this process's liveness entry is gone or lapsed."""
        ...

    async def join_many(self, entries: Sequence[tuple[str, str, Member]]) -> list[Joined]:
        """``join`` for each entry, in order, in as few round trips as the backend can (re-joining after a loss)."""
        ...

    async def leave(self, key: str, connection_id: str) -> Member | None:
        """Remove the member; return it when its user has no live member left at ``key`` (``user_left``)."""
        ...

    async def members(self, key: str) -> list[Member]:
        """The live members at ``key``: members of lapsed processes never count, swept or not."""
        ...


class MemoryPresence:
    """Presence for one process: every member is live until it leaves."""

    def __init__(self) -> None:
        self.conns: dict[str, dict[str, Member]] = {}

    def _user_count(self, key: str, user_id: str) -> int:
        return sum(1 for member in self.conns.get(key, {}).values() if member.user_id == user_id)

    async def join(self, key: str, connection_id: str, member: Member) -> Joined:
        entries = self.conns.setdefault(key, {})
        if connection_id in entries:
            return Joined(False)
        first = self._user_count(key, member.user_id) == 0
        entries[connection_id] = member
        return Joined(first)

    async def join_many(self, entries: Sequence[tuple[str, str, Member]]) -> list[Joined]:
        return [await self.join(key, connection_id, member) for key, connection_id, member in entries]

    async def leave(self, key: str, connection_id: str) -> Member | None:
        entries = self.conns.get(key, {})
        found = entries.pop(connection_id, None)
        if not entries:
            self.conns.pop(key, None)
        if found is None:
            return None
        return found if self._user_count(key, found.user_id) == 0 else None

    async def members(self, key: str) -> list[Member]:
        return list(self.conns.get(key, {}).values())


# Join one member: -1 when this process is not live, 0 (not the user's first), 1; and the payload of a dead
# process's member that was the user's last one and went on the way (or false).
_JOIN_FUNCTION = r"""
local function pres_join(key, conn, payload, user, me)
  if not is_live(me) then return -1, false end
  local base = pres_base(key)
  if redis.call('HEXISTS', base .. ':m', conn) == 1 then return 0, false end
  local live, removed = pres_purge_user(key, user)
  redis.call('HSET', base .. ':m', conn, payload)
  redis.call('SADD', base .. ':u:' .. user, conn)
  redis.call('SADD', held(me), 'm\n' .. key .. '\n' .. conn)
  if live > 0 then return 0, false end
  return 1, removed
end
"""

# KEYS: procs. ARGV: prefix, this process, then (key, connection id, member json with "proc", user id) per member.
# Returns {code, ended payload or false} per member, flattened.
_JOIN = (
    LUA_LIBRARY
    + _JOIN_FUNCTION
    + r"""
local out = {}
for i = 3, #ARGV, 4 do
  local code, removed = pres_join(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[2])
  table.insert(out, code)
  table.insert(out, removed or false)
end
return out
"""
)
JOIN_BATCH = 200
"""Members joined per script when a process joins everything again: fast, yet no long block of Redis."""

# KEYS: procs. ARGV: prefix, key, connection id. Returns the payload when its user left, else false.
_LEAVE = LUA_LIBRARY + "\nreturn pres_leave(ARGV[2], ARGV[3]) or false\n"

# KEYS: procs. ARGV: prefix, key. Returns the payloads of the live members.
_MEMBERS = (
    LUA_LIBRARY
    + r"""
local out = {}
local flat = redis.call('HGETALL', pres_base(ARGV[2]) .. ':m')
for i = 2, #flat, 2 do
  if is_live(cjson.decode(flat[i])['proc']) then table.insert(out, flat[i]) end
end
return out
"""
)


class RedisPresence:
    """Presence in Redis, shared by every gateway process; each member is tied to its process's liveness."""

    def __init__(self, prefix: str = "rtgw", process: str | None = None) -> None:
        self.prefix = prefix
        self.process = process

    @property
    def procs_key(self) -> str:
        return procs_key(self.prefix)

    async def join(self, key: str, connection_id: str, member: Member) -> Joined:
        return (await self.join_many([(key, connection_id, member)]))[0]

    async def join_many(self, entries: Sequence[tuple[str, str, Member]]) -> list[Joined]:
        me = self.process or process_id()
        args: list[str] = [self.prefix, me]
        for key, connection_id, member in entries:
            args += [key, connection_id, encode({**member.as_wire(), "proc": me}), member.user_id]
        flat = await shared_redis.script(_JOIN)(keys=[self.procs_key], args=args)
        if any(code == -1 for code in flat[::2]):
            raise ProcessNotLive(me)
        return [
            Joined(code == 1, Member.from_json(ended) if ended else None)
            for code, ended in zip(flat[::2], flat[1::2], strict=True)
        ]

    async def leave(self, key: str, connection_id: str) -> Member | None:
        left = await shared_redis.script(_LEAVE)(keys=[self.procs_key], args=[self.prefix, key, connection_id])
        return Member.from_json(left) if left else None

    async def members(self, key: str) -> list[Member]:
        payloads = await shared_redis.script(_MEMBERS)(keys=[self.procs_key], args=[self.prefix, key])
        return [Member.from_json(raw) for raw in payloads]


_store: Singleton[PresenceStore] = Singleton(MemoryPresence, RedisPresence)


def get_presence_store() -> PresenceStore:
    return _store.get()


def reset_presence_store() -> None:
    _store.reset()


def presence_frame(event: str, key: str, member: Member) -> str:
    channel, location_id = split_stream(key)
    return encode(
        {"type": "presence", "event": event, "channel": channel, "location_id": location_id, "data": member.as_wire()}
    )


async def announce(event: str, key: str, member: Member) -> None:
    """Send a presence event to every connection subscribed or joined at ``key``, on every process."""
    group = group_for_stream(key)
    await get_channel_layer().group_send(
        group, {"type": "rt.presence", "group": group, "frame": presence_frame(event, key, member)}
    )


async def _announce_join(key: str, member: Member, joined: Joined) -> None:
    if joined.ended is not None:
        await announce("user_left", key, joined.ended)
    if joined.first:
        await announce("user_joined", key, member)


async def ajoin(key: str, connection_id: str, member: Member) -> None:
    """Join and announce; a process that finds itself not live recovers (re-joining all it holds) first."""
    store = get_presence_store()
    joined = await aretry_when_not_live(lambda: store.join(key, connection_id, member))
    await _announce_join(key, member, joined)


async def aleave(key: str, connection_id: str) -> None:
    gone = await get_presence_store().leave(key, connection_id)
    if gone is not None:
        await announce("user_left", key, gone)


async def alist(key: str) -> list[dict[str, Any]]:
    return list_users(await get_presence_store().members(key))


class PresenceKeeper:
    """What this process (event loop) holds in presence, to join again after its liveness was lost.

    The heartbeat (``realtime.heartbeat``) keeps the members alive with one liveness entry; only when that entry
    was lost (Redis restarted, or the process was cut off longer than the lapse and swept) does ``rejoin_all`` go
    through the members, announcing ``user_joined`` again where a user had been removed.
    """

    def __init__(self) -> None:
        self.local: dict[str, dict[str, Member]] = {}  # connection id -> presence key -> member

    def track(self, connection_id: str, key: str, member: Member) -> None:
        self.local.setdefault(connection_id, {})[key] = member

    def untrack(self, connection_id: str, key: str) -> None:
        keys = self.local.get(connection_id)
        if keys is not None:
            keys.pop(key, None)
            if not keys:
                del self.local[connection_id]

    async def rejoin_all(self) -> int:
        """Join every tracked member again, in batches (no recovery: the caller just beat); return how many."""
        store = get_presence_store()
        entries = [(key, conn, member) for conn, members in list(self.local.items()) for key, member in members.items()]
        for start in range(0, len(entries), JOIN_BATCH):
            batch = entries[start : start + JOIN_BATCH]
            for (key, _, member), joined in zip(batch, await store.join_many(batch), strict=True):
                await _announce_join(key, member, joined)
        return len(entries)


_keepers: PerLoop[PresenceKeeper] = PerLoop(PresenceKeeper)


def get_keeper() -> PresenceKeeper:
    return _keepers.get()
