"""Redis clients for the gateway's shared state (history, presence, connection counts), one per event loop.

Configured by the same settings as the channel layer: ``REDIS_URL``, or ``REDIS_SENTINELS`` with
``REDIS_SENTINEL_MASTER`` for a Sentinel-managed primary. Key names carry ``REDIS_PREFIX``.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from django.conf import settings

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
_scripts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = weakref.WeakKeyDictionary()


def is_outage(exc: BaseException) -> bool:
    """True for the errors of an unreachable Redis (or socket), which clients should hear as ``unavailable``."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError)


def redis_configured() -> bool:
    return bool(getattr(settings, "REDIS_URL", "") or getattr(settings, "REDIS_SENTINELS", []))


def key_prefix() -> str:
    return str(getattr(settings, "REDIS_PREFIX", "rtgw"))


def _connect() -> Any:
    import redis.asyncio as aioredis
    from redis.asyncio.sentinel import Sentinel

    if settings.REDIS_SENTINELS:
        return Sentinel(settings.REDIS_SENTINEL_HOSTS, socket_timeout=5).master_for(
            settings.REDIS_SENTINEL_MASTER, max_connections=100
        )
    # Blocking: past 100 commands in flight (a reconnect storm) a command waits for a connection instead of
    # failing at once with "Too many connections", which clients would hear as ``unavailable`` (1013).
    pool = aioredis.BlockingConnectionPool.from_url(settings.REDIS_URL, max_connections=100, timeout=5)
    return aioredis.Redis(connection_pool=pool)


def client() -> Any:
    """This event loop's client (redis-py clients are bound to the loop that created them)."""
    loop = asyncio.get_running_loop()
    found = _clients.get(loop)
    if found is None:
        found = _clients[loop] = _connect()
        _scripts[loop] = {}
    return found


def script(source: str) -> Any:
    """A registered Lua script on this loop's client (EVALSHA, loaded on first use)."""
    registered = _scripts.setdefault(asyncio.get_running_loop(), {})
    found = registered.get(source)
    if found is None:
        found = registered[source] = client().register_script(source)
    return found
