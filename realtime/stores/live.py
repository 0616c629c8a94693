"""The live-connections directory: every open connection of every process, for the admin's "Live connections" page.

Each process owns one entry of the directory: with ``REDIS_URL`` a Redis hash ``<prefix>:live:<process>`` mapping
a connection id to its description (JSON), plus its id in the index ``<prefix>:live:processes`` scored by expiry.
Connect, subscribe, unsubscribe, presence changes and disconnect mark the connection dirty; one writer task per
process writes the dirty ones in one pipeline (so a burst of subscribes is one round trip, and writes of one
connection never overtake each other). The heartbeat refreshes the hash's TTL and the index score, two commands
whatever the number of connections, so the entries of a process that died vanish with its key within
``PRESENCE_TTL_SECONDS``. Without Redis the directory is this process's memory.

    {"connection_id": "conn-...", "user_id": "user-sarah", "username": "sarah", "process": "web1:4242:9f3a",
     "since": "2026-12-02T06:20:00.000Z", "address": "10.0.0.7", "user_agent": "Mozilla/5.0 ...",
     "subscriptions": [{"id": "sub-...", "channel": "orders", "params": {...}, "streams": ["orders:loc-xyz789"]}],
     "presence": ["orders:loc-xyz789"]}

Operators disconnect a connection, or all of a user's, with ``request_disconnect``: a control message every hub
hears (``rt.disconnect``); the process holding the connection closes it with 4000 after an error frame that
carries the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from realtime import metrics
from realtime.conf import realtime_settings
from realtime.protocol import encode, now_iso
from realtime.stores import PerLoop, Singleton
from realtime.stores import redis_client as shared_redis

logger = logging.getLogger(__name__)
DISCONNECT_REASON_MAX_CHARS = 200


@dataclass(frozen=True)
class LiveConnection:
    connection_id: str
    user_id: str
    username: str
    process: str
    since: str
    address: str
    user_agent: str
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    presence: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return encode(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> LiveConnection:
        return cls(**json.loads(raw))

    @property
    def streams(self) -> set[str]:
        """Every stream this connection reads or is present at (``channel:location``)."""
        return {s for sub in self.subscriptions for s in sub["streams"]} | set(self.presence)


class Connection(Protocol):
    """What the directory reads of a connection (the consumer)."""

    connection_id: str
    user_id: str
    scope: dict[str, Any]
    state: Any
    presence_keys: set[str]
    connected_at: str

    @property
    def user(self) -> Any: ...


def describe(connection: Connection, process: str) -> LiveConnection:
    headers = dict(connection.scope.get("headers") or [])
    client = connection.scope.get("client") or ("", 0)
    return LiveConnection(
        connection_id=connection.connection_id,
        user_id=connection.user_id,
        username=str(getattr(connection.user, "username", "")),
        process=process,
        since=connection.connected_at,
        address=str(client[0] or ""),
        user_agent=headers.get(b"user-agent", b"").decode("latin-1")[:200],
        subscriptions=[
            {"id": s.id, "channel": s.spec.name, "params": s.params, "streams": list(s.streams)}
            for s in connection.state.subscriptions.values()
        ],
        presence=sorted(connection.presence_keys),
    )


# Stores -------------------------------------------------------------------------------------------------------------


class DirectoryStore(Protocol):
    """The live-connections directory (the admin's view), one entry per process; shared in Redis, one process's in
    memory. An entry lives ``PRESENCE_TTL_SECONDS`` unless renewed.

    - ``write``: atomic (one transaction): readers see the entries before or after, never half. Idempotent: writing
      the same entries again leaves the same directory.
    - ``renew``: idempotent; only extends the entry's life, and says False when the entry is already gone.
    - ``processes``: read only (apart from dropping lapsed processes from the index); lapsed processes never appear.
    """

    async def write(self, process: str, entries: Mapping[str, str | None], *, replace: bool = False) -> None:
        """Set (JSON) or delete (None) entries of ``process``, atomically; ``replace`` drops all others first."""

    async def renew(self, process: str) -> bool:
        """Keep ``process``'s entry alive one more TTL; False when the store lost it (rewrite it whole)."""

    async def processes(self) -> dict[str, list[LiveConnection]]:
        """The live processes and their connections."""


def _ttl_seconds() -> float:
    return realtime_settings.PRESENCE_TTL_SECONDS


class MemoryDirectory:
    def __init__(self) -> None:
        self.by_process: dict[str, dict[str, str]] = {}

    async def write(self, process: str, entries: Mapping[str, str | None], *, replace: bool = False) -> None:
        current = {} if replace else dict(self.by_process.get(process, {}))
        for connection_id, raw in entries.items():
            if raw is None:
                current.pop(connection_id, None)
            else:
                current[connection_id] = raw
        self.by_process[process] = current  # one assignment: a reader on another thread sees before or after

    async def renew(self, process: str) -> bool:
        return True

    async def processes(self) -> dict[str, list[LiveConnection]]:
        snapshot = dict(self.by_process)
        return {p: [LiveConnection.from_json(raw) for raw in dict(entries).values()] for p, entries in snapshot.items()}


class RedisDirectory:
    def __init__(self, prefix: str) -> None:
        self._prefix = f"{prefix}:live:"
        self._index = f"{prefix}:live:processes"

    async def write(self, process: str, entries: Mapping[str, str | None], *, replace: bool = False) -> None:
        key = self._prefix + process
        ttl_ms = int(_ttl_seconds() * 1000)
        removed = [cid for cid, raw in entries.items() if raw is None]
        kept = {cid: raw for cid, raw in entries.items() if raw is not None}
        async with shared_redis.client().pipeline(transaction=True) as pipe:
            if replace:
                pipe.delete(key)
            if removed and not replace:
                pipe.hdel(key, *removed)
            if kept:
                pipe.hset(key, mapping=kept)
                pipe.pexpire(key, ttl_ms)
            pipe.zadd(self._index, {process: time.time() + _ttl_seconds()})
            await pipe.execute()

    async def renew(self, process: str) -> bool:
        async with shared_redis.client().pipeline(transaction=False) as pipe:
            pipe.pexpire(self._prefix + process, int(_ttl_seconds() * 1000))
            pipe.zadd(self._index, {process: time.time() + _ttl_seconds()})
            renewed, _ = await pipe.execute()
        return bool(renewed)

    async def processes(self) -> dict[str, list[LiveConnection]]:
        client = shared_redis.client()
        await client.zremrangebyscore(self._index, "-inf", time.time())
        names = [n.decode() for n in await client.zrange(self._index, 0, -1)]
        if not names:
            return {}
        async with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self._prefix + name)
            found = await pipe.execute()
        return {
            name: [LiveConnection.from_json(raw) for raw in entries.values()]
            for name, entries in zip(names, found, strict=True)
            if entries
        }


_store: Singleton[DirectoryStore] = Singleton(MemoryDirectory, RedisDirectory)


def get_directory() -> DirectoryStore:
    return _store.get()


def reset_directory() -> None:
    _store.reset()


# This process's share -----------------------------------------------------------------------------------------------


def new_process_id() -> str:
    """Host, pid and a short random part (two event loops of one process, or a reused pid, stay apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


class Tracker:
    """This event loop's connections in the directory: dirty ones written by one task, renewed per heartbeat."""

    def __init__(self) -> None:
        self.process = new_process_id()
        self.connections: dict[str, Connection] = {}
        self._dirty: set[str] = set()
        self._writer: asyncio.Task[None] | None = None
        self._lost = False  # a write failed: the next beat rewrites the whole entry

    def touch(self, connection: Connection) -> None:
        """The connection opened or changed (subscriptions, presence): write its description soon."""
        self.connections[connection.connection_id] = connection
        self._mark(connection.connection_id)

    def forget(self, connection_id: str) -> None:
        if self.connections.pop(connection_id, None) is not None:
            self._mark(connection_id)

    def _mark(self, connection_id: str) -> None:
        self._dirty.add(connection_id)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_dirty(), name="realtime-live-writer")

    def _entry(self, connection_id: str) -> str | None:
        connection = self.connections.get(connection_id)
        return None if connection is None else describe(connection, self.process).to_json()

    async def _write_dirty(self) -> None:
        while self._dirty:
            batch, self._dirty = self._dirty, set()
            try:
                await get_directory().write(self.process, {cid: self._entry(cid) for cid in batch})
            except Exception as exc:
                metrics.record_redis_error("directory")
                logger.warning("live directory write failed (%s); rewritten on the next heartbeat", exc)
                self._lost = True
                return

    async def beat(self) -> None:
        """Renew this process's entry (O(1)); rewrite it whole when a write failed or the store lost it."""
        store = get_directory()
        if not self.connections and not self._lost:
            return
        if self._lost or not await store.renew(self.process):
            self._lost = False
            entries = {cid: self._entry(cid) for cid in list(self.connections)}
            try:
                await store.write(self.process, entries, replace=True)
            except Exception:
                self._lost = True
                raise


_trackers: PerLoop[Tracker] = PerLoop(Tracker)


def get_tracker() -> Tracker:
    return _trackers.get()


# Operator actions ---------------------------------------------------------------------------------------------------


def disconnect_message(
    *, connection_ids: Iterable[str] = (), user_ids: Iterable[str] = (), reason: str = ""
) -> dict[str, Any]:
    return {
        "type": "rt.disconnect",
        "connection_ids": sorted(set(connection_ids)),
        "user_ids": sorted(set(user_ids)),
        "reason": reason.strip()[:DISCONNECT_REASON_MAX_CHARS],
        "requested_at": now_iso(),
    }


def disconnect_targets(users: Mapping[str, Iterable[Any]], message: Mapping[str, Any]) -> list[Any]:
    """The local connections a ``rt.disconnect`` names, by user id or connection id (each at most once)."""
    targets: dict[str, Any] = {}
    for user_id in message.get("user_ids") or ():
        for member in users.get(user_id, ()):
            targets[member.connection_id] = member
    wanted = set(message.get("connection_ids") or ())
    if wanted:
        for members in users.values():
            for member in members:
                if member.connection_id in wanted:
                    targets[member.connection_id] = member
    return list(targets.values())


def request_disconnect(*, connection_ids: Iterable[str] = (), user_ids: Iterable[str] = (), reason: str = "") -> None:
    """Close connections wherever they live (sync, for views); they get ``disconnected`` and close 4000."""
    from realtime.publishing import broadcast_control

    broadcast_control(disconnect_message(connection_ids=connection_ids, user_ids=user_ids, reason=reason))


def list_processes() -> dict[str, list[LiveConnection]]:
    """The directory, read from sync code (the admin view)."""
    from realtime.publishing import run_sync

    return run_sync(get_directory().processes)  # type: ignore[no-any-return]
