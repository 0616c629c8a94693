"""Several real daphne processes sharing one Redis: what one process publishes reaches every other's subscribers."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.processes import manage
from tests.support.rest import http_json, login
from tests.support.wsclient import WsClient

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

SAVE_ORDER = (
    "from locations.models import Location, Order; "
    "Order.objects.create(location=Location.objects.get(public_id='loc-xyz789'), type='takeout', status='open')"
)


async def test_publish_on_one_process_reaches_subscribers_on_another(gateways, shared_redis):
    a = gateways(shared_redis)
    b = gateways(shared_redis)
    kim = await WsClient.open(a.ws, login(a, "kim"))
    await kim.subscribe("orders", {"location_id": "loc-xyz789"})

    # 1. REST publish through process B.
    code, body = http_json(
        "POST",
        f"{b.http}/v1/events",
        {"channel": "orders", "event": "order.paid", "location_id": "loc-xyz789", "data": {"status": "paid"}},
        token=login(b, "john"),
    )
    assert code == 202, body
    event = await kim.next_of("event")
    assert event["event"] == "order.paid" and event["event_id"] == body["event_id"]

    # 2. A model save in another process (a management command, as a worker would), through its signal.
    manage(a.env, "shell", "-c", SAVE_ORDER)
    event = await kim.next_of("event")
    assert event["event"] == "order.created" and event["data"]["type"] == "takeout"
    assert event["seq"] == body["seq"] + 1  # one stream, one sequence, whoever published
    await kim.close()


async def test_delivery_and_presence_recover_after_redis_restarts(gateways, private_redis):
    beat = {"REALTIME_PRESENCE_HEARTBEAT_SECONDS": "1"}
    a = gateways(private_redis.url, **beat)
    b = gateways(private_redis.url, **beat)
    kim = await WsClient.open(a.ws, login(a, "kim"))
    await kim.subscribe("orders", {"location_id": "loc-xyz789"})
    at = {"channel": "orders", "params": {"location_id": "loc-xyz789"}}
    await kim.request({"type": "presence_join", **at, "user_info": {"name": "Kim"}})
    john = login(b, "john")
    body = {"channel": "orders", "event": "order.created", "location_id": "loc-xyz789", "data": {"n": 1}}
    assert http_json("POST", f"{b.http}/v1/events", body, token=john)[0] == 202
    assert (await kim.next_of("event"))["data"] == {"n": 1}

    private_redis.stop()
    code, error = http_json("POST", f"{b.http}/v1/events", {**body, "data": {"n": 2}}, token=john)
    assert code == 503 and error["code"] == "unavailable"  # the publisher is told; nothing is silently dropped
    code, health = http_json("GET", f"{a.http}/healthz")
    assert code == 503 and health["channel_layer"] != "ok"
    private_redis.start()

    # Neither daphne restarts: the layer reconnects and re-subscribes, and delivery resumes.
    for attempt in range(100):
        code, _ = http_json("POST", f"{b.http}/v1/events", {**body, "data": {"n": 3, "try": attempt}}, token=john)
        if code == 202:
            try:
                event = await kim.next_of("event", timeout=0.5)
            except TimeoutError:
                continue
            assert event["data"]["n"] == 3
            break
        await asyncio.sleep(0.2)
    else:
        pytest.fail(f"delivery did not resume after Redis restarted:\n{a.log()}")
    # Presence lived in the lost Redis; the heartbeat re-joins live members, so kim is listed again.
    for _ in range(50):
        listing = await kim.request({"type": "presence_list", **at})
        if [u["user_id"] for u in listing.get("users", [])] == ["user-kim"]:
            break
        await asyncio.sleep(0.2)
    else:
        pytest.fail(f"presence was not rebuilt after Redis restarted: {listing}")
    await kim.close()
