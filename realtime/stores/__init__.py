"""The gateway's shared state: each store is an interface (a ``Protocol``), a memory backend and a Redis backend.

One rule picks the backend for every store, the same rule that picks the channel layer (``config.settings``): Redis
when ``REDIS_URL`` or ``REDIS_SENTINELS`` is set, so that every process sees the same history, presence, connection
counts and directory as it sees the same layer; memory otherwise, for one process. Each store is a per-process
singleton built on first use; ``reset_stores`` forgets them all (tests switch settings between cases).

- ``history``: each stream's recent events and its ``(seq, epoch)`` position.
- ``presence``: who is present on each presence stream, and the keeper that announces joins and leaves.
- ``connections``: how many connections each user has open, for the per-user limit.
- ``live``: the live-connections directory (the admin's view) and the tracker that renews it.
- ``liveness``: each process's liveness, to which presence entries and connection counts are tied.
- ``access_cache``: a short-lived, per-process memo of publisher authorization (memory only, by design).
- ``redis_client``: the per-event-loop Redis client and Lua scripts the Redis backends share.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from realtime.stores import redis_client

Store = TypeVar("Store")


def uses_redis() -> bool:
    """The one backend choice: Redis when the deployment has one, exactly when the channel layer does."""
    return redis_client.redis_configured()


def key_prefix() -> str:
    """What every Redis backend's key names start with (``REDIS_PREFIX``)."""
    return redis_client.key_prefix()


class Singleton(Generic[Store]):
    """A process's one instance of a store, built by the one backend rule on first use."""

    def __init__(self, memory: Callable[[], Store], redis: Callable[[str], Store]) -> None:
        self._memory = memory
        self._redis = redis
        self._built: Store | None = None

    def get(self) -> Store:
        if self._built is None:
            self._built = self._redis(key_prefix()) if uses_redis() else self._memory()
        return self._built

    def reset(self) -> None:
        self._built = None


class PerLoop(Generic[Store]):
    """One instance per event loop, for what holds loop-bound state (tasks, redis-py clients); gone with its loop."""

    def __init__(self, build: Callable[[], Store]) -> None:
        self._build = build
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Store] = weakref.WeakKeyDictionary()

    def get(self) -> Store:
        loop = asyncio.get_running_loop()
        found = self._by_loop.get(loop)
        if found is None:
            found = self._by_loop[loop] = self._build()
        return found


def reset_stores() -> None:
    """Forget every store's singleton and the access memo; the next use builds them again from settings."""
    from realtime.stores import access_cache, connections, history, live, liveness, presence  # late: they import us

    history.reset_history()
    presence.reset_presence_store()
    connections.reset_connection_counts()
    live.reset_directory()
    liveness.reset_liveness()
    access_cache.forget(None)
