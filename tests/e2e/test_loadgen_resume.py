"""The load generator's screens reconnect and resume like real clients: a gateway restart loses them nothing."""

from __future__ import annotations

import asyncio
from array import array

import pytest

from bench.loadgen import ConnectionPlan, Endpoint, LoadGenerator, SubscriptionSpec
from tests.support.processes import manage
from tests.support.rest import login

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

PUBLISH = (
    "from realtime.publishing import publish\n"
    "for i in range({start}, {stop}):\n"
    "    publish('orders', 'order.created', location_id='loc-xyz789', data={{'sent_ns': 1, 'run': 'r', 'i': i}})\n"
)


async def test_screens_resume_after_the_gateway_restarts(gateways, shared_redis):
    gateway = gateways(shared_redis)
    token = login(gateway, "kim")
    plans = [
        ConnectionPlan(
            Endpoint("127.0.0.1", gateway.port), token, [SubscriptionSpec("orders", {"location_id": "loc-xyz789"})]
        )
        for _ in range(3)
    ]
    generator = LoadGenerator()
    generator._tag = "r"
    generator._counts = array("i", [0] * 10)
    try:
        report = await generator.open(plans)
        assert report.subscribed == 3
        manage(gateway.env, "shell", "-c", PUBLISH.format(start=0, stop=3))
        await asyncio.sleep(1)
        gateway.stop()  # SIGTERM: the screens get 1012 and start reconnecting
        manage(gateway.env, "shell", "-c", PUBLISH.format(start=3, stop=7))  # published while the gateway is down
        gateway.start()  # same port
        for _ in range(100):
            if generator.reconnected == 3 and sum(generator._counts) == 3 * 7:
                break
            await asyncio.sleep(0.1)
        assert generator.reconnected == 3
        assert list(generator._counts[:7]) == [3] * 7  # every event once per screen, none lost, none twice
        assert generator.resumed_streams[("orders:loc-xyz789", True)] == 3
    finally:
        await generator.close()
