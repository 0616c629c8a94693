"""The per-process hub, through its public API and the in-memory channel layer (no REDIS_URL in these tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.layers import get_channel_layer

from realtime.hub import Hub
from realtime.stores.live import disconnect_message
from realtime.streams import CONTROL_GROUP

GROUP = "rt.orders.loc-1"


class Connection:
    """A local connection as the hub sees it (``realtime.hub.Member``), recording what reached it."""

    def __init__(self, user_id: str, connection_id: str) -> None:
        self.user_id = user_id
        self.connection_id = connection_id
        self.events: list[dict[str, Any]] = []
        self.presence: list[dict[str, Any]] = []
        self.access_changes = 0
        self.disconnects: list[str] = []
        self.arrived = asyncio.Event()

    def deliver_event(self, message: dict[str, Any]) -> int:
        self.events.append(message)
        self.arrived.set()
        return 1

    def deliver_presence(self, message: dict[str, Any]) -> None:
        self.presence.append(message)
        self.arrived.set()

    def on_access_changed(self) -> None:
        self.access_changes += 1
        self.arrived.set()

    async def close_for_restart(self, code: int) -> None:
        raise AssertionError("not part of these tests")

    def force_disconnect(self, reason: str) -> None:
        self.disconnects.append(reason)
        self.arrived.set()

    async def next_arrival(self) -> None:
        await asyncio.wait_for(self.arrived.wait(), 2)
        self.arrived.clear()


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    started = Hub()
    await started.start()
    yield started
    assert started._task is not None  # the hub has no stop: a process's hub lives as long as its loop
    started._task.cancel()


async def send(group: str, message: dict[str, Any]) -> None:
    await get_channel_layer().group_send(group, message)


async def test_an_event_reaches_each_member_of_its_group_once_and_no_one_else(hub: Hub) -> None:
    sarah, kim, elsewhere = Connection("u-s", "c-1"), Connection("u-k", "c-2"), Connection("u-o", "c-3")
    await hub.join(GROUP, sarah)
    await hub.join(GROUP, kim)
    await hub.join(GROUP, kim)  # joining twice is still one member
    await hub.join("rt.orders.loc-2", elsewhere)
    await send(GROUP, {"type": "rt.event", "group": GROUP, "frame": "{}"})
    await sarah.next_arrival()
    await kim.next_arrival()
    assert [len(c.events) for c in (sarah, kim, elsewhere)] == [1, 1, 0]


async def test_after_the_last_member_leaves_the_process_no_longer_gets_the_group(hub: Hub) -> None:
    sarah, witness = Connection("u-s", "c-1"), Connection("u-w", "c-2")
    await hub.join(GROUP, sarah)
    await hub.join(CONTROL_GROUP + ".witness", witness)
    await hub.leave(GROUP, sarah)
    await hub.leave(GROUP, sarah)  # leaving twice is harmless
    assert GROUP not in hub.by_group
    await send(GROUP, {"type": "rt.event", "group": GROUP, "frame": "{}"})
    # A message sent after it proves the first was received (and ignored) or never routed here.
    await send(CONTROL_GROUP + ".witness", {"type": "rt.presence", "group": CONTROL_GROUP + ".witness", "frame": "{}"})
    await witness.next_arrival()
    assert sarah.events == []


async def test_presence_goes_to_the_group_and_access_changes_to_the_named_users(hub: Hub) -> None:
    sarah, sarah_again, kim = Connection("u-s", "c-1"), Connection("u-s", "c-2"), Connection("u-k", "c-3")
    assert [hub.register(c) for c in (sarah, sarah_again, kim)] == [1, 2, 1]
    await hub.join(GROUP, kim)
    await send(GROUP, {"type": "rt.presence", "group": GROUP, "frame": "{}"})
    await kim.next_arrival()
    assert len(kim.presence) == 1 and sarah.presence == []

    await send(CONTROL_GROUP, {"type": "rt.access_changed", "user_ids": ["u-s"]})
    await sarah.next_arrival()
    await sarah_again.next_arrival()
    assert (sarah.access_changes, sarah_again.access_changes, kim.access_changes) == (1, 1, 0)

    await send(CONTROL_GROUP, {"type": "rt.access_changed", "user_ids": None})  # everyone
    for connection in (sarah, sarah_again, kim):
        await connection.next_arrival()
    assert (sarah.access_changes, sarah_again.access_changes, kim.access_changes) == (2, 2, 1)

    hub.unregister(sarah_again)
    hub.unregister(sarah_again)
    await send(CONTROL_GROUP, {"type": "rt.access_changed", "user_ids": ["u-s"]})
    await sarah.next_arrival()
    assert (sarah.access_changes, sarah_again.access_changes) == (3, 2)


async def test_an_operators_disconnect_closes_the_named_connections_here(hub: Hub) -> None:
    sarah, kim = Connection("u-s", "c-1"), Connection("u-k", "c-2")
    hub.register(sarah)
    hub.register(kim)
    await send(CONTROL_GROUP, disconnect_message(connection_ids=["c-2"], reason="  shift over  "))
    await kim.next_arrival()
    assert kim.disconnects == ["shift over"] and sarah.disconnects == []


async def test_a_message_of_an_unknown_type_or_a_failing_member_does_not_stop_the_hub(hub: Hub) -> None:
    class Broken(Connection):
        def deliver_event(self, message: dict[str, Any]) -> int:
            raise RuntimeError("a bug in one connection")

    hub.dispatch({"type": "rt.unknown"})
    await hub.join(GROUP, Broken("u-b", "c-1"))
    await send(GROUP, {"type": "rt.event", "group": GROUP, "frame": "{}"})
    sarah = Connection("u-s", "c-2")
    await hub.join("rt.orders.loc-2", sarah)
    await send("rt.orders.loc-2", {"type": "rt.event", "group": "rt.orders.loc-2", "frame": "{}"})
    await sarah.next_arrival()
    assert len(sarah.events) == 1
