"""Presence across real processes on one Redis, with default settings: shared lists, shared events, and no ghosts
after SIGKILL (more on crashes, restarts and clocks in test_presence_liveness.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.rest import login
from tests.support.wsclient import WsClient

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
AT = {"location_id": "loc-xyz789"}


async def test_members_joined_on_one_process_are_seen_on_another(gateways, shared_redis):
    a = gateways(shared_redis)
    b = gateways(shared_redis)
    sarah = await WsClient.open(a.ws, login(a, "sarah"))
    await sarah.subscribe("orders", AT)
    john = await WsClient.open(b.ws, login(b, "john"))
    reply = await john.request(
        {"type": "presence_join", "channel": "orders", "params": AT, "user_info": {"name": "John Manager"}}
    )
    assert reply["success"] is True
    joined = await sarah.next_of("presence", event="user_joined")
    assert joined["data"]["user_id"] == "user-john" and joined["location_id"] == "loc-xyz789"

    listing = await sarah.request({"type": "presence_list", "channel": "orders", "params": AT})
    assert [u["user_id"] for u in listing["users"]] == ["user-john"]

    await john.close()
    left = await sarah.next_of("presence", event="user_left")
    assert left["data"]["user_id"] == "user-john"
    await sarah.close()


async def test_a_killed_process_leaves_no_ghosts(gateways, shared_redis):
    a = gateways(shared_redis)
    doomed = gateways(shared_redis)
    sarah = await WsClient.open(a.ws, login(a, "sarah"))
    await sarah.request({"type": "presence_join", "channel": "orders", "params": AT, "user_info": {}})
    await sarah.next_of("presence", event="user_joined")
    john = await WsClient.open(doomed.ws, login(doomed, "john"))
    await john.request({"type": "presence_join", "channel": "orders", "params": AT, "user_info": {"tab": 1}})
    await sarah.next_of("presence", event="user_joined")

    doomed.kill()  # SIGKILL: no close frames, no clean-up
    started = time.monotonic()
    left = await sarah.next_of("presence", timeout=10, event="user_left")
    assert left["data"]["user_id"] == "user-john"
    # The bound with the defaults: PRESENCE_TTL_SECONDS (3) + PRESENCE_HEARTBEAT_SECONDS (1) + delivery.
    assert time.monotonic() - started < 5
    listing = await sarah.request({"type": "presence_list", "channel": "orders", "params": AT})
    assert [u["user_id"] for u in listing["users"]] == ["user-sarah"]
    await sarah.close()


async def test_two_tabs_racing_give_one_join_and_one_leave(gateways, shared_redis):
    a = gateways(shared_redis)
    b = gateways(shared_redis)
    sarah = await WsClient.open(a.ws, login(a, "sarah"))
    await sarah.subscribe("orders", AT)
    token = login(a, "john")
    tabs = await asyncio.gather(WsClient.open(a.ws, token), WsClient.open(b.ws, token))
    join = {"type": "presence_join", "channel": "orders", "params": AT, "user_info": {"name": "John"}}
    await asyncio.gather(*(tab.request(dict(join)) for tab in tabs))
    await sarah.next_of("presence", event="user_joined")
    listing = await sarah.request({"type": "presence_list", "channel": "orders", "params": AT})
    assert len(listing["users"]) == 1
    await asyncio.gather(*(tab.close() for tab in tabs))
    await sarah.next_of("presence", event="user_left")
    with pytest.raises(TimeoutError):
        await sarah.next_of("presence", timeout=1.5)  # no second join or leave
    await sarah.close()
