"""The presence keeper: what this process holds in presence, joined again (and announced) after liveness is lost."""

from __future__ import annotations

from typing import Any

from channels.layers import get_channel_layer

from realtime.stores import presence
from realtime.stores.presence import Member, PresenceKeeper
from realtime.streams import group_for_stream

KEY = "orders:loc-1"


def member(user_id: str) -> Member:
    return Member(user_id, {"name": user_id}, "2026-12-02T10:00:00Z")


async def listen(key: str) -> tuple[Any, str]:
    layer = get_channel_layer()
    channel = await layer.new_channel("test.")
    await layer.group_add(group_for_stream(key), channel)
    return layer, channel


async def test_rejoin_all_joins_every_tracked_member_again_and_announces_each_user_once() -> None:
    keeper = PresenceKeeper()
    keeper.track("c-1", KEY, member("u-s"))
    keeper.track("c-2", KEY, member("u-s"))  # the same user on a second connection
    keeper.track("c-3", KEY, member("u-k"))
    keeper.track("c-3", "tables:loc-1", member("u-k"))
    layer, channel = await listen(KEY)

    assert await keeper.rejoin_all() == 4
    store = presence.get_presence_store()
    assert sorted(m.user_id for m in await store.members(KEY)) == ["u-k", "u-s", "u-s"]
    assert [m.user_id for m in await store.members("tables:loc-1")] == ["u-k"]
    frames = [(await layer.receive(channel))["frame"] for _ in range(2)]
    assert all('"event":"user_joined"' in frame for frame in frames)
    assert sorted('"user_id":"u-s"' in frame for frame in frames) == [False, True]


async def test_rejoining_what_is_still_there_announces_nothing() -> None:
    keeper = PresenceKeeper()
    keeper.track("c-1", KEY, member("u-s"))
    await presence.ajoin(KEY, "c-1", member("u-s"))
    layer, channel = await listen(KEY)
    assert await keeper.rejoin_all() == 1
    await layer.group_send(group_for_stream(KEY), {"type": "test.marker"})
    assert (await layer.receive(channel))["type"] == "test.marker"  # no user_joined came before it
    assert len(await presence.get_presence_store().members(KEY)) == 1


async def test_untracked_members_are_not_joined_again() -> None:
    keeper = PresenceKeeper()
    keeper.track("c-1", KEY, member("u-s"))
    keeper.track("c-1", "tables:loc-1", member("u-s"))
    keeper.untrack("c-1", KEY)
    keeper.untrack("c-1", "tables:loc-1")
    keeper.untrack("c-9", KEY)  # never tracked: nothing to do
    assert keeper.local == {}
    assert await keeper.rejoin_all() == 0
    assert await presence.get_presence_store().members(KEY) == []
