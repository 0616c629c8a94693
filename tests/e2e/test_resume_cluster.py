"""Resume across real processes on Redis: history shared by every process and kept across a process restart."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.rest import http_json, login
from tests.support.wsclient import WsClient

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
AT = {"location_id": "loc-xyz789"}
STREAM = "kds:loc-xyz789"


def publish(gateway, token: str, n: int, station: str = "grill") -> dict:
    code, body = http_json(
        "POST",
        f"{gateway.http}/v1/events",
        {
            "channel": "kds",
            "event": "kds.ticket.created",
            "location_id": "loc-xyz789",
            "data": {"n": n, "station": station},
        },
        token=token,
    )
    assert code == 202, body
    return body


async def test_reconnect_with_resume_gets_exactly_the_missed_events(gateways, shared_redis):
    a, b = gateways(shared_redis), gateways(shared_redis)
    tokens = {g.port: login(g, "john") for g in (a, b)}
    kim = await WsClient.open(a.ws, login(a, "kim"))
    await kim.subscribe("kds", AT)
    publish(a, tokens[a.port], 0)
    last = await kim.next_of("event")
    await kim.close()  # the kitchen display drops off the Wi-Fi

    for n in range(1, 21):  # 20 tickets fired meanwhile, through both processes
        publish(a if n % 2 else b, tokens[(a if n % 2 else b).port], n)

    kim = await WsClient.open(b.ws, login(b, "kim"))
    reply = await kim.subscribe("kds", AT, resume={STREAM: {"seq": last["seq"], "epoch": last["epoch"]}})
    assert reply["resumed"] == {STREAM: True}
    replayed = await kim.events(20)
    assert [e["data"]["n"] for e in replayed] == list(range(1, 21))
    publish(a, tokens[a.port], 21)
    live = await kim.next_of("event")
    assert live["data"]["n"] == 21 and live["seq"] == replayed[-1]["seq"] + 1
    with pytest.raises(TimeoutError):
        await kim.next_of("event", timeout=0.5)  # no duplicate at the seam
    await kim.close()


async def test_history_survives_a_gateway_restart(gateways, shared_redis):
    a = gateways(shared_redis)
    token = login(a, "john")
    first = publish(a, token, 1)
    publish(a, token, 2)
    a.stop()
    again = gateways(shared_redis)
    kim = await WsClient.open(again.ws, login(again, "kim"))
    reply = await kim.subscribe("kds", AT, resume={STREAM: {"seq": first["seq"], "epoch": first["epoch"]}})
    assert reply["resumed"] == {STREAM: True}
    assert (await kim.next_of("event"))["data"]["n"] == 2
    await kim.close()


async def test_concurrent_publishers_on_two_processes_keep_each_stream_in_order(gateways, shared_redis):
    a, b = gateways(shared_redis), gateways(shared_redis)
    tokens = {g.port: login(g, "john") for g in (a, b)}
    kim = await WsClient.open(a.ws, login(a, "kim"))
    await kim.subscribe("kds", AT)
    total = 120

    def fire(n: int) -> dict:
        gateway = (a, b)[n % 2]
        return publish(gateway, tokens[gateway.port], n)

    with ThreadPoolExecutor(max_workers=8) as pool:
        await asyncio.get_running_loop().run_in_executor(None, lambda: list(pool.map(fire, range(total))))
    seqs = [e["seq"] for e in await kim.events(total, timeout=10)]
    assert seqs == sorted(seqs) and seqs == list(range(seqs[0], seqs[0] + total))  # in order, no gap, no dup
    await kim.close()
