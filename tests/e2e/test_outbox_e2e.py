"""The outbox with real gateway processes: each one runs a relay; saves made anywhere reach the screens once.

PostgreSQL when DATABASE_URL names it (SKIP LOCKED claims, LISTEN/NOTIFY wake-ups), else SQLite (both relays poll,
the idempotency keys keep the stream exactly once).
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request

import pytest

from tests.support.processes import Gateway, manage
from tests.support.rest import http_json, login
from tests.support.wsclient import WsClient

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

STREAM = "orders:loc-xyz789"
SAVE_ORDERS = (
    "from locations.models import Location, Order\n"
    "location = Location.objects.get(public_id='loc-xyz789')\n"
    "for n in range({count}):\n"
    "    print(Order.objects.create(location=location, type='takeout', table_label=f'e2e-{{n}}').public_id)\n"
)
PUBLISHED = re.compile(r'^realtime_events_published_total\{channel="orders",source="model"\} (\S+)$', re.M)


def saved_orders(output: str) -> list[str]:
    return re.findall(r"^ord-\w+$", output, re.M)  # the shell also prints what it imported


def published_model_events(gateway: Gateway) -> float:
    with urllib.request.urlopen(f"{gateway.http}/metrics", timeout=5) as response:
        found = PUBLISHED.search(response.read().decode())
    assert found is not None
    return float(found.group(1))


def wait_for_empty_outbox(*gateways: Gateway, timeout: float = 20) -> None:
    """Rows left by earlier tests of the shared database are relayed first, so counts below are this test's own."""
    deadline = time.monotonic() + timeout
    while True:
        bodies = [http_json("GET", f"{gateway.http}/healthz")[1] for gateway in gateways]
        if all(body.get("backlog") == 0 for body in bodies):
            return
        assert time.monotonic() < deadline, bodies
        time.sleep(0.1)


async def test_two_gateways_relay_each_saved_order_once_in_order(gateways, shared_redis):
    a = gateways(shared_redis)
    b = gateways(shared_redis)
    wait_for_empty_outbox(a, b)
    before = published_model_events(a) + published_model_events(b)
    kim = await WsClient.open(b.ws, login(b, "kim"))
    assert (await kim.subscribe("orders", {"location_id": "loc-xyz789"}))["success"] is True

    # A worker process (no gateway, no relay) saves the orders; the gateways' relays publish them.
    created = saved_orders(manage(a.env, "shell", "-c", SAVE_ORDERS.format(count=30)))
    assert len(created) == 30
    events = [await kim.next_of("event", timeout=15) for _ in range(30)]
    assert [event["data"]["order_id"] for event in events] == created  # in commit order, each once
    assert [event["seq"] for event in events] == list(range(events[0]["seq"], events[0]["seq"] + 30))
    with pytest.raises(TimeoutError):
        await kim.next_of("event", timeout=0.5)
    await kim.close()

    wait_for_empty_outbox(a, b)
    assert published_model_events(a) + published_model_events(b) - before == 30  # each row published once
    code, body = http_json("GET", f"{a.http}/healthz")
    assert code == 200 and body["outbox"] == "ok" and body["backlog"] == 0
    backlog = manage(a.env, "outbox_backlog")
    assert backlog.splitlines()[0] == "backlog: 0 unsent"


async def test_an_order_saved_while_redis_is_down_reaches_the_kitchen_after_it_returns(gateways, private_redis):
    """The reported bug, as a new user met it: Redis stopped, Order.objects.create() from manage.py shell."""
    gateway = gateways(private_redis.url, REALTIME_OUTBOX_RETRY_MAX_SECONDS="0.5")
    wait_for_empty_outbox(gateway)
    private_redis.stop()
    env = {**gateway.env, "REDIS_URL": private_redis.url}
    created = saved_orders(manage(env, "shell", "-c", SAVE_ORDERS.format(count=1)))  # no AttributeError, exit status 0
    assert len(created) == 1
    backlog = manage(env, "outbox_backlog")
    assert backlog.splitlines()[0] == "backlog: 1 unsent" and f"{STREAM}: 1 unsent" in backlog
    code, health = http_json("GET", f"{gateway.http}/healthz")
    assert code == 503 and health["backlog"] == 1

    private_redis.start()
    deadline = time.monotonic() + 20
    while True:  # the layer reconnects by itself; new connections are refused (1013) until it has
        try:
            kim = await WsClient.open(gateway.ws, login(gateway, "kim"))
            break
        except Exception:
            assert time.monotonic() < deadline, gateway.log()
            await asyncio.sleep(0.2)
    reply = await kim.subscribe("orders", {"location_id": "loc-xyz789"}, resume={STREAM: 0})
    assert reply["success"] is True, reply
    event = await kim.next_of("event", timeout=15)
    assert event["event"] == "order.created" and event["data"]["order_id"] == created[0]
    with pytest.raises(TimeoutError):
        await kim.next_of("event", timeout=0.5)
    await kim.close()
    wait_for_empty_outbox(gateway)
