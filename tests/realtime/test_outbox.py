"""The transactional outbox (issue 14): events written in the data's transaction, published by the relay.

Against the real stores: the stream history on real Redis (a private redis-server where Redis must die), the
outbox on the configured database (PostgreSQL with DATABASE_URL, else SQLite). Each guarantee of the issue has its
test here or in tests/e2e/test_outbox_e2e.py (two real gateway processes).
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import connections, transaction
from django.utils import timezone

from locations.models import Location, Order
from realtime import metrics
from realtime.errors import ChannelNotFound, InvalidParams
from realtime.models import OutboxEvent
from realtime.outbox import publish_in_transaction
from realtime.relay import OutboxStalled, Relay, astart_relay, astop_relay
from realtime.stores import history
from tests.support.asgi import open_client
from tests.support.outbox import drain_outbox
from tests.support.processes import RedisServer
from tests.support.services import require_postgres, require_redis_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

DOWNTOWN = "loc-xyz789"
STREAM = f"orders:{DOWNTOWN}"
PREFIX = "rtgw-outbox-test"


@pytest.fixture
def redis_history(redis_url: str, settings: Any) -> Iterator[str]:
    """The stream history on the real Redis (its test db emptied around the test)."""
    settings.REDIS_URL = redis_url
    settings.REDIS_PREFIX = PREFIX
    history.reset_history()
    yield redis_url
    history.reset_history()


@pytest.fixture
def dying_redis(tmp_path: Path, settings: Any) -> Iterator[RedisServer]:
    """A redis-server of the test's own, which it stops and starts; the gateway's Redis while the test runs."""
    require_redis_server()
    server = RedisServer(tmp_path).start()
    settings.REDIS_URL = server.url
    settings.REDIS_PREFIX = PREFIX
    settings.REALTIME = {"OUTBOX_RETRY_MAX_SECONDS": 0.4, "OUTBOX_POLL_SECONDS": 0.1}
    history.reset_history()
    yield server
    server.stop()
    history.reset_history()


async def stream_events(stream: str = STREAM) -> list[dict[str, Any]]:
    replay = await history.get_history().replay(stream, 0, None)
    return [{"seq": seq, **json.loads(raw)} for seq, raw in replay.events]


async def in_thread(fn: Callable[[], Any]) -> Any:
    """Run ORM code in a thread of its own (its own connection), as another request or worker would."""

    def run() -> Any:
        try:
            return fn()
        finally:
            connections.close_all()

    return await asyncio.get_running_loop().run_in_executor(None, run)


def publish_orders(numbers: list[int]) -> None:
    with transaction.atomic():
        for n in numbers:
            publish_in_transaction("orders", "order.updated", location_id=DOWNTOWN, data={"n": n})


def unsent_rows() -> list[tuple[int, int, str]]:
    return list(OutboxEvent.objects.filter(sent_at__isnull=True).values_list("id", "attempts", "last_error"))


# --- Rollback ----------------------------------------------------------------------------------------------------


class Boom(Exception):
    pass


async def test_a_rolled_back_transaction_publishes_nothing(redis_history: str) -> None:
    def roll_back() -> None:
        with transaction.atomic():
            publish_in_transaction("orders", "order.created", location_id=DOWNTOWN, data={"n": 1})
            Order.objects.create(location=Location.objects.get(public_id=DOWNTOWN))
            raise Boom

    def savepoint_rolled_back() -> None:
        with transaction.atomic():
            publish_in_transaction("orders", "order.updated", location_id=DOWNTOWN, data={"kept": True})
            try:
                with transaction.atomic():
                    publish_in_transaction("orders", "order.updated", location_id=DOWNTOWN, data={"kept": False})
                    raise Boom
            except Boom:
                pass

    await sync_to_async(call_command)("seed_demo", stdout=io.StringIO())
    with pytest.raises(Boom):
        await in_thread(roll_back)
    assert await sync_to_async(OutboxEvent.objects.count)() == 0  # the rows of a rollback never exist
    assert await drain_outbox() == 0
    await in_thread(savepoint_rolled_back)
    assert await drain_outbox() == 1
    assert [event["data"] for event in await stream_events()] == [{"kept": True}]


def test_publish_in_transaction_refuses_bad_input_at_the_call_site(db: Any) -> None:
    with pytest.raises(ChannelNotFound):
        publish_in_transaction("ordres", "order.created", location_id=DOWNTOWN)
    with pytest.raises(InvalidParams, match="Invalid event"):
        publish_in_transaction("orders", "order.teleported", location_id=DOWNTOWN)
    with pytest.raises(InvalidParams, match="location_id"):
        publish_in_transaction("orders", "order.created", user_id="user-sarah")
    with pytest.raises(InvalidParams, match="not JSON-serializable"):
        publish_in_transaction("orders", "order.created", location_id=DOWNTOWN, data={"at": object()})
    with pytest.raises(InvalidParams, match="JSON object"):
        publish_in_transaction("orders", "order.created", location_id=DOWNTOWN, data=[1, 2])  # type: ignore[arg-type]
    assert OutboxEvent.objects.count() == 0
    row_id = publish_in_transaction("notifications", "notification.alert", user_id="user-sarah", data={"x": 1})
    row = OutboxEvent.objects.get(pk=row_id)
    assert (row.stream, row.scope_id, row.target, row.source) == (
        "notifications:user-sarah",
        "user-sarah",
        {"user_id": "user-sarah"},
        "outbox",
    )


# --- Redis down --------------------------------------------------------------------------------------------------


async def test_events_committed_while_redis_is_down_arrive_in_order_exactly_once_after_it_returns(
    dying_redis: RedisServer, token_for: Any, outbox_relay: Relay
) -> None:
    await drain_outbox()  # nothing from the seed
    dying_redis.stop()
    await in_thread(lambda: publish_orders([1, 2]))
    await in_thread(lambda: publish_orders([3]))
    deadline = time.monotonic() + 10
    while (await in_thread(unsent_rows))[0][1] < 3:  # the relay keeps retrying the first row, with backoff
        assert time.monotonic() < deadline, await in_thread(unsent_rows)
        await asyncio.sleep(0.05)
    rows = await in_thread(unsent_rows)
    assert len(rows) == 3 and rows[0][2].startswith("unavailable")
    assert metrics.OUTBOX_BACKLOG._value.get() == 3  # the gauge shows the backlog meanwhile

    dying_redis.start()  # restarted empty: a new epoch
    async with open_client(token_for("kim")) as client:
        reply = await client.request(
            {
                "type": "subscribe",
                "id": "r",
                "channel": "orders",
                "params": {"location_id": DOWNTOWN},
                "resume": {STREAM: 0},
            }
        )
        assert reply["success"] is True, reply
        frames = [await client.recv(10) for _ in range(3)]
        assert await client.nothing(0.3)
    assert [(f["seq"], f["data"]["n"]) for f in frames] == [(1, 1), (2, 2), (3, 3)]
    assert [event["data"]["n"] for event in await stream_events()] == [1, 2, 3]  # exactly once into the stream
    assert await in_thread(unsent_rows) == []
    assert await drain_outbox() == 0
    assert len(await stream_events()) == 3
    assert metrics.OUTBOX_BACKLOG._value.get() == 0


async def test_order_create_with_redis_down_does_not_raise_and_its_event_arrives_later(
    dying_redis: RedisServer, token_for: Any
) -> None:
    """The reported bug: Order.objects.create() in autocommit while Redis is down raised AttributeError after its
    commit (Django's robust on_commit handler and a functools.partial) and the event was lost."""
    dying_redis.stop()
    order = await in_thread(lambda: Order.objects.create(location=Location.objects.get(public_id=DOWNTOWN)))
    with pytest.raises(OutboxStalled):
        await drain_outbox()
    assert [row[1] for row in await in_thread(unsent_rows)] == [1]
    dying_redis.start()
    async with open_client(token_for("kim")) as client:
        assert (await client.subscribe("orders", {"location_id": DOWNTOWN}))["success"] is True
        assert await drain_outbox() == 1
        event = await client.recv(5)
    assert event["event"] == "order.created" and event["data"]["order_id"] == order.public_id


# --- Crash between publish and mark -------------------------------------------------------------------------------


class Crash(BaseException):
    """The process dying: nothing after it runs, the open transaction is rolled back."""


class RelayDyingBeforeItsMark(Relay):
    async def _mark_postgresql(self, connection: Any, result: Any) -> None:
        raise Crash

    def _mark_orm(self, result: Any) -> None:
        raise Crash


async def test_a_relay_that_dies_after_publishing_and_before_marking_does_not_publish_twice(
    redis_history: str, token_for: Any
) -> None:
    await in_thread(lambda: publish_orders([1, 2, 3]))
    async with open_client(token_for("kim")) as client:
        assert (await client.subscribe("orders", {"location_id": DOWNTOWN}))["success"] is True
        dying = RelayDyingBeforeItsMark()
        with pytest.raises(Crash):
            await dying.relay_once()
        await dying.aclose()
        assert [(n, attempts) for n, (_, attempts, _) in enumerate(await in_thread(unsent_rows))] == [
            (0, 0),
            (1, 0),
            (2, 0),
        ]  # published, but the mark died with the relay
        assert [e["data"]["n"] for e in await stream_events()] == [1, 2, 3]
        first = [await client.recv() for _ in range(3)]

        assert await drain_outbox() == 3  # the next relay publishes them again: all three are duplicates
        assert await client.nothing(0.3)
    assert [(f["seq"], f["data"]["n"]) for f in first] == [(1, 1), (2, 2), (3, 3)]
    assert [e["data"]["n"] for e in await stream_events()] == [1, 2, 3]
    assert await in_thread(unsent_rows) == []


# --- Several relays, commit order (PostgreSQL) --------------------------------------------------------------------


async def test_two_relays_publish_each_row_once(redis_history: str, settings: Any) -> None:
    require_postgres()
    settings.REALTIME = {"OUTBOX_BATCH_SIZE": 5}  # many small claims, so the two relays' claims interleave
    streams = [f"orders:loc-r{n}" for n in range(3)]

    def write(writer: int) -> None:
        for batch in range(10):
            with transaction.atomic():
                for item in range(3):
                    stream = streams[(writer + batch + item) % 3]
                    data = {"w": writer, "b": batch, "i": item}
                    publish_in_transaction("orders", "order.updated", location_id=stream.split(":")[1], data=data)

    a, b = Relay().start(), Relay().start()
    try:
        await asyncio.gather(*(in_thread(lambda w=w: write(w)) for w in range(4)))
        deadline = time.monotonic() + 20
        while await in_thread(lambda: OutboxEvent.objects.filter(sent_at__isnull=True).exists()):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        await a.stop()
        await b.stop()
    assert a.published + b.published == 120  # SKIP LOCKED: no row was claimed by both
    seen = [event for stream in streams for event in await stream_events(stream)]
    assert len(seen) == 120
    assert len({json.dumps(event["data"], sort_keys=True) for event in seen}) == 120
    for stream in streams:  # in commit order per stream

        def committed(stream: str = stream) -> list[Any]:
            return list(OutboxEvent.objects.filter(stream=stream).order_by("commit_seq").values_list("data", flat=True))

        assert [event["data"] for event in await stream_events(stream)] == await in_thread(committed)


async def test_concurrent_writers_of_one_stream_are_published_in_commit_order(redis_history: str) -> None:
    """Each transaction's events stay together and writers' transactions stay in their order: the stream is in
    commit order, which id order alone would not give (a transaction may draw its ids first and commit last)."""
    require_postgres()

    def write(writer: int) -> None:
        rng = random.Random(writer)
        for txn in range(8):
            with transaction.atomic():
                for item in range(3):
                    data = {"w": writer, "t": txn, "i": item}
                    publish_in_transaction("orders", "order.updated", location_id=DOWNTOWN, data=data)
                    time.sleep(rng.uniform(0, 0.004))  # commit later than others who wrote after us

    relay = Relay().start()
    try:
        await asyncio.gather(*(in_thread(lambda w=w: write(w)) for w in range(4)))
        deadline = time.monotonic() + 20
        while len(await stream_events()) < 96:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        await relay.stop()
    data = [event["data"] for event in await stream_events()]
    assert [event["seq"] for event in await stream_events()] == list(range(1, 97))
    transactions = [(d["w"], d["t"]) for d in data]
    for start in range(0, 96, 3):  # a transaction's three events are adjacent and in order
        assert len(set(transactions[start : start + 3])) == 1, data[start : start + 3]
        assert [d["i"] for d in data[start : start + 3]] == [0, 1, 2]
    for writer in range(4):
        assert [t for w, t in transactions[::3] if w == writer] == list(range(8))


async def test_a_transaction_that_wrote_first_but_committed_last_is_published_last(redis_history: str) -> None:
    """Commit order, not id order: the first writer draws the lower id, the second commits first."""
    require_postgres()
    first_wrote, release_first = threading.Event(), threading.Event()
    commits: list[str] = []

    def first() -> None:
        with transaction.atomic():
            publish_in_transaction("orders", "order.updated", location_id=DOWNTOWN, data={"who": "first"})
            first_wrote.set()
            assert release_first.wait(10)
        commits.append("first")

    def second() -> None:
        assert first_wrote.wait(10)
        with transaction.atomic():
            publish_in_transaction("orders", "order.updated", location_id=DOWNTOWN, data={"who": "second"})
        commits.append("second")
        release_first.set()  # the first commits only after the second has

    await asyncio.gather(in_thread(first), in_thread(second))
    ids = await in_thread(lambda: list(OutboxEvent.objects.order_by("id").values_list("data__who", flat=True)))
    assert ids == ["first", "second"] and commits == ["second", "first"]
    assert await drain_outbox() == 2
    assert [event["data"]["who"] for event in await stream_events()] == ["second", "first"]


async def test_a_relay_wakes_on_notify_without_waiting_for_its_poll(redis_history: str, settings: Any) -> None:
    require_postgres()
    settings.REALTIME = {"OUTBOX_POLL_SECONDS": 30.0}
    relay = Relay().start()
    try:
        await asyncio.sleep(0.5)  # its LISTEN connection is up
        # Committed by another connection of another "process": only the NOTIFY can wake this relay.
        await in_thread(
            lambda: OutboxEvent.objects.create(
                stream=STREAM, channel="orders", event="order.updated", scope_id=DOWNTOWN, data={"n": 1}
            )
        )
        deadline = time.monotonic() + 5
        while not await stream_events():
            assert time.monotonic() < deadline, "the relay was not woken by NOTIFY"
            await asyncio.sleep(0.02)
    finally:
        await relay.stop()


# --- Housekeeping, health, backlog --------------------------------------------------------------------------------


def test_sent_rows_are_deleted_after_the_retention_and_unsent_ones_never(db: Any) -> None:
    now = timezone.now()
    make = {"stream": STREAM, "channel": "orders", "event": "order.updated", "scope_id": DOWNTOWN}
    old = OutboxEvent.objects.create(**make, sent_at=now - timedelta(hours=2))
    recent = OutboxEvent.objects.create(**make, sent_at=now - timedelta(minutes=10))
    waiting = OutboxEvent.objects.create(**make, created_at=now - timedelta(hours=5))
    assert Relay().purge_sent() == 1
    assert set(OutboxEvent.objects.values_list("pk", flat=True)) == {recent.pk, waiting.pk}
    assert not OutboxEvent.objects.filter(pk=old.pk).exists()


def test_healthz_reports_the_outbox_lag_and_fails_past_the_threshold(client: Any, settings: Any) -> None:
    settings.REALTIME = {"OUTBOX_UNHEALTHY_LAG_SECONDS": 30.0}
    body = client.get("/healthz").json()
    assert (body["outbox"], body["backlog"], body["lag_seconds"]) == ("ok", 0, 0.0)
    make = {"stream": STREAM, "channel": "orders", "event": "order.updated", "scope_id": DOWNTOWN}
    OutboxEvent.objects.create(**make, created_at=timezone.now() - timedelta(seconds=5))
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json()["backlog"] == 1
    stale = OutboxEvent.objects.create(**make, created_at=timezone.now() - timedelta(seconds=45))
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 503 and body["status"] == "unavailable"
    assert body["backlog"] == 2 and 45 <= body["lag_seconds"] < 60 and body["outbox"].startswith("error: lagging")
    OutboxEvent.objects.filter(pk=stale.pk).update(sent_at=timezone.now())
    assert client.get("/healthz").status_code == 200


def test_outbox_backlog_command_prints_the_backlog_and_the_oldest_row_per_stream(db: Any) -> None:
    make = {"channel": "orders", "event": "order.updated"}
    first = OutboxEvent.objects.create(**make, stream="orders:loc-a1", scope_id="loc-a1")
    OutboxEvent.objects.create(**make, stream="orders:loc-b2", scope_id="loc-b2")
    OutboxEvent.objects.create(**make, stream="orders:loc-a1", scope_id="loc-a1")
    OutboxEvent.objects.create(**make, stream="orders:loc-c3", scope_id="loc-c3", sent_at=timezone.now())
    out = io.StringIO()
    call_command("outbox_backlog", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "backlog: 3 unsent" and lines[1].startswith("lag: ")
    assert lines[2].startswith(f"orders:loc-a1: 2 unsent, oldest row {first.pk} (")
    assert lines[3].startswith("orders:loc-b2: 1 unsent")
    assert len(lines) == 4


async def test_the_relay_stops_cleanly_and_does_not_start_implicitly_under_pytest(redis_history: str) -> None:
    assert await astart_relay() is None  # OUTBOX_RELAY_ENABLED is off in the test process
    relay = Relay().start()
    await asyncio.sleep(0.2)
    assert any(task.get_name() == "realtime-outbox-relay" for task in asyncio.all_tasks())
    await relay.stop()
    await astop_relay()
    assert relay.task is None and not relay.running
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "realtime-outbox-relay" and not t.done()]
