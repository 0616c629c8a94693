"""Each store's contract (``realtime.stores``), the same assertions against the memory and the real-Redis backend.

The backend is picked the way production picks it (``stores.uses_redis``: ``REDIS_URL`` set or not), so these tests
also pin the one backend choice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from realtime.stores import reset_stores, uses_redis
from realtime.stores.connections import get_connection_counts
from realtime.stores.history import get_history
from realtime.stores.live import LiveConnection, get_directory
from realtime.stores.liveness import get_liveness
from realtime.stores.presence import Member, get_presence_store

KEY = "orders:loc-xyz789"


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest, settings: Any) -> Iterator[str]:
    settings.REDIS_SENTINELS = []
    settings.REDIS_PREFIX = "rtgw-contract"
    settings.REDIS_URL = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    reset_stores()
    yield request.param
    reset_stores()


def member(user: str, tab: int = 1) -> Member:
    return Member(user, {"tab": tab}, f"2026-01-18T14:30:0{tab}.000Z")


async def test_the_backend_follows_redis_url(backend: str) -> None:
    assert uses_redis() == (backend == "redis")
    assert type(get_history()).__name__ == ("RedisHistory" if backend == "redis" else "MemoryHistory")
    assert type(get_presence_store()).__name__ == ("RedisPresence" if backend == "redis" else "MemoryPresence")


async def test_history_appends_are_atomic_and_positions_consecutive(backend: str) -> None:
    store = get_history()
    assert (await store.position("s:a")).seq == 0
    positions = await asyncio.gather(*(store.append("s:a", f'{{"n":{n}}}') for n in range(20)))
    assert sorted(p.seq for p in positions) == list(range(1, 21))
    assert len({p.epoch for p in positions}) == 1
    assert await store.position("s:a") == max(positions)
    assert (await store.position("s:b")).seq == 0  # streams are independent


async def test_history_is_not_idempotent_and_replays_a_snapshot(backend: str) -> None:
    store = get_history()
    first = await store.append("s:a", '{"same":1}')
    second = await store.append("s:a", '{"same":1}')
    assert second.seq == first.seq + 1  # the same record twice is two events
    replay = await store.replay("s:a", 0, first.epoch)
    assert replay.covered and replay.last_seq == 2 and replay.epoch == first.epoch
    assert [seq for seq, _ in replay.events] == [1, 2]
    assert (await store.replay("s:a", 2, first.epoch)).events == []
    other_epoch = await store.replay("s:a", 1, "not-" + first.epoch)
    assert not other_epoch.covered and other_epoch.events == []


async def test_presence_join_and_leave_are_idempotent_and_announce_once(backend: str) -> None:
    await get_liveness().beat()  # this process is live (Redis ties members to it)
    store = get_presence_store()
    assert (await store.join(KEY, "c-1", member("u-1"))).first
    assert not (await store.join(KEY, "c-1", member("u-1"))).first  # joining again changes nothing
    assert not (await store.join(KEY, "c-2", member("u-1", 2))).first  # the user was already present
    assert len(await store.members(KEY)) == 2
    assert await store.leave(KEY, "c-1") is None  # the user still has c-2
    assert await store.leave(KEY, "c-1") is None  # leaving twice
    assert await store.leave(KEY, "c-2") == member("u-1", 2)  # the last one: user_left, once
    assert await store.leave(KEY, "c-2") is None
    assert await store.leave(KEY, "never-joined") is None
    assert await store.members(KEY) == []


async def test_presence_join_many_is_join_in_order(backend: str) -> None:
    await get_liveness().beat()
    store = get_presence_store()
    joined = await store.join_many([(KEY, "c-1", member("u-1")), (KEY, "c-2", member("u-1", 2))])
    assert [j.first for j in joined] == [True, False]


async def test_connection_counts_admit_at_most_the_limit_and_are_idempotent(backend: str) -> None:
    await get_liveness().beat()
    counts = get_connection_counts()
    admitted = await asyncio.gather(*(counts.add("u-1", f"c-{n}", 3) for n in range(8)))
    assert sum(admitted) == 3
    winner = next(f"c-{n}" for n, ok in enumerate(admitted) if ok)
    assert await counts.add("u-1", winner, 3)  # counted already: admitted again, counted once
    assert not await counts.add("u-1", "c-extra", 3)
    await counts.remove("u-1", winner)
    await counts.remove("u-1", winner)  # removing twice
    await counts.remove("u-1", "unknown")
    assert await counts.add("u-1", "c-extra", 3)
    assert await counts.add("u-2", "c-other", 1)  # users are independent


async def test_the_directory_writes_whole_entries_and_replaces(backend: str) -> None:
    directory = get_directory()

    def entry(cid: str) -> str:
        return LiveConnection(cid, "u-1", "sarah", "proc-a", "2026-01-18T14:30:00.000Z", "127.0.0.1", "ua").to_json()

    await directory.write("proc-a", {"c-1": entry("c-1"), "c-2": entry("c-2")})
    await directory.write("proc-a", {"c-1": entry("c-1"), "c-2": entry("c-2")})  # again: the same
    assert len((await directory.processes())["proc-a"]) == 2
    await directory.write("proc-a", {"c-2": None})
    assert [c.connection_id for c in (await directory.processes())["proc-a"]] == ["c-1"]
    await directory.write("proc-a", {"c-3": entry("c-3")}, replace=True)
    assert [c.connection_id for c in (await directory.processes())["proc-a"]] == ["c-3"]
    assert await directory.renew("proc-a")
