"""How many connections each user has open, across every gateway process, for the per-user limit.

Each connection is tied to its process's liveness (``stores.liveness``), like presence members: a connection of a
process whose liveness lapsed never counts, and the sweep removes them all with the process. Nothing is renewed per
connection. In memory without Redis.
"""

from __future__ import annotations

from typing import Protocol

from realtime.stores import Singleton
from realtime.stores import redis_client as shared_redis
from realtime.stores.liveness import LUA_LIBRARY, ProcessNotLive, aretry_when_not_live, process_id, procs_key


class ConnectionCounts(Protocol):
    """How many connections each user has open across every process (tied to each process's liveness, in Redis).

    - ``add``: atomic check-and-count (one Lua script): of concurrent adds across processes at most ``limit`` are
      admitted. Idempotent: adding a counted connection again is admitted and counts once.
    - ``remove``: idempotent; removing an unknown connection does nothing.
    - ``restore``: idempotent; counts this process's connections again without a limit (after a liveness loss).
    """

    async def add(self, user_id: str, connection_id: str, limit: int) -> bool:
        """Count the connection unless the user already has ``limit`` live ones; atomic, idempotent."""
        ...

    async def remove(self, user_id: str, connection_id: str) -> None: ...

    async def restore(self) -> None:
        """Count this process's open connections again, after its liveness was lost (no limit applies)."""
        ...


class MemoryConnections:
    def __init__(self) -> None:
        self.by_user: dict[str, set[str]] = {}

    async def add(self, user_id: str, connection_id: str, limit: int) -> bool:
        open_ = self.by_user.setdefault(user_id, set())
        if connection_id not in open_ and len(open_) >= limit:
            return False
        open_.add(connection_id)
        return True

    async def remove(self, user_id: str, connection_id: str) -> None:
        open_ = self.by_user.get(user_id)
        if open_ is not None:
            open_.discard(connection_id)
            if not open_:
                del self.by_user[user_id]

    async def restore(self) -> None:
        return None


# KEYS: procs. ARGV: prefix, user, connection id, limit, this process. Returns -1 (not live), 0 (refused), 1.
_ADD = (
    LUA_LIBRARY
    + r"""
local user, conn, limit, me = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
if not is_live(me) then return -1 end
local hash = conn_key(user)
local flat = redis.call('HGETALL', hash)
local count, present = 0, false
for i = 1, #flat, 2 do
  if flat[i] == conn then
    present = true
  elseif is_live(flat[i + 1]) then
    count = count + 1
  else
    redis.call('HDEL', hash, flat[i])
    redis.call('SREM', held(flat[i + 1]), 'c\n' .. user .. '\n' .. flat[i])
  end
end
if not present and count >= limit then return 0 end
redis.call('HSET', hash, conn, me)
redis.call('SADD', held(me), 'c\n' .. user .. '\n' .. conn)
return 1
"""
)

# KEYS: procs. ARGV: prefix, user, connection id.
_REMOVE = (
    LUA_LIBRARY
    + r"""
local user, conn = ARGV[2], ARGV[3]
local proc = redis.call('HGET', conn_key(user), conn)
if proc then
  redis.call('HDEL', conn_key(user), conn)
  redis.call('SREM', held(proc), 'c\n' .. user .. '\n' .. conn)
end
return 0
"""
)

# KEYS: procs. ARGV: prefix, this process, then user, connection id pairs.
_RESTORE = (
    LUA_LIBRARY
    + r"""
local me = ARGV[2]
for i = 3, #ARGV, 2 do
  redis.call('HSET', conn_key(ARGV[i]), ARGV[i + 1], me)
  redis.call('SADD', held(me), 'c\n' .. ARGV[i] .. '\n' .. ARGV[i + 1])
end
return 0
"""
)
RESTORE_BATCH = 500


class RedisConnections:
    def __init__(self, prefix: str, process: str | None = None) -> None:
        self.prefix = prefix
        self.process = process
        self.local: dict[str, str] = {}  # this process's connections: connection id -> user id

    @property
    def procs_key(self) -> str:
        return procs_key(self.prefix)

    async def add(self, user_id: str, connection_id: str, limit: int) -> bool:
        async def attempt() -> int:
            me = self.process or process_id()
            result = await shared_redis.script(_ADD)(
                keys=[self.procs_key], args=[self.prefix, user_id, connection_id, limit, me]
            )
            if result == -1:
                raise ProcessNotLive(me)
            return int(result)

        admitted = await aretry_when_not_live(attempt) == 1
        if admitted:
            self.local[connection_id] = user_id
        return admitted

    async def remove(self, user_id: str, connection_id: str) -> None:
        self.local.pop(connection_id, None)
        await shared_redis.script(_REMOVE)(keys=[self.procs_key], args=[self.prefix, user_id, connection_id])

    async def restore(self) -> None:
        pairs = [value for conn, user in list(self.local.items()) for value in (user, conn)]
        me = self.process or process_id()
        for start in range(0, len(pairs), 2 * RESTORE_BATCH):
            await shared_redis.script(_RESTORE)(
                keys=[self.procs_key], args=[self.prefix, me, *pairs[start : start + 2 * RESTORE_BATCH]]
            )


_counts: Singleton[ConnectionCounts] = Singleton(MemoryConnections, RedisConnections)


def get_connection_counts() -> ConnectionCounts:
    return _counts.get()


def reset_connection_counts() -> None:
    _counts.reset()
