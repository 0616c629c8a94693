"""GET /metrics of a real gateway process after a scripted session, with exact counter values; who may scrape it."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import Gateway
from tests.support.rest import http_json, login
from tests.support.wsclient import WsClient

pytestmark = [pytest.mark.e2e]
AT = {"location_id": "loc-xyz789"}
SLOW_EVENTS = 200
SLOW_EVENT_PAD = 60 * 1024


def scrape(gateway: Gateway, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"{gateway.http}/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped[(name, tuple(sorted(labels.items())))]  # type: ignore[no-any-return]


async def publish(gateway: Gateway, token: str, channel: str, event: str, data: dict) -> None:
    body = {"channel": channel, "event": event, "location_id": "loc-xyz789", "data": data}
    code, answer = await asyncio.to_thread(http_json, "POST", f"{gateway.http}/v1/events", body, token)
    assert code == 202, answer


async def wait_for_metric(gateway: Gateway, name: str, wanted: float, timeout: float = 30, **labels: str) -> dict:
    """Scrape until ``name{labels}`` reaches ``wanted`` (the close handshake of a peer finishes asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        status, text = await asyncio.to_thread(scrape, gateway)
        assert status == 200, text
        scraped = samples(text)
        if value(scraped, name, **labels) == wanted or time.monotonic() > deadline:
            return scraped
        await asyncio.sleep(0.2)


async def test_a_scripted_session_gives_exact_counter_values(gateways):
    # A long abort delay: the slow client, reading late, still finds its 4408 close frame (as in the hardening test).
    gateway = gateways(REALTIME_MAX_SEND_BUFFER_BYTES=str(256 * 1024), REALTIME_SLOW_CONSUMER_ABORT_SECONDS="60")
    john = login(gateway, "john")
    status, before = scrape(gateway)
    assert status == 200
    assert value(samples(before), "realtime_connections_opened_total") == 0

    # A bad token: refused with 4401.
    with pytest.raises(websockets.ConnectionClosed) as refused:
        async with websockets.connect(f"{gateway.ws}?access_token=not-a-jwt") as bad:
            assert json.loads(await asyncio.wait_for(bad.recv(), 10))["code"] == "unauthenticated"
            await asyncio.wait_for(bad.recv(), 10)
    assert refused.value.rcvd is not None and refused.value.rcvd.code == 4401

    # Connect, subscribe, a bad request (unknown channel) and a frame that is not JSON, ten events.
    sarah = await WsClient.open(gateway.ws, login(gateway, "sarah"))
    subscribed = await sarah.subscribe("orders", AT)
    assert subscribed["success"] is True
    assert (await sarah.subscribe("no-such-channel", AT))["code"] == "channel_not_found"
    await sarah.conn.send("{not json")
    assert (await sarah.next_of("error"))["code"] == "invalid_message"
    for n in range(10):
        await publish(gateway, john, "orders", "order.updated", {"n": n})
    events = await sarah.events(10, timeout=20)
    assert [e["data"]["n"] for e in events] == list(range(10))
    # Resume from seq 5 of the stream: recovered from history.
    epoch = events[0]["epoch"]
    resumed = await sarah.subscribe("orders", AT, resume={"orders:loc-xyz789": {"seq": 5, "epoch": epoch}})
    assert resumed["resumed"] == {"orders:loc-xyz789": True}
    assert [e["seq"] for e in await sarah.events(5, timeout=20)] == [6, 7, 8, 9, 10]

    # A slow consumer on another channel, so the orders figures stay exact: it reads nothing and is closed 4408.
    slow = await websockets.connect(f"{gateway.ws}?access_token={john}", max_queue=1)
    await slow.send(json.dumps({"type": "subscribe", "id": "s", "channel": "tables", "params": AT}))
    await asyncio.sleep(0.5)
    for n in range(SLOW_EVENTS):
        await publish(gateway, john, "tables", "table.seated", {"n": n, "pad": "x" * SLOW_EVENT_PAD})
    with pytest.raises(websockets.ConnectionClosed) as closed:
        for _ in range(SLOW_EVENTS + 5):
            await asyncio.wait_for(slow.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408

    scraped = await wait_for_metric(gateway, "realtime_disconnects_total", 1, code="4408")
    expected = {
        ("realtime_connections_opened_total", ()): 3,
        ("realtime_connections", ()): 1,
        ("realtime_subscriptions", (("channel", "orders"),)): 2,
        ("realtime_subscriptions", (("channel", "tables"),)): 0,
        ("realtime_disconnects_total", (("code", "4401"),)): 1,
        ("realtime_disconnects_total", (("code", "4408"),)): 1,
        ("realtime_disconnects_total", (("code", "1000"),)): 0,
        ("realtime_commands_total", (("result", "ok"), ("type", "connect"))): 2,
        ("realtime_commands_total", (("result", "unauthenticated"), ("type", "connect"))): 1,
        ("realtime_commands_total", (("result", "ok"), ("type", "subscribe"))): 3,
        ("realtime_commands_total", (("result", "channel_not_found"), ("type", "subscribe"))): 1,
        ("realtime_commands_total", (("result", "invalid_message"), ("type", "invalid"))): 1,
        ("realtime_command_duration_seconds_count", (("type", "subscribe"),)): 4,
        ("realtime_events_published_total", (("channel", "orders"), ("source", "rest"))): 10,
        ("realtime_events_published_total", (("channel", "tables"), ("source", "rest"))): SLOW_EVENTS,
        ("realtime_events_published_total", (("channel", "orders"), ("source", "python"))): 0,
        ("realtime_history_append_seconds_count", ()): 10 + SLOW_EVENTS,
        # Ten live frames; the five resumed ones came from history, not the live feed.
        ("realtime_deliveries_total", (("channel", "orders"),)): 10,
        ("realtime_event_delivery_lag_seconds_count", (("channel", "orders"),)): 10,
        ("realtime_resume_total", (("result", "recovered"),)): 1,
        ("realtime_resume_total", (("result", "not_recovered"),)): 0,
        ("realtime_slow_consumer_closes_total", ()): 1,
        ("realtime_rate_limited_total", ()): 0,
        ("realtime_presence_members", ()): 0,
        ("realtime_redis_errors_total", (("op", "publish"),)): 0,
    }
    assert {key: scraped.get(key) for key in expected} == expected
    # The tables events reached the slow consumer until it was cut off: some, never more than were published.
    assert 0 < value(scraped, "realtime_deliveries_total", channel="tables") <= SLOW_EVENTS
    assert value(scraped, "process_cpu_seconds_total") > 0  # the client library's process metrics
    # No label by location, user or connection anywhere.
    assert not [key for key in scraped if any(v.startswith(("loc-", "user-", "conn-")) for _, v in key[1])]
    await sarah.close()


async def test_metrics_are_refused_outside_the_allowed_addresses_unless_the_token_is_presented(gateways):
    gateway = gateways(METRICS_ALLOWED_IPS="10.1.2.0/24", METRICS_TOKEN="scrape-secret-123")
    status, body = scrape(gateway)
    assert status == 403 and json.loads(body)["code"] == "forbidden"
    assert scrape(gateway, "wrong-secret")[0] == 403
    status, body = scrape(gateway, "scrape-secret-123")
    assert status == 200 and "realtime_connections_opened_total" in body


async def test_metrics_can_be_turned_off(gateways):
    gateway = gateways(REALTIME_METRICS_ENABLED="0")
    status, body = scrape(gateway)
    assert status == 404 and json.loads(body)["code"] == "not_found"
