"""Presence: who is connected to a channel at a location, across every gateway process.

Members are connections; the protocol shows users. A user's first connection to join produces ``user_joined``,
their last one to leave (by ``presence_leave``, by closing, or by expiring) produces ``user_left``. Every member
carries an expiry that its process renews on a heartbeat, so the members of a process that died without cleaning
up expire within ``PRESENCE_TTL_SECONDS`` and are swept (by any live process) into ``user_left`` like a normal leave.

With ``REDIS_URL`` set the state is in Redis and every change is one Lua script, so two tabs of one user joining or
leaving at once give exactly one ``user_joined`` and one ``user_left``. Without Redis it lives in memory behind the
same interface.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from channels.layers import get_channel_layer

from realtime import redis as shared_redis
from realtime.conf import realtime_settings
from realtime.groups import group_for_stream
from realtime.protocol import encode

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


class PresenceStore(Protocol):
    async def join(self, key: str, connection_id: str, member: Member, expires_at: float) -> bool: ...

    async def leave(self, key: str, connection_id: str) -> Member | None: ...

    async def members(self, key: str) -> list[Member]: ...

    async def sweep(self, now: float) -> list[tuple[str, Member]]: ...


class MemoryPresence:
    """Presence for one process."""

    def __init__(self) -> None:
        self.conns: dict[str, dict[str, tuple[Member, float]]] = {}

    def _user_count(self, key: str, user_id: str) -> int:
        return sum(1 for member, _ in self.conns.get(key, {}).values() if member.user_id == user_id)

    async def join(self, key: str, connection_id: str, member: Member, expires_at: float) -> bool:
        entries = self.conns.setdefault(key, {})
        if connection_id in entries:
            entries[connection_id] = (entries[connection_id][0], expires_at)
            return False
        first = self._user_count(key, member.user_id) == 0
        entries[connection_id] = (member, expires_at)
        return first

    async def leave(self, key: str, connection_id: str) -> Member | None:
        entries = self.conns.get(key, {})
        found = entries.pop(connection_id, None)
        if not entries:
            self.conns.pop(key, None)
        if found is None:
            return None
        return found[0] if self._user_count(key, found[0].user_id) == 0 else None

    async def members(self, key: str) -> list[Member]:
        now = time.time()
        return [m for m, exp in self.conns.get(key, {}).values() if exp >= now]

    async def sweep(self, now: float) -> list[tuple[str, Member]]:
        left = []
        for key, entries in list(self.conns.items()):
            for connection_id, (_, exp) in list(entries.items()):
                if exp < now:
                    gone = await self.leave(key, connection_id)
                    if gone is not None:
                        left.append((key, gone))
        return left


# KEYS: conns hash, expiry zset, users hash, key registry set. ARGV: connection id, member json, user id, expiry, key
_JOIN = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[5])
return redis.call('HINCRBY', KEYS[3], ARGV[3], 1) == 1 and 1 or 0
"""


def _leave_script(ids: str) -> str:
    """Lua that leaves the connections in ``ids`` and returns the members whose user has no connection left."""
    return f"""
local ids = {ids}
local left = {{}}
for i = 1, #ids do
  local payload = redis.call('HGET', KEYS[1], ids[i])
  if payload then
    redis.call('HDEL', KEYS[1], ids[i])
    redis.call('ZREM', KEYS[2], ids[i])
    local user = cjson.decode(payload)['user_id']
    if redis.call('HINCRBY', KEYS[3], user, -1) <= 0 then
      redis.call('HDEL', KEYS[3], user)
      table.insert(left, payload)
    end
  end
end
return left
"""


# KEYS: conns, expiry, users. ARGV: connection ids (leave) or now (sweep: every connection expired before now).
_LEAVE = _leave_script("ARGV")
_SWEEP = _leave_script("redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])")


class RedisPresence:
    """Presence in Redis, shared by every gateway process."""

    def __init__(self, prefix: str = "rtgw") -> None:
        self.key_prefix = f"{prefix}:pres:"
        self.registry = f"{prefix}:pres:keys"

    def _keys(self, key: str) -> list[str]:
        base = f"{self.key_prefix}{{{key}}}"
        return [f"{base}:conns", f"{base}:exp", f"{base}:users"]

    async def join(self, key: str, connection_id: str, member: Member, expires_at: float) -> bool:
        first = await shared_redis.script(_JOIN)(
            keys=[*self._keys(key), self.registry],
            args=[connection_id, member.to_json(), member.user_id, expires_at, key],
        )
        return bool(first)

    async def leave(self, key: str, connection_id: str) -> Member | None:
        left = await shared_redis.script(_LEAVE)(keys=self._keys(key), args=[connection_id])
        return Member.from_json(left[0]) if left else None

    async def members(self, key: str) -> list[Member]:
        conns, exp, _ = self._keys(key)
        client = shared_redis.client()
        async with client.pipeline(transaction=True) as pipe:
            pipe.hgetall(conns)
            pipe.zrangebyscore(exp, time.time(), "+inf")
            entries, alive = await pipe.execute()
        live = set(alive)
        return [Member.from_json(raw) for conn_id, raw in entries.items() if conn_id in live]

    async def sweep(self, now: float) -> list[tuple[str, Member]]:
        client = shared_redis.client()
        left: list[tuple[str, Member]] = []
        for raw_key in await client.smembers(self.registry):
            key = raw_key.decode()
            for payload in await shared_redis.script(_SWEEP)(keys=self._keys(key), args=[now]):
                left.append((key, Member.from_json(payload)))
            if not await client.exists(self._keys(key)[0]):
                await client.srem(self.registry, key)
        return left


_store: PresenceStore | None = None


def get_presence_store() -> PresenceStore:
    global _store
    if _store is None:
        _store = RedisPresence(shared_redis.key_prefix()) if shared_redis.redis_configured() else MemoryPresence()
    return _store


def reset_presence_store() -> None:
    global _store
    _store = None


def presence_frame(event: str, key: str, member: Member) -> str:
    channel, _, location_id = key.partition(":")
    return encode(
        {"type": "presence", "event": event, "channel": channel, "location_id": location_id, "data": member.as_wire()}
    )


async def announce(event: str, key: str, member: Member) -> None:
    """Send a presence event to every connection subscribed or joined at ``key``, on every process."""
    group = group_for_stream(key)
    await get_channel_layer().group_send(
        group, {"type": "rt.presence", "group": group, "frame": presence_frame(event, key, member)}
    )


def expiry_from_now() -> float:
    return time.time() + float(realtime_settings.PRESENCE_TTL_SECONDS)


async def ajoin(key: str, connection_id: str, member: Member) -> None:
    if await get_presence_store().join(key, connection_id, member, expiry_from_now()):
        await announce("user_joined", key, member)


async def aleave(key: str, connection_id: str) -> None:
    gone = await get_presence_store().leave(key, connection_id)
    if gone is not None:
        await announce("user_left", key, gone)


async def alist(key: str) -> list[dict[str, Any]]:
    return list_users(await get_presence_store().members(key))


class PresenceKeeper:
    """This process's share of presence upkeep: keep its members alive, sweep anybody's expired members.

    ``beat`` runs on the process heartbeat (``realtime.hub``). It re-joins rather than merely renews, so members
    come back on their own after the Redis state was lost (a restart), announced with ``user_joined`` again.
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

    async def beat(self) -> None:
        for connection_id, members in list(self.local.items()):
            for key, member in list(members.items()):
                await ajoin(key, connection_id, member)
        for key, member in await get_presence_store().sweep(time.time()):
            await announce("user_left", key, member)


_keepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PresenceKeeper] = weakref.WeakKeyDictionary()


def get_keeper() -> PresenceKeeper:
    loop = asyncio.get_running_loop()
    keeper = _keepers.get(loop)
    if keeper is None:
        keeper = _keepers[loop] = PresenceKeeper()
    return keeper
