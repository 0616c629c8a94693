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
from collections.abc import Sequence
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


@dataclass(frozen=True)
class Entry:
    """One record to append; with a ``key``, a repeat of that key in this stream within the dedup window is not
    appended again (``fingerprint`` tells a true repeat from a different event under the same key)."""

    record: str
    event_id: str
    key: str | None = None
    fingerprint: str = ""


@dataclass(frozen=True)
class Appended:
    """Where an entry is in its stream; ``duplicate``: an earlier entry with its key, whose position this is."""

    seq: int
    epoch: str
    event_id: str
    duplicate: bool = False


@dataclass(frozen=True)
class Announce:
    """What the Redis history script PUBLISHes itself after appending (the channel layer's message for the stream's
    group, msgpack, its position filled in by the script): one round trip instead of an append and a ``group_send``.

    ``head`` starts the ``rt.events`` message up to its list of events; ``entries`` holds, per entry, the packed
    event up to its ``seq`` value and its envelope tail around the epoch and the seq.
    """

    channel: str
    head: bytes
    epoch_key: bytes
    tail_key: bytes
    entries: Sequence[tuple[bytes, str, str, str]]


class KeyConflict(Exception):
    """An entry's key was already used in this stream for a different fingerprint; nothing of the call was appended."""

    def __init__(self, position: int) -> None:
        super().__init__(f"idempotency key of entry {position} was used for a different event")
        self.position = position


StreamAppend = tuple[str, Sequence[Entry], float, "Announce | None"]  # append_many's arguments, per stream


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

    async def append_many(
        self, stream: str, entries: Sequence[Entry], dedup_seconds: float, announce: Announce | None = None
    ) -> list[Appended]: ...

    async def append_streams(self, calls: Sequence[StreamAppend]) -> list[list[Appended] | KeyConflict]: ...

    async def fingerprints(self, keys: Sequence[tuple[str, str]]) -> list[str | None]: ...

    async def replay(self, stream: str, after: int, client_epoch: str | None) -> Replay: ...

    async def position(self, stream: str) -> StreamPosition:
        """Where the stream stands now (seq 0 and no epoch when it has no history)."""

    async def anchor(self, stream: str) -> StreamPosition:
        """``position``, but never without an epoch: a stream with no history gets its epoch now."""


def _new_epoch() -> str:
    return secrets.token_hex(4)


class MemoryHistory:
    """One process's history: a bounded deque per stream, guarded for publishers on other threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epoch = _new_epoch()  # a process restart starts a new epoch for every stream
        self._seq: dict[str, int] = {}
        self._events: dict[str, deque[tuple[int, float, str]]] = {}
        # (stream, key) -> (expires at, fingerprint, what the first entry got), oldest first
        self._keys: dict[tuple[str, str], tuple[float, str, Appended]] = {}

    async def append(self, stream: str, record: str) -> StreamPosition:
        with self._lock:
            return StreamPosition(self._append_locked(stream, record, time.time()), self._epoch)

    def _append_locked(self, stream: str, record: str, now: float) -> int:
        seq = self._seq.get(stream, 0) + 1
        self._seq[stream] = seq
        events = self._events.get(stream)
        if events is None:
            events = self._events[stream] = deque(maxlen=realtime_settings.HISTORY_MAX_EVENTS)
        events.append((seq, now, record))
        return seq

    def _recall_locked(self, stream: str, key: str, now: float) -> tuple[str, Appended] | None:
        while self._keys:  # forget expired keys, oldest first (a shorter window inserted later waits its turn)
            oldest = next(iter(self._keys))
            if self._keys[oldest][0] > now:
                break
            del self._keys[oldest]
        found = self._keys.get((stream, key))
        if found is None or found[0] <= now:
            return None
        return found[1], found[2]

    async def append_many(
        self, stream: str, entries: Sequence[Entry], dedup_seconds: float, announce: Announce | None = None
    ) -> list[Appended]:
        """Append in order, skipping keyed repeats, all in one step under the lock (as the Redis script does)."""
        if announce is not None:
            raise ValueError("the memory history publishes nothing itself")
        now = time.time()
        with self._lock:
            pending: dict[str, str] = {}
            for position, entry in enumerate(entries):
                if entry.key is None or dedup_seconds <= 0:
                    continue
                prior = self._recall_locked(stream, entry.key, now)
                fingerprint = prior[0] if prior is not None else pending.setdefault(entry.key, entry.fingerprint)
                if fingerprint != entry.fingerprint:
                    raise KeyConflict(position)
            results: list[Appended] = []
            for entry in entries:
                keyed = entry.key is not None and dedup_seconds > 0
                prior = self._recall_locked(stream, entry.key, now) if keyed and entry.key is not None else None
                if prior is not None:
                    first = prior[1]
                    results.append(Appended(first.seq, first.epoch, first.event_id, duplicate=True))
                    continue
                appended = Appended(self._append_locked(stream, entry.record, now), self._epoch, entry.event_id)
                if keyed and entry.key is not None:
                    self._keys[(stream, entry.key)] = (now + dedup_seconds, entry.fingerprint, appended)
                results.append(appended)
        return results

    async def append_streams(self, calls: Sequence[StreamAppend]) -> list[list[Appended] | KeyConflict]:
        results: list[list[Appended] | KeyConflict] = []
        for call in calls:
            try:
                results.append(await self.append_many(*call))
            except KeyConflict as clash:
                results.append(clash)
        return results

    async def fingerprints(self, keys: Sequence[tuple[str, str]]) -> list[str | None]:
        now = time.time()
        with self._lock:
            return [found[0] if (found := self._recall_locked(s, k, now)) else None for s, k in keys]

    async def position(self, stream: str) -> StreamPosition:
        with self._lock:
            return StreamPosition(self._seq.get(stream, 0), self._epoch)

    async def anchor(self, stream: str) -> StreamPosition:
        """``position``; this process's epoch covers every stream, also one with no event yet."""
        return await self.position(stream)

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


# KEYS: seq, stream, epoch. ARGV: epoch candidate. A stream without an epoch starts one, as _APPEND_MANY_SCRIPT would.
_ANCHOR_SCRIPT = """
if redis.call('SET', KEYS[3], ARGV[1], 'NX') then
  redis.call('DEL', KEYS[1], KEYS[2])
end
return redis.call('MGET', KEYS[3], KEYS[1])
"""


# KEYS: seq, stream, epoch, then each keyed entry's idempotency key. ARGV: max events, ttl seconds, epoch candidate,
# now (ms), dedup window (ms), entry count, then what to PUBLISH (channel, or "" for nothing; message head; packed
# "epoch" and "tail" keys: see Announce), then per entry: record, its key's index in KEYS after the first three (0:
# none), fingerprint, event id, its packed event up to the seq value, its tail before the epoch, between epoch and
# seq, after the seq. A key's value is "<fingerprint> <seq> <epoch> <event id>". First every key is checked (a clash
# appends nothing: {"!", position}); then entries are appended in order, repeats answered from their key; then the
# new ones are published in one message. Each result is "n|d <seq> <epoch> <event id>" (n: new, d: duplicate).
_APPEND_MANY_SCRIPT = """
local n = tonumber(ARGV[6])
local dedup_ms = tonumber(ARGV[5])
local per, base = 8, 10
local seen = {}
for i = 1, n do
  local at = base + (i - 1) * per
  local k = tonumber(ARGV[at + 2])
  if k > 0 then
    local key = KEYS[3 + k]
    local fp = seen[key]
    if not fp then
      local prior = redis.call('GET', key)
      if prior then fp = string.match(prior, '^(%S+)') else fp = ARGV[at + 3] end
      seen[key] = fp
    end
    if fp ~= ARGV[at + 3] then return {'!', i - 1} end
  end
end
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = ARGV[3]
  redis.call('SET', KEYS[3], epoch)
  redis.call('DEL', KEYS[1], KEYS[2])
end
local out = {}
local recorded = {}
local appended = false
local fresh = {}
for i = 1, n do
  local at = base + (i - 1) * per
  local k = tonumber(ARGV[at + 2])
  local prior = nil
  if k > 0 then
    prior = recorded[KEYS[3 + k]] or redis.call('GET', KEYS[3 + k])
  end
  if prior then
    local _, _, seq, ep, eid = string.find(prior, '^%S+ (%S+) (%S+) (%S+)$')
    out[i] = 'd ' .. seq .. ' ' .. ep .. ' ' .. eid
  else
    local seq = redis.call('INCR', KEYS[1])
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], seq .. '-1', 'r', ARGV[at + 1], 't', ARGV[4])
    appended = true
    if k > 0 then
      local value = ARGV[at + 3] .. ' ' .. seq .. ' ' .. epoch .. ' ' .. ARGV[at + 4]
      redis.call('SET', KEYS[3 + k], value, 'PX', dedup_ms)
      recorded[KEYS[3 + k]] = value
    end
    out[i] = 'n ' .. seq .. ' ' .. epoch .. ' ' .. ARGV[at + 4]
    if ARGV[7] ~= '' then
      fresh[#fresh + 1] = ARGV[at + 5] .. cmsgpack.pack(seq) .. ARGV[9] .. cmsgpack.pack(epoch) .. ARGV[10]
        .. cmsgpack.pack(ARGV[at + 6] .. epoch .. ARGV[at + 7] .. seq .. ARGV[at + 8])
    end
  end
end
if appended then redis.call('PEXPIRE', KEYS[2], ARGV[2] * 1000) end
if #fresh > 0 then
  local count = #fresh
  local header
  if count < 16 then
    header = string.char(144 + count)
  else
    header = string.char(220, math.floor(count / 256), count % 256)
  end
  redis.call('PUBLISH', ARGV[7], ARGV[8] .. header .. table.concat(fresh))
end
return out
"""


class RedisHistory:
    """History in Redis Streams, shared by every gateway process."""

    def __init__(self, prefix: str = "rtgw") -> None:
        self.key_prefix = f"{prefix}:hist:"

    def _keys(self, stream: str) -> tuple[str, str, str]:
        base = f"{self.key_prefix}{{{stream}}}"  # one hash slot per stream
        return f"{base}:seq", f"{base}:events", f"{base}:epoch"

    async def append(self, stream: str, record: str) -> StreamPosition:
        """One unkeyed entry through the batch script (one script appends, whatever the count)."""
        (appended,) = await self.append_many(stream, [Entry(record, event_id="")], dedup_seconds=0)
        return StreamPosition(appended.seq, appended.epoch)

    def _key_of(self, stream: str, key: str) -> str:
        return f"{self.key_prefix}{{{stream}}}:idem:{key}"  # the stream's hash slot, so one script sees both

    async def append_many(
        self, stream: str, entries: Sequence[Entry], dedup_seconds: float, announce: Announce | None = None
    ) -> list[Appended]:
        """Append ``entries`` to one stream in one Lua call (one round trip), keyed repeats skipped atomically, and
        with ``announce`` publish the new ones to the channel layer from the same call."""
        if not entries:
            return []
        keys, args = self._script_call(stream, entries, dedup_seconds, announce)
        return self._parse(await shared_redis.script(_APPEND_MANY_SCRIPT)(keys=keys, args=args))

    async def append_streams(self, calls: Sequence[StreamAppend]) -> list[list[Appended] | KeyConflict]:
        """``append_many`` for several streams in one pipeline: one round trip for all of them (each stream's script
        is atomic on its own; one that clashes appends nothing and is answered with its ``KeyConflict``)."""
        from redis.exceptions import NoScriptError

        script = shared_redis.script(_APPEND_MANY_SCRIPT)
        built = [self._script_call(*call) for call in calls]
        client = shared_redis.client()
        answers: list[Any] = [None] * len(built)
        pending = list(range(len(built)))
        for attempt in (1, 2):
            async with client.pipeline(transaction=False) as pipe:
                for index in pending:
                    keys, args = built[index]
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                replies = await pipe.execute(raise_on_error=False)
            for index, reply in zip(pending, replies, strict=True):
                answers[index] = reply
            pending = [i for i in pending if isinstance(answers[i], NoScriptError)]
            if not pending:
                break
            if attempt == 1:
                await client.script_load(_APPEND_MANY_SCRIPT)  # a restarted or flushed Redis forgot it
        results: list[list[Appended] | KeyConflict] = []
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
            try:
                results.append(self._parse(answer))
            except KeyConflict as clash:
                results.append(clash)
        return results

    def _script_call(
        self, stream: str, entries: Sequence[Entry], dedup_seconds: float, announce: Announce | None
    ) -> tuple[list[str], list[Any]]:
        if announce is not None and len(entries) > 65535:
            raise ValueError("at most 65,535 entries per announced call")
        dedup_ms = int(dedup_seconds * 1000)
        keys: list[str] = list(self._keys(stream))
        key_index: dict[str, int] = {}
        args: list[Any] = [
            realtime_settings.HISTORY_MAX_EVENTS,
            int(realtime_settings.HISTORY_TTL_SECONDS),
            _new_epoch(),
            int(time.time() * 1000),
            max(dedup_ms, 1),
            len(entries),
            announce.channel if announce else "",
            announce.head if announce else "",
            announce.epoch_key if announce else "",
            announce.tail_key if announce else "",
        ]
        for position, entry in enumerate(entries):
            index = 0
            if entry.key is not None and dedup_ms > 0:
                index = key_index.get(entry.key, 0)
                if not index:
                    keys.append(self._key_of(stream, entry.key))
                    index = key_index[entry.key] = len(keys) - 3
            args += [entry.record, index, entry.fingerprint or "-", entry.event_id]
            args += announce.entries[position] if announce else ("", "", "", "")
        return keys, args

    @staticmethod
    def _parse(answer: Any) -> list[Appended]:
        first = answer[0].decode() if isinstance(answer[0], bytes) else str(answer[0])
        if first == "!":
            raise KeyConflict(int(answer[1]))
        results = []
        for raw in answer:
            flag, seq, epoch, event_id = (raw.decode() if isinstance(raw, bytes) else str(raw)).split(" ")
            results.append(Appended(int(seq), epoch, event_id, duplicate=flag == "d"))
        return results

    async def fingerprints(self, keys: Sequence[tuple[str, str]]) -> list[str | None]:
        if not keys:
            return []
        values = await shared_redis.client().mget([self._key_of(stream, key) for stream, key in keys])
        return [value.decode().split(" ", 1)[0] if value else None for value in values]

    async def position(self, stream: str) -> StreamPosition:
        seq_key, _, epoch_key = self._keys(stream)
        epoch, seq = await shared_redis.client().mget(epoch_key, seq_key)
        if epoch is None:
            return StreamPosition(0, "")
        return StreamPosition(int(seq or 0), epoch.decode())

    async def anchor(self, stream: str) -> StreamPosition:
        """``position``, giving a stream with no history its epoch now: a position handed out (a snapshot's) must be
        resumable with an epoch check, or a history lost in between would go unnoticed."""
        epoch, seq = await shared_redis.script(_ANCHOR_SCRIPT)(keys=self._keys(stream), args=[_new_epoch()])
        return StreamPosition(int(seq or 0), epoch.decode() if isinstance(epoch, bytes) else str(epoch))

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
