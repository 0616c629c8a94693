"""Resume on subscribe (in one process): replay after a position, filters, bounds, authorization, ordering."""

from __future__ import annotations

import asyncio

import pytest

from realtime.publishing import apublish
from tests.support.asgi import open_client

pytestmark = pytest.mark.django_db(transaction=True)
AT = {"location_id": "loc-xyz789"}
STREAM = "orders:loc-xyz789"


async def publish_orders(count: int, start: int = 0, status: str = "open") -> None:
    for n in range(start, start + count):
        await apublish("orders", "order.created", location_id="loc-xyz789", data={"n": n, "status": status})


async def test_resume_replays_exactly_what_was_missed_then_goes_live(token_for):
    async with open_client(token_for("kim")) as client:
        await client.subscribe("orders", AT)
        await publish_orders(3)
        seen = [await client.recv() for _ in range(3)]
    position = {"seq": seen[-1]["seq"], "epoch": seen[-1]["epoch"]}
    await publish_orders(20, start=3)

    async with open_client(token_for("kim")) as client:
        reply = await client.request(
            {"type": "subscribe", "id": "r", "channel": "orders", "params": AT, "resume": {STREAM: position}}
        )
        assert reply["resumed"] == {STREAM: True}
        await publish_orders(2, start=23)  # live events right behind the replay
        frames = [await client.recv() for _ in range(22)]
        assert [f["data"]["n"] for f in frames] == list(range(3, 25))
        assert [f["seq"] for f in frames] == list(range(4, 26))
        assert all(f["subscription_id"] == reply["subscription_id"] for f in frames)
        assert await client.nothing()


async def test_resume_beyond_the_window_says_false_and_replays_nothing(token_for, settings):
    settings.REALTIME = {"HISTORY_MAX_EVENTS": 5}
    async with open_client(token_for("kim")) as client:
        await client.subscribe("orders", AT)
        await publish_orders(1)
        first = await client.recv()
    await publish_orders(10, start=1)
    async with open_client(token_for("kim")) as client:
        reply = await client.request(
            {
                "type": "subscribe",
                "channel": "orders",
                "params": AT,
                "resume": {STREAM: {"seq": first["seq"], "epoch": first["epoch"]}},
            }
        )
        assert reply["resumed"] == {STREAM: False}
        assert await client.nothing()
        await publish_orders(1, start=11)
        assert (await client.recv())["data"]["n"] == 11  # live continues


async def test_resume_with_an_unknown_epoch_says_false(token_for):
    await publish_orders(2)
    async with open_client(token_for("kim")) as client:
        reply = await client.request(
            {"type": "subscribe", "channel": "orders", "params": AT, "resume": {STREAM: {"seq": 0, "epoch": "gone"}}}
        )
        assert reply["resumed"] == {STREAM: False}
        assert await client.nothing()


async def test_filters_apply_to_replayed_events(token_for):
    await publish_orders(2, status="open")
    await publish_orders(2, start=2, status="preparing")
    async with open_client(token_for("kim")) as client:
        reply = await client.request(
            {
                "type": "subscribe",
                "channel": "orders",
                "params": {**AT, "statuses": ["preparing"]},
                "resume": {STREAM: 0},
            }
        )
        assert reply["resumed"] == {STREAM: True}
        replayed = [await client.recv() for _ in range(2)]
        assert [f["data"]["n"] for f in replayed] == [2, 3]
        assert await client.nothing()


async def test_no_replay_of_streams_the_user_may_not_read(token_for):
    await apublish("orders", "order.created", location_id="loc-abc456", data={"secret": True})
    async with open_client(token_for("sarah")) as client:
        refused = await client.request(
            {
                "type": "subscribe",
                "channel": "orders",
                "params": {"location_id": "loc-abc456"},
                "resume": {"orders:loc-abc456": 0},
            }
        )
        assert refused["code"] == "unauthorized"
        # A resume entry for a stream outside the subscription is answered false and replays nothing.
        reply = await client.request(
            {"type": "subscribe", "channel": "orders", "params": AT, "resume": {"orders:loc-abc456": 0}}
        )
        assert reply["resumed"] == {"orders:loc-abc456": False}
        assert await client.nothing()


async def test_concurrent_publishers_never_reorder_a_stream(token_for):
    async with open_client(token_for("kim")) as client:
        await client.subscribe("orders", AT)
        await asyncio.gather(*(publish_orders(10, start=100 * p) for p in range(5)))
        seqs = [(await client.recv())["seq"] for _ in range(50)]
        assert seqs == list(range(1, 51))


async def test_subscribe_with_empty_resume_reports_positions_that_later_resume_from(token_for):
    await publish_orders(2)
    async with open_client(token_for("kim")) as client:
        reply = await client.request({"type": "subscribe", "channel": "orders", "params": AT, "resume": {}})
        assert reply["resumed"] == {}
        position = reply["positions"][STREAM]
        assert position["seq"] == 2 and position["epoch"]
    await publish_orders(3, start=2)  # published while the client, which had received nothing, was away
    async with open_client(token_for("kim")) as client:
        reply = await client.request(
            {"type": "subscribe", "channel": "orders", "params": AT, "resume": {STREAM: position}}
        )
        assert reply["resumed"] == {STREAM: True}
        assert [(await client.recv())["data"]["n"] for _ in range(3)] == [2, 3, 4]


async def test_a_later_seq_that_overtakes_an_earlier_one_is_reordered_from_history(token_for):
    from channels.layers import get_channel_layer

    from realtime.publishing import build_event, envelope_tail, hub_message
    from realtime.registry import get_channel
    from realtime.stores.history import get_history, record_json
    from realtime.streams import group_for_stream

    spec = get_channel("orders")
    assert spec is not None
    async with open_client(token_for("kim")) as client:
        await client.request({"type": "subscribe", "channel": "orders", "params": AT, "resume": {}})
        messages = []
        for n in (1, 2):  # two publishers got seq 1 and 2 ...
            record = build_event(spec, "order.created", "loc-xyz789", {"n": n})
            seq, epoch = await get_history().append(STREAM, record_json(record))
            tail = envelope_tail("orders", STREAM, seq, epoch, record)
            messages.append(hub_message(STREAM, seq, epoch, record, tail))
        layer = get_channel_layer()
        for message in reversed(messages):  # ... and the second one's send overtook the first one's
            await layer.group_send(group_for_stream(STREAM), message)
        frames = [await client.recv() for _ in range(2)]
        assert [(f["seq"], f["data"]["n"]) for f in frames] == [(1, 1), (2, 2)]
        assert await client.nothing()
