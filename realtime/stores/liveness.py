"""Process liveness: one entry per gateway process in Redis, and the members and connections tied to it.

Each process has an id (``proc-<pid>-<random>``) and refreshes one score in the ``<prefix>:liveness:procs`` sorted set
every ``PRESENCE_HEARTBEAT_SECONDS``: the Redis server's ``TIME`` plus ``PRESENCE_TTL_SECONDS``. Presence members and
per-user connection counts record the process that holds them, and every script that reads or counts them asks
whether that process is still live, against the Redis server's clock. So a member of a dead process stops counting
the moment its process's score passes, whether or not anything has swept it, and no process clock is ever compared
with another's.

The same heartbeat script sweeps: it removes every lapsed process together with everything it held (listed in
``<prefix>:liveness:held:<proc>``), atomically, and returns the users that left, so exactly one live process announces
each ``user_left``. At rest a beat is one ``EVALSHA`` per process, whatever the number of members.

A process that finds its own entry gone (Redis restarted, or it was cut off longer than the lapse and swept) or
lapsed (cut off, not swept yet: it sweeps itself first) is told ``lost`` and joins everything it holds again.

Key layout (``P`` = ``REDIS_PREFIX``; presence ``K`` = ``<channel>:<location_id>``)::

    P:liveness:procs         zset  proc -> deadline (ms, Redis TIME)
    P:liveness:held:<proc>   set   "m\\n<K>\\n<conn>" (presence member), "c\\n<user>\\n<conn>" (connection)
    P:pres:{K}:m             hash  conn -> member JSON with "proc"
    P:pres:{K}:u:<user>      set   the user's conns at K
    P:conn:<user>            hash  conn -> proc

Scripts touch keys they compute from their arguments; that is fine on one Redis primary (Redis Cluster is not
supported by the channel layer either, docs/deploy.md).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from realtime.conf import realtime_settings
from realtime.stores import Singleton
from realtime.stores import redis_client as shared_redis

T = TypeVar("T")
SWEEP_MAX_PROCESSES = 50
"""Lapsed processes removed per beat at most, so one beat never blocks Redis for long; the rest go next beat."""

_process: tuple[int, str] | None = None


def process_id() -> str:
    """This process's liveness id, made on first use (and again in a forked child, which is another process)."""
    global _process
    pid = os.getpid()
    if _process is None or _process[0] != pid:
        _process = (pid, f"proc-{pid}-{secrets.token_hex(4)}")
    return _process[1]


def procs_key(prefix: str) -> str:
    """The sorted set of process liveness deadlines (KEYS[1] of every script here)."""
    return f"{prefix}:liveness:procs"


def lapse_ms() -> int:
    return max(1, int(realtime_settings.PRESENCE_TTL_SECONDS * 1000))


class ProcessNotLive(Exception):
    """This process's liveness entry is gone or lapsed: beat (which re-joins everything), then try again."""


async def aretry_when_not_live(operation: Callable[[], Awaitable[T]], attempts: int = 3) -> T:
    """Run ``operation``; if this process turns out not to be live, make it live again (a beat) and retry."""
    for _ in range(attempts - 1):
        try:
            return await operation()
        except ProcessNotLive:
            from realtime.heartbeat import arecover  # late: the heartbeat drives presence, which uses this module

            await arecover()
    return await operation()


# Shared by every script. KEYS[1] is always the procs zset and ARGV[1] the key prefix.
LUA_LIBRARY = r"""
local procs = KEYS[1]
local prefix = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local now = now_ms()
local live_cache = {}
local function is_live(proc)
  if not proc then return false end
  local cached = live_cache[proc]
  if cached == nil then
    local score = redis.call('ZSCORE', procs, proc)
    cached = (score and tonumber(score) >= now) or false
    live_cache[proc] = cached
  end
  return cached
end
local function held(proc) return prefix .. ':liveness:held:' .. proc end
local function pres_base(key) return prefix .. ':pres:{' .. key .. '}' end
local function conn_key(user) return prefix .. ':conn:' .. user end

-- Remove one presence member; return its payload and user, or nil.
local function pres_drop(key, conn)
  local base = pres_base(key)
  local payload = redis.call('HGET', base .. ':m', conn)
  if not payload then return nil end
  local member = cjson.decode(payload)
  redis.call('HDEL', base .. ':m', conn)
  redis.call('SREM', base .. ':u:' .. member['user_id'], conn)
  if member['proc'] then redis.call('SREM', held(member['proc']), 'm\n' .. key .. '\n' .. conn) end
  return payload, member['user_id']
end

-- Remove the user's members at key whose process is not live; return how many live ones remain and the payload
-- of one removed member (or false).
local function pres_purge_user(key, user)
  local base = pres_base(key)
  local live, removed = 0, false
  for _, conn in ipairs(redis.call('SMEMBERS', base .. ':u:' .. user)) do
    local payload = redis.call('HGET', base .. ':m', conn)
    if payload and is_live(cjson.decode(payload)['proc']) then
      live = live + 1
    elseif payload then
      removed = pres_drop(key, conn)
    else
      redis.call('SREM', base .. ':u:' .. user, conn)
    end
  end
  return live, removed
end

-- Leave: drop the member; if its user has no live member left there, return the payload (user_left).
local function pres_leave(key, conn)
  local payload, user = pres_drop(key, conn)
  if not payload then return nil end
  local live = pres_purge_user(key, user)
  if live == 0 then return payload end
  return nil
end

-- Remove a process and everything it held; append (key, payload) of each user that left to out.
local function sweep_process(proc, out)
  for _, entry in ipairs(redis.call('SMEMBERS', held(proc))) do
    local kind = string.sub(entry, 1, 1)
    local rest = string.sub(entry, 3)
    local cut = string.find(rest, '\n', 1, true)
    if cut then
      local a, b = string.sub(rest, 1, cut - 1), string.sub(rest, cut + 1)
      if kind == 'm' then
        local payload = pres_leave(a, b)
        if payload then
          table.insert(out, a)
          table.insert(out, payload)
        end
      elseif kind == 'c' then
        redis.call('HDEL', conn_key(a), b)
      end
    end
  end
  redis.call('DEL', held(proc))
  redis.call('ZREM', procs, proc)
  live_cache[proc] = false
end
"""

# ARGV: prefix, this process, lapse ms, max processes to sweep. Returns {lost (0/1), {key, payload, ...}}.
_BEAT = (
    LUA_LIBRARY
    + r"""
local me, lapse, limit = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local left = {}
local own = redis.call('ZSCORE', procs, me)
local lost = 0
if not own then
  lost = 1
elseif tonumber(own) < now then
  lost = 1
  sweep_process(me, left)
end
redis.call('ZADD', procs, now + lapse, me)
live_cache[me] = true
for _, proc in ipairs(redis.call('ZRANGEBYSCORE', procs, '-inf', '(' .. now, 'LIMIT', 0, limit)) do
  sweep_process(proc, left)
end
return {lost, left}
"""
)


@dataclass(frozen=True)
class Beat:
    """What one heartbeat found: whether this process had lost its entry, and the users that left (by sweeping)."""

    lost: bool = False
    left: list[tuple[str, str]] = field(default_factory=list)  # (presence key, member JSON)


class LivenessStore(Protocol):
    """Each process's liveness; in Redis shared by every process and judged by the Redis server's clock alone.

    - ``beat``: atomic (one Lua script): refreshes this process and sweeps lapsed ones with everything they held, so
      each sweep's ``left`` is returned to exactly one process (one ``user_left`` announcement). Safe to run
      concurrently from every process; repeating it only refreshes. In memory nothing lapses and nothing is lost.
    """

    async def beat(self) -> Beat:
        """Refresh this process's liveness and sweep lapsed processes; atomic, safe to run from every process."""
        ...


class MemoryLiveness:
    """One process, always live: nothing lapses, nothing is lost."""

    async def beat(self) -> Beat:
        return Beat()


class RedisLiveness:
    def __init__(self, prefix: str, process: str | None = None) -> None:
        self.prefix = prefix
        self.process = process

    @property
    def procs_key(self) -> str:
        return procs_key(self.prefix)

    async def beat(self) -> Beat:
        lost, flat = await shared_redis.script(_BEAT)(
            keys=[self.procs_key],
            args=[self.prefix, self.process or process_id(), lapse_ms(), SWEEP_MAX_PROCESSES],
        )
        left = [(_text(flat[i]), _text(flat[i + 1])) for i in range(0, len(flat), 2)]
        return Beat(bool(lost), left)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_store: Singleton[LivenessStore] = Singleton(MemoryLiveness, RedisLiveness)


def get_liveness() -> LivenessStore:
    return _store.get()


def reset_liveness() -> None:
    _store.reset()
