"""Idempotent and batch publishing across two real gateway processes sharing one Redis (issue 14)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.rest import http_json, login
from tests.support.wsclient import WsClient

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
ORDER = {"channel": "orders", "event": "order.created", "location_id": "loc-xyz789"}


async def test_one_key_sent_to_two_processes_at_once_publishes_once(gateways, shared_redis):
    a = gateways(shared_redis)
    b = gateways(shared_redis)
    kim = await WsClient.open(a.ws, login(a, "kim"))
    await kim.subscribe("orders", {"location_id": "loc-xyz789"})
    john = login(b, "john")
    with ThreadPoolExecutor(8) as pool:
        for n in range(5):
            body = {**ORDER, "data": {"n": n}, "idempotency_key": f"order-{n}-created"}
            urls = [f"{gateway.http}/v1/events" for gateway in [a, b] * 4]
            answers = list(pool.map(lambda url, sent=body: http_json("POST", url, sent, token=john), urls))
            assert sorted(code for code, _ in answers) == [200] * 7 + [202], answers
            assert len({(reply["event_id"], reply["seq"]) for _, reply in answers}) == 1
    events = await kim.events(5)
    assert [event["data"]["n"] for event in events] == [0, 1, 2, 3, 4]
    assert [event["seq"] for event in events] == [1, 2, 3, 4, 5]
    with pytest.raises(asyncio.TimeoutError):
        await kim.next_of("event", timeout=0.5)  # no repeat reached the screen
    code, error = http_json("POST", f"{a.http}/v1/events", {**ORDER, "idempotency_key": "order-0-created"}, john)
    assert code == 409 and error["code"] == "idempotency_conflict"
    await kim.close()


async def test_a_batch_on_one_process_reaches_the_others_screens_in_order(gateways, shared_redis):
    a = gateways(shared_redis)
    b = gateways(shared_redis)
    kim = await WsClient.open(a.ws, login(a, "kim"))
    await kim.subscribe("orders", {"location_id": "loc-xyz789"})
    items = [{**ORDER, "data": {"i": i}} if i % 2 else {**ORDER, "location_id": "loc-abc456"} for i in range(30)]
    code, body = http_json("POST", f"{b.http}/v1/events/batch", {"events": items}, token=login(b, "john"))
    assert code == 202, body
    assert [r["stream"] for r in body["results"]] == [f"orders:{item['location_id']}" for item in items]
    events = await kim.events(15)
    assert [event["data"]["i"] for event in events] == list(range(1, 30, 2))
    assert [event["seq"] for event in events] == list(range(1, 16))
    await kim.close()
