"""How many connections each user has open, across every gateway process, for the per-user limit.

Entries expire like presence members (``PRESENCE_TTL_SECONDS``, renewed by each process's heartbeat), so the
connections of a process that died stop counting within that bound. In memory without Redis.
"""

from __future__ import annotations

import time
from typing import Protocol

from realtime import redis as shared_redis
from realtime.conf import realtime_settings


class ConnectionRegistry(Protocol):
    async def add(self, user_id: str, connection_id: str, limit: int) -> bool: ...

    async def remove(self, user_id: str, connection_id: str) -> None: ...

    async def renew(self, connections: dict[str, list[str]]) -> None: ...


def _expiry() -> float:
    return time.time() + float(realtime_settings.PRESENCE_TTL_SECONDS)


class MemoryConnections:
    def __init__(self) -> None:
        self.by_user: dict[str, set[str]] = {}

    async def add(self, user_id: str, connection_id: str, limit: int) -> bool:
        open_ = self.by_user.setdefault(user_id, set())
        if len(open_) >= limit:
            return False
        open_.add(connection_id)
        return True

    async def remove(self, user_id: str, connection_id: str) -> None:
        open_ = self.by_user.get(user_id)
        if open_ is not None:
            open_.discard(connection_id)
            if not open_:
                del self.by_user[user_id]

    async def renew(self, connections: dict[str, list[str]]) -> None:
        return None


# KEYS: the user's zset. ARGV: connection id, limit, now, expiry, ttl ms.
_ADD = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""


class RedisConnections:
    def __init__(self, prefix: str) -> None:
        self._prefix = f"{prefix}:conns:"

    async def add(self, user_id: str, connection_id: str, limit: int) -> bool:
        add = shared_redis.script(_ADD)
        ttl_ms = int(float(realtime_settings.PRESENCE_TTL_SECONDS) * 1000)
        ok = await add(keys=[self._prefix + user_id], args=[connection_id, limit, time.time(), _expiry(), ttl_ms])
        return bool(ok)

    async def remove(self, user_id: str, connection_id: str) -> None:
        await shared_redis.client().zrem(self._prefix + user_id, connection_id)

    async def renew(self, connections: dict[str, list[str]]) -> None:
        if not connections:
            return
        client = shared_redis.client()
        expiry = _expiry()
        ttl_ms = int(float(realtime_settings.PRESENCE_TTL_SECONDS) * 1000)
        async with client.pipeline(transaction=False) as pipe:
            for user_id, connection_ids in connections.items():
                # Not XX: re-adding restores the counts after Redis lost them (a restart).
                pipe.zadd(self._prefix + user_id, dict.fromkeys(connection_ids, expiry))
                pipe.pexpire(self._prefix + user_id, ttl_ms)
            await pipe.execute()


_registry: ConnectionRegistry | None = None


def get_connection_registry() -> ConnectionRegistry:
    global _registry
    if _registry is None:
        _registry = (
            RedisConnections(shared_redis.key_prefix()) if shared_redis.redis_configured() else MemoryConnections()
        )
    return _registry


def reset_connection_registry() -> None:
    global _registry
    _registry = None
