"""How many connections each user has open, across every gateway process, for the per-user limit.

Entries expire like presence members (``PRESENCE_TTL_SECONDS``, renewed by each process's heartbeat), so the
connections of a process that died stop counting within that bound. In memory without Redis.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any, Protocol

from django.conf import settings

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
    def __init__(self, url: str, prefix: str) -> None:
        self._url = url
        self._prefix = f"{prefix}:conns:"
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]] = (
            weakref.WeakKeyDictionary()
        )

    def _client(self) -> tuple[Any, Any]:
        import redis.asyncio as aioredis

        loop = asyncio.get_running_loop()
        pair = self._clients.get(loop)
        if pair is None:
            client = aioredis.Redis.from_url(self._url, max_connections=20)
            pair = self._clients[loop] = (client, client.register_script(_ADD))
        return pair

    async def add(self, user_id: str, connection_id: str, limit: int) -> bool:
        _, add = self._client()
        ttl_ms = int(float(realtime_settings.PRESENCE_TTL_SECONDS) * 1000)
        ok = await add(keys=[self._prefix + user_id], args=[connection_id, limit, time.time(), _expiry(), ttl_ms])
        return bool(ok)

    async def remove(self, user_id: str, connection_id: str) -> None:
        client, _ = self._client()
        await client.zrem(self._prefix + user_id, connection_id)

    async def renew(self, connections: dict[str, list[str]]) -> None:
        if not connections:
            return
        client, _ = self._client()
        expiry = _expiry()
        ttl_ms = int(float(realtime_settings.PRESENCE_TTL_SECONDS) * 1000)
        async with client.pipeline(transaction=False) as pipe:
            for user_id, connection_ids in connections.items():
                pipe.zadd(self._prefix + user_id, dict.fromkeys(connection_ids, expiry), xx=True)
                pipe.pexpire(self._prefix + user_id, ttl_ms)
            await pipe.execute()


_registry: ConnectionRegistry | None = None


def get_connection_registry() -> ConnectionRegistry:
    global _registry
    if _registry is None:
        url = getattr(settings, "REDIS_URL", "")
        _registry = RedisConnections(url, settings.REDIS_PREFIX) if url else MemoryConnections()
    return _registry


def reset_connection_registry() -> None:
    global _registry
    _registry = None
