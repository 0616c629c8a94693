"""Presence and connection counts tied to process liveness: the Redis scripts against a real Redis, and the memory
backend. "Processes" here are store objects with their own process ids, so one test can let one of them lapse."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from realtime.stores import redis_client as shared_redis
from realtime.stores.connections import MemoryConnections, RedisConnections
from realtime.stores.liveness import MemoryLiveness, ProcessNotLive, RedisLiveness
from realtime.stores.presence import Member, MemoryPresence, RedisPresence
from tests.support.asgi import open_client

KEY = "orders:loc-xyz789"
LAPSE_S = 1.0
PREFIX = "rtgw-liveness"


def member(user: str, tab: int = 1) -> Member:
    return Member(user, {"tab": tab}, f"2026-01-18T14:30:0{tab}.000Z")


class Proc:
    """One simulated gateway process: its liveness, presence and connection stores under one process id."""

    def __init__(self, name: str) -> None:
        self.liveness = RedisLiveness(PREFIX, process=name)
        self.presence = RedisPresence(PREFIX, process=name)
        self.connections = RedisConnections(PREFIX, process=name)


@pytest.fixture
def live_redis(redis_url: str, settings: Any) -> Iterator[redis.Redis]:
    settings.REDIS_URL = redis_url
    settings.REALTIME = {"PRESENCE_TTL_SECONDS": LAPSE_S}
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


async def lapse() -> None:
    await asyncio.sleep(LAPSE_S + 0.2)


async def outlive(*survivors: Proc) -> None:
    """Wait until every process that last beat before this call has lapsed, while ``survivors`` beat once."""
    await asyncio.sleep(LAPSE_S * 0.6)
    for proc in survivors:
        await proc.liveness.beat()
    await asyncio.sleep(LAPSE_S * 0.6)


@pytest.mark.redis
async def test_a_lapsed_process_members_never_count_even_unswept(live_redis: redis.Redis) -> None:
    a, b = Proc("proc-a"), Proc("proc-b")
    await a.liveness.beat()
    await b.liveness.beat()
    assert (await b.presence.join(KEY, "conn-b1", member("user-john"))).first is True
    assert [m.user_id for m in await a.presence.members(KEY)] == ["user-john"]

    await outlive(a)  # b stops beating; a beat (and swept) before b lapsed, and nobody swept since
    assert await a.presence.members(KEY) == []
    stored = live_redis.hgetall(f"{PREFIX}:pres:{{{KEY}}}:m")
    assert list(stored) == [b"conn-b1"]  # still stored: it does not count although nothing swept it

    # The user coming back elsewhere is a new join; the ghost it replaces is reported as ended (user_left first).
    joined = await a.presence.join(KEY, "conn-a1", member("user-john", 2))
    assert joined.first is True and joined.ended is not None and joined.ended.user_info == {"tab": 1}
    assert [m.user_info for m in await a.presence.members(KEY)] == [{"tab": 2}]
    assert (await a.liveness.beat()).left == []  # the ghost is gone already: no second user_left


@pytest.mark.redis
async def test_the_sweep_removes_a_lapsed_process_once_and_reports_who_left(live_redis: redis.Redis) -> None:
    a, b, c = Proc("proc-a"), Proc("proc-b"), Proc("proc-c")
    for proc in (a, b, c):
        await proc.liveness.beat()
    await b.presence.join(KEY, "conn-b1", member("user-john"))
    await b.presence.join(KEY, "conn-b2", member("user-john", 2))  # two tabs of one user on the dying process
    await b.presence.join(KEY, "conn-b3", member("user-kim"))
    await c.presence.join(KEY, "conn-c1", member("user-kim", 2))  # kim also has a tab on a live process
    assert await b.connections.add("user-john", "conn-b1", 5)

    await outlive(a, c)  # b lapsed, a and c are still live
    beats = await asyncio.gather(a.liveness.beat(), c.liveness.beat())  # two sweepers at once
    left = [(key, json.loads(payload)["user_id"]) for beat in beats for key, payload in beat.left]
    assert left == [(KEY, "user-john")]  # once, and not kim, who is still on c
    assert [m.user_id for m in await a.presence.members(KEY)] == ["user-kim"]
    assert live_redis.zscore(f"{PREFIX}:liveness:procs", "proc-b") is None
    assert not live_redis.exists(f"{PREFIX}:liveness:held:proc-b")
    assert live_redis.hgetall(f"{PREFIX}:conn:user-john") == {}


@pytest.mark.redis
async def test_leaving_the_last_live_tab_is_user_left_even_beside_a_ghost(live_redis: redis.Redis) -> None:
    a, b = Proc("proc-a"), Proc("proc-b")
    await b.liveness.beat()
    await b.presence.join(KEY, "conn-b1", member("user-john"))
    await a.liveness.beat()
    assert (await a.presence.join(KEY, "conn-a1", member("user-john", 2))).first is False
    await outlive(a)  # b lapsed, unswept
    gone = await a.presence.leave(KEY, "conn-a1")
    assert gone is not None and gone.user_id == "user-john"
    assert (await a.liveness.beat()).left == []  # b's ghost went with the leave: no second user_left


@pytest.mark.redis
async def test_a_process_that_lost_its_entry_is_told_and_must_beat_before_joining(live_redis: redis.Redis) -> None:
    a = Proc("proc-a")
    assert (await a.liveness.beat()).lost is True  # a fresh process has nothing to keep
    assert (await a.liveness.beat()).lost is False
    await a.presence.join(KEY, "conn-a1", member("user-john"))
    live_redis.flushdb()  # what a Redis restart without persistence does
    with pytest.raises(ProcessNotLive):
        await a.presence.join(KEY, "conn-a2", member("user-kim"))
    assert (await a.liveness.beat()).lost is True
    assert (await a.presence.join(KEY, "conn-a1", member("user-john"))).first is True


@pytest.mark.redis
async def test_a_process_cut_off_past_the_lapse_sweeps_itself_and_starts_over(live_redis: redis.Redis) -> None:
    a = Proc("proc-a")
    await a.liveness.beat()
    await a.presence.join(KEY, "conn-a1", member("user-john"))
    await lapse()  # no beat reached Redis, and no other process swept
    beat = await a.liveness.beat()
    assert beat.lost is True
    assert [json.loads(payload)["user_id"] for _, payload in beat.left] == ["user-john"]
    assert await a.presence.members(KEY) == []


@pytest.mark.redis
async def test_connection_counts_ignore_a_lapsed_process(live_redis: redis.Redis) -> None:
    a, b = Proc("proc-a"), Proc("proc-b")
    await a.liveness.beat()
    await b.liveness.beat()
    assert await b.connections.add("user-john", "conn-b1", 1)
    assert not await a.connections.add("user-john", "conn-a1", 1)  # the limit holds across processes
    await outlive(a)
    assert await a.connections.add("user-john", "conn-a1", 1)  # b's connection lapsed with b, unswept
    assert await a.connections.add("user-john", "conn-a1", 1)  # idempotent
    live_redis.flushdb()
    await a.liveness.beat()
    await a.connections.restore()
    assert live_redis.hgetall(f"{PREFIX}:conn:user-john") == {b"conn-a1": b"proc-a"}


@pytest.mark.redis
async def test_a_beat_is_one_redis_command_whatever_the_number_of_members(live_redis: redis.Redis) -> None:
    a = Proc("proc-a")
    await a.liveness.beat()
    await a.presence.join_many([(KEY, f"conn-{n}", member(f"user-{n}")) for n in range(300)])
    for n in range(300):
        if n % 20 == 0:
            await a.liveness.beat()  # stay live on a busy machine
        await a.connections.add(f"user-{n}", f"conn-{n}", 5)
    assert len(await a.presence.members(KEY)) == 300
    client = shared_redis.client()
    await a.liveness.beat()  # the script is loaded
    sent: list[Any] = []
    original = client.execute_command

    async def counting(*args: Any, **options: Any) -> Any:
        sent.append(args[0])
        return await original(*args, **options)

    client.execute_command = counting
    try:
        for _ in range(5):
            assert (await a.liveness.beat()).left == []
    finally:
        client.execute_command = original
    assert sent == ["EVALSHA"] * 5


async def test_memory_presence_counts_users_not_tabs() -> None:
    store = MemoryPresence()
    assert (await store.join(KEY, "c1", member("user-john"))).first is True
    assert (await store.join(KEY, "c1", member("user-john"))).first is False  # idempotent
    assert (await store.join(KEY, "c2", member("user-john", 2))).first is False
    assert len(await store.members(KEY)) == 2
    assert await store.leave(KEY, "c1") is None
    gone = await store.leave(KEY, "c2")
    assert gone is not None and gone.user_id == "user-john"
    assert await store.leave(KEY, "c2") is None
    assert await store.members(KEY) == []
    beat = await MemoryLiveness().beat()
    assert beat.lost is False and beat.left == []


async def test_memory_connections_apply_the_limit_idempotently() -> None:
    registry = MemoryConnections()
    assert await registry.add("user-john", "c1", 1)
    assert await registry.add("user-john", "c1", 1)
    assert not await registry.add("user-john", "c2", 1)
    await registry.remove("user-john", "c1")
    assert await registry.add("user-john", "c2", 1)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_through_the_app_a_lost_presence_is_joined_again_and_announced(
    live_redis: redis.Redis, settings: Any, token_for: Any
) -> None:
    settings.REALTIME = {}  # the defaults: heartbeat 1 s, lapse 3 s
    settings.REDIS_PREFIX = PREFIX
    at = {"channel": "orders", "params": {"location_id": "loc-xyz789"}}
    async with open_client(token_for("sarah")) as sarah, open_client(token_for("john")) as john:
        await sarah.subscribe("orders", at["params"])
        await john.request({"type": "presence_join", "id": "j", **at, "user_info": {"name": "John"}})
        assert (await sarah.recv())["event"] == "user_joined"
        live_redis.flushdb()  # Redis restarted empty: presence and the process's liveness are gone
        again = await sarah.recv(timeout=5)  # the next beat finds the process lost and re-joins
        assert again["type"] == "presence" and again["event"] == "user_joined"
        assert again["data"]["user_id"] == "user-john"
        listing = await sarah.request({"type": "presence_list", "id": "l", **at})
        assert [u["user_id"] for u in listing["users"]] == ["user-john"]
        assert live_redis.hgetall(f"{PREFIX}:conn:user-john") != {}  # and its connections count again
