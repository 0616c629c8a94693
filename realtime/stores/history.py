"""Per-stream sequence numbers and a bounded history of recent events, for resume after a reconnect.

Every published event is appended here before it is sent, and gets the next ``seq`` of its stream. A stream's
``epoch`` names one unbroken run of sequence numbers: when the history is lost (Redis restarted, or the embedded
process restarted) the epoch changes, so a client holding an old position learns that its gap cannot be filled.

With ``REDIS_URL`` set the history is a Redis Stream per stream (entry id ``<seq>-1``), appended by one Lua script
so that seq assignment and storage are atomic across every publishing process. Without Redis it lives in this
process's memory behind the same interface.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from realtime.conf import realtime_settings
from realtime.stores import Singleton
from realtime.stores import redis_client as shared_redis
from realtime.streams import StreamPosition


@dataclass(frozen=True)
class Replay:
    """What a resume gets: the current epoch, the stored events after a position, and whether they fill the gap."""

    epoch: str
    last_seq: int
    events: list[tuple[int, str]]  # (seq, record JSON)
    covered: bool


def judge_coverage(*, epoch: str, last_seq: int, after: int, client_epoch: str | None, first_seq: int | None) -> bool:
    """True when the history holds every event after ``after`` in the client's epoch."""
    if client_epoch is not None and client_epoch != epoch:
        return False
    if after > last_seq:
        return False
    if after == last_seq:
        return True
    return first_seq == after + 1


class HistoryStore(Protocol):
    """Each stream's recent events and its position; shared by every process in Redis, one process's in memory.

    - ``append``: atomic (one Lua script, or one lock): the seq is the stream's next, never reused within its epoch,
      and every process sees the event at that seq. Not idempotent: appending the same record twice stores it twice.
      A stream without history (new, expired, or Redis lost it) starts a new epoch at seq 1.
    - ``replay``: read only; epoch, last seq and events are read together (one transaction, or one lock), so the
      answer is a consistent snapshot. ``covered`` is False when the events after ``after`` are not all still held
      (trimmed, expired, other epoch, or more than ``HISTORY_REPLAY_MAX_EVENTS``); then no events are returned.
    - ``position``: read only, idempotent; seq 0 and no epoch for a stream without history in Redis.
    """

    async def append(self, stream: str, record: str) -> StreamPosition:
        """Store ``record`` as the stream's next event, atomically; return the position it was given."""

    async def replay(self, stream: str, after: int, client_epoch: str | None) -> Replay: ...

    async def position(self, stream: str) -> StreamPosition:
        """Where the stream stands now (seq 0 and no epoch when it has no history)."""


def _new_epoch() -> str:
    return secrets.token_hex(4)


class MemoryHistory:
    """One process's history: a bounded deque per stream, guarded for publishers on other threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epoch = _new_epoch()  # a process restart starts a new epoch for every stream
        self._seq: dict[str, int] = {}
        self._events: dict[str, deque[tuple[int, float, str]]] = {}

    async def append(self, stream: str, record: str) -> StreamPosition:
        with self._lock:
            seq = self._seq.get(stream, 0) + 1
            self._seq[stream] = seq
            events = self._events.get(stream)
            if events is None:
                events = self._events[stream] = deque(maxlen=realtime_settings.HISTORY_MAX_EVENTS)
            events.append((seq, time.time(), record))
        return StreamPosition(seq, self._epoch)

    async def position(self, stream: str) -> StreamPosition:
        with self._lock:
            return StreamPosition(self._seq.get(stream, 0), self._epoch)

    async def replay(self, stream: str, after: int, client_epoch: str | None) -> Replay:
        oldest = time.time() - realtime_settings.HISTORY_TTL_SECONDS
        limit = realtime_settings.HISTORY_REPLAY_MAX_EVENTS
        with self._lock:
            last_seq = self._seq.get(stream, 0)
            kept = [(seq, rec) for seq, ts, rec in self._events.get(stream, ()) if seq > after and ts >= oldest]
        first = kept[0][0] if kept else None
        covered = (
            judge_coverage(
                epoch=self._epoch, last_seq=last_seq, after=after, client_epoch=client_epoch, first_seq=first
            )
            and len(kept) <= limit
        )
        return Replay(self._epoch, last_seq, kept[:limit] if covered else [], covered)


# KEYS: seq, stream, epoch. ARGV: max events, ttl seconds, epoch candidate, record, now (ms).
_APPEND_SCRIPT = """
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = ARGV[3]
  redis.call('SET', KEYS[3], epoch)
  redis.call('DEL', KEYS[1], KEYS[2])
end
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], seq .. '-1', 'r', ARGV[4], 't', ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[2] * 1000)
return {seq, epoch}
"""


class RedisHistory:
    """History in Redis Streams, shared by every gateway process."""

    def __init__(self, prefix: str = "rtgw") -> None:
        self.key_prefix = f"{prefix}:hist:"

    def _keys(self, stream: str) -> tuple[str, str, str]:
        base = f"{self.key_prefix}{{{stream}}}"  # one hash slot per stream
        return f"{base}:seq", f"{base}:events", f"{base}:epoch"

    async def append(self, stream: str, record: str) -> StreamPosition:
        seq, epoch = await shared_redis.script(_APPEND_SCRIPT)(
            keys=self._keys(stream),
            args=[
                realtime_settings.HISTORY_MAX_EVENTS,
                int(realtime_settings.HISTORY_TTL_SECONDS),
                _new_epoch(),
                record,
                int(time.time() * 1000),
            ],
        )
        return StreamPosition(int(seq), epoch.decode() if isinstance(epoch, bytes) else str(epoch))

    async def position(self, stream: str) -> StreamPosition:
        seq_key, _, epoch_key = self._keys(stream)
        epoch, seq = await shared_redis.client().mget(epoch_key, seq_key)
        if epoch is None:
            return StreamPosition(0, "")
        return StreamPosition(int(seq or 0), epoch.decode())

    async def replay(self, stream: str, after: int, client_epoch: str | None) -> Replay:
        seq_key, events_key, epoch_key = self._keys(stream)
        limit = realtime_settings.HISTORY_REPLAY_MAX_EVENTS
        async with shared_redis.client().pipeline(transaction=True) as pipe:
            pipe.mget(epoch_key, seq_key)
            pipe.xrange(events_key, min=f"{after + 1}-0", max="+", count=limit + 1)
            (epoch_raw, seq_raw), entries = await pipe.execute()
        epoch = epoch_raw.decode() if epoch_raw else ""
        last_seq = int(seq_raw or 0)
        oldest_ms = (time.time() - realtime_settings.HISTORY_TTL_SECONDS) * 1000
        kept = [
            (int(entry_id.split(b"-")[0]), fields[b"r"].decode())
            for entry_id, fields in entries
            if int(fields[b"t"]) >= oldest_ms
        ]
        first = kept[0][0] if kept else None
        covered = (
            bool(epoch)
            and judge_coverage(epoch=epoch, last_seq=last_seq, after=after, client_epoch=client_epoch, first_seq=first)
            and len(kept) <= limit
        )
        return Replay(epoch, last_seq, kept if covered else [], covered)


_store: Singleton[HistoryStore] = Singleton(MemoryHistory, RedisHistory)


def get_history() -> HistoryStore:
    """The process's history store, chosen by ``REDIS_URL``."""
    return _store.get()


def reset_history() -> None:
    """Forget the store (tests switch settings between cases)."""
    _store.reset()


def record_json(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)
