"""Idempotent and batch publishing (issue 14) on both history stores: the memory one and real Redis.

A repeat of an idempotency key for a stream publishes nothing and answers the first publish's position; a repeat
with a different event is a conflict; across processes (independent Redis clients, and separate OS processes) the
key still admits exactly one append.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from channels.layers import get_channel_layer

from realtime.errors import IdempotencyConflict, InvalidParams
from realtime.publishing import PublishItem, apublish, apublish_many, publish
from realtime.stores import history
from realtime.stores.history import Entry, KeyConflict, MemoryHistory, RedisHistory
from realtime.streams import group_for_stream

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "rtgw-idem-test"


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, settings: Any) -> Iterator[str]:
    """Each test once on the memory history and once on the real Redis one (its db emptied around the test)."""
    if request.param == "redis":
        settings.REDIS_URL = request.getfixturevalue("redis_url")
        settings.REDIS_PREFIX = PREFIX
    else:
        settings.REDIS_URL = ""
    history.reset_history()
    yield request.param
    history.reset_history()


async def stored(stream: str) -> list[dict[str, Any]]:
    replay = await history.get_history().replay(stream, 0, None)
    return [json.loads(raw) for _, raw in replay.events]


async def test_a_repeated_key_publishes_once_and_answers_the_first_position(store: str) -> None:
    layer = get_channel_layer()
    await layer.group_add(group_for_stream("orders:loc-abc123"), "listener")
    first = await apublish("orders", "order.created", location_id="loc-abc123", data={"n": 1}, idempotency_key="k-1")
    again = await apublish("orders", "order.created", location_id="loc-abc123", data={"n": 1}, idempotency_key="k-1")
    assert first.duplicate is False
    assert again.duplicate is True
    assert (again.event_id, again.stream, again.seq, again.epoch) == (first.event_id, first.stream, 1, first.epoch)
    assert [event["event_id"] for event in await stored("orders:loc-abc123")] == [first.event_id]
    assert (await layer.receive("listener"))["seq"] == 1
    with pytest.raises(asyncio.TimeoutError):  # the repeat sent nothing to the channel layer
        await asyncio.wait_for(layer.receive("listener"), 0.2)


async def test_a_repeated_key_with_a_different_event_is_a_conflict(store: str) -> None:
    await apublish("orders", "order.created", location_id="loc-abc123", data={"n": 1}, idempotency_key="k-2")
    with pytest.raises(IdempotencyConflict) as raised:
        await apublish("orders", "order.created", location_id="loc-abc123", data={"n": 2}, idempotency_key="k-2")
    assert raised.value.as_body() == {
        "code": "idempotency_conflict",
        "message": "This idempotency key was already used for a different event",
        "idempotency_key": "k-2",
        "stream": "orders:loc-abc123",
    }
    with pytest.raises(IdempotencyConflict):
        await apublish("orders", "order.updated", location_id="loc-abc123", data={"n": 1}, idempotency_key="k-2")
    assert len(await stored("orders:loc-abc123")) == 1


async def test_a_key_belongs_to_its_stream_and_to_its_window(store: str) -> None:
    a = await apublish("orders", "order.created", location_id="loc-abc123", idempotency_key="same")
    b = await apublish("orders", "order.created", location_id="loc-def456", idempotency_key="same")
    assert not a.duplicate and not b.duplicate  # another stream: another key
    short = await apublish("orders", "order.created", location_id="loc-abc123", idempotency_key="s", dedup_seconds=0.2)
    await asyncio.sleep(0.35)
    later = await apublish("orders", "order.created", location_id="loc-abc123", idempotency_key="s", dedup_seconds=0.2)
    assert not later.duplicate and later.seq == short.seq + 1  # the window passed: published again
    plain = [await apublish("orders", "order.created", location_id="loc-abc123") for _ in range(2)]
    assert [p.duplicate for p in plain] == [False, False]  # no key, no deduplication


@pytest.mark.parametrize("key", ["", "x" * 129, 7])
async def test_a_key_must_be_a_string_of_1_to_128_characters(store: str, key: Any) -> None:
    with pytest.raises(InvalidParams, match="idempotency_key"):
        await apublish("orders", "order.created", location_id="loc-abc123", idempotency_key=key)
    assert await stored("orders:loc-abc123") == []
    ok = await apublish("orders", "order.created", location_id="loc-abc123", idempotency_key="y" * 128)
    assert ok.seq == 1


@pytest.mark.django_db(transaction=True)
def test_sync_publish_takes_the_same_key(store: str) -> None:
    first = publish("orders", "order.created", location_id="loc-abc123", idempotency_key="sync-1")
    again = publish("orders", "order.created", location_id="loc-abc123", idempotency_key="sync-1")
    assert again.duplicate and again.event_id == first.event_id


async def test_a_batch_appends_in_item_order_per_stream_and_answers_in_item_order(store: str) -> None:
    items = [
        PublishItem("orders", "order.created", location_id="loc-abc123", data={"i": 0}),
        PublishItem("orders", "order.created", location_id="loc-def456", data={"i": 1}),
        PublishItem("orders", "order.updated", location_id="loc-abc123", data={"i": 2}, idempotency_key="b-1"),
        PublishItem("orders", "order.updated", location_id="loc-abc123", data={"i": 2}, idempotency_key="b-1"),
        PublishItem("orders", "order.created", location_id="loc-abc123", data={"i": 4}),
    ]
    results = await apublish_many(items)
    assert [(r.stream, r.seq, r.duplicate) for r in results] == [
        ("orders:loc-abc123", 1, False),
        ("orders:loc-def456", 1, False),
        ("orders:loc-abc123", 2, False),
        ("orders:loc-abc123", 2, True),  # the repeat inside the batch
        ("orders:loc-abc123", 3, False),
    ]
    assert results[3].event_id == results[2].event_id
    assert [e["data"]["i"] for e in await stored("orders:loc-abc123")] == [0, 2, 4]
    again = await apublish_many(items[2:4])
    assert [(r.seq, r.duplicate) for r in again] == [(2, True), (2, True)]


async def test_a_batch_with_a_bad_item_names_each_and_publishes_nothing(store: str) -> None:
    items = [
        PublishItem("orders", "order.created", location_id="loc-abc123"),
        PublishItem("nope", "order.created", location_id="loc-abc123"),
        PublishItem("orders", "order.created", location_id="loc-abc123", idempotency_key=""),
    ]
    with pytest.raises(InvalidParams) as raised:
        await apublish_many(items)
    assert [e["index"] for e in raised.value.details["errors"]] == [1, 2]
    assert await stored("orders:loc-abc123") == []


async def test_a_batch_whose_key_clashes_publishes_nothing(store: str) -> None:
    await apublish("orders", "order.created", location_id="loc-def456", data={"v": 1}, idempotency_key="c-1")
    items = [
        PublishItem("orders", "order.created", location_id="loc-abc123"),
        PublishItem("orders", "order.created", location_id="loc-def456", data={"v": 2}, idempotency_key="c-1"),
    ]
    with pytest.raises(IdempotencyConflict) as raised:
        await apublish_many(items)
    assert raised.value.details == {"idempotency_key": "c-1", "stream": "orders:loc-def456", "index": 1}
    assert await stored("orders:loc-abc123") == []
    assert len(await stored("orders:loc-def456")) == 1


async def test_the_store_refuses_a_clash_atomically_even_without_the_batch_precheck(store: str) -> None:
    """The history call itself checks every key before appending (the pre-check only spares other streams)."""
    log = history.get_history()
    await log.append_many("orders:loc-abc123", [Entry('{"a":1}', "evt-1", "k", "fp-a")], 60)
    with pytest.raises(KeyConflict) as raised:
        await log.append_many(
            "orders:loc-abc123", [Entry('{"a":2}', "evt-2"), Entry('{"a":3}', "evt-3", "k", "fp-b")], 60
        )
    assert raised.value.position == 1
    assert [seq for seq, _ in (await log.replay("orders:loc-abc123", 0, None)).events] == [1]


def race_in_threads(redis_url: str, attempts: int) -> list[Any]:
    """Publish the same key from ``attempts`` threads, each with its own event loop and so its own Redis client."""
    barrier = threading.Barrier(attempts)
    results: list[Any] = [None] * attempts

    def run(slot: int) -> None:
        async def go() -> Any:
            store = RedisHistory(PREFIX)  # an independent instance, as in another process
            barrier.wait()
            return await store.append_many(
                "orders:loc-race01", [Entry(f'{{"by":{slot}}}', f"evt-{slot}", "race", "fp")], 60
            )

        results[slot] = asyncio.run(go())[0]

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_independent_redis_clients_racing_one_key_append_once(redis_url: str, settings: Any) -> None:
    settings.REDIS_URL = redis_url
    results = race_in_threads(redis_url, 8)
    assert sum(not r.duplicate for r in results) == 1
    assert len({(r.seq, r.epoch, r.event_id) for r in results}) == 1
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        assert client.xlen(f"{PREFIX}:hist:{{orders:loc-race01}}:events") == 1
    finally:
        client.close()


PUBLISHER = """
import sys, time, django, json
django.setup()
from realtime.publishing import publish
start = float(sys.argv[1])
time.sleep(max(0.0, start - time.time()))
out = [publish("orders", "order.created", location_id="loc-proc01", data={"n": i}, idempotency_key=f"p-{i}")
       for i in range(20)]
print(json.dumps([[p.seq, p.duplicate, p.event_id] for p in out]))
"""


def test_two_processes_publishing_the_same_keys_append_each_once(redis_url: str) -> None:
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="1",
        REDIS_URL=redis_url,
        REDIS_PREFIX=PREFIX,
        PYTHONPATH=str(ROOT),
    )
    start = str(time.time() + 4)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, start], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    answers = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        answers.append(json.loads(out))
    for i in range(20):
        a, b = answers[0][i], answers[1][i]
        assert (a[0], a[2]) == (b[0], b[2])  # both answered the one append's position and id
        assert sorted([a[1], b[1]]) == [False, True]  # exactly one of them appended
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        assert client.xlen(f"{PREFIX}:hist:{{orders:loc-proc01}}:events") == 20
    finally:
        client.close()


def test_memory_history_forgets_expired_keys() -> None:
    store = MemoryHistory()

    async def go() -> None:
        await store.append_many("s:x", [Entry("{}", "e1", "old", "f")], 0.05)
        await asyncio.sleep(0.1)
        await store.append_many("s:x", [Entry("{}", "e2", "new", "f")], 60)

    asyncio.run(go())
    assert list(store._keys) == [("s:x", "new")]
