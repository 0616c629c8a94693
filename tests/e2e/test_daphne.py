"""One real daphne process, the embedded default (in-memory layer), a real socket and the `websockets` client."""

from __future__ import annotations

import pytest

from tests.support.rest import http_json, login
from tests.support.wsclient import WsClient

pytestmark = pytest.mark.e2e


async def test_subscribe_publish_receive_over_a_real_socket(gateways):
    gateway = gateways()
    sarah = await WsClient.open(gateway.ws, login(gateway, "sarah"))
    assert sarah.connected["user_id"] == "user-sarah"
    reply = await sarah.subscribe("orders", {"location_id": "loc-xyz789", "statuses": ["open"]})
    assert reply["success"] is True and reply["subscription_id"].startswith("sub-")

    john = login(gateway, "john")
    for status in ("preparing", "open"):
        code, body = http_json(
            "POST",
            f"{gateway.http}/v1/events",
            {"channel": "orders", "event": "order.created", "location_id": "loc-xyz789", "data": {"status": status}},
            token=john,
        )
        assert code == 202, body
    event = await sarah.next_of("event")
    assert event["data"] == {"status": "open"}  # the "preparing" one was filtered out
    assert event["subscription_id"] == reply["subscription_id"]
    assert event["stream"] == "orders:loc-xyz789" and event["seq"] == 2
    await sarah.close()


async def test_bad_token_is_refused_with_4401(gateways):
    import websockets

    gateway = gateways()
    connection = await websockets.connect(f"{gateway.ws}?access_token=not-a-jwt")
    frame = await connection.recv()
    assert '"code":"unauthenticated"' in frame
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await connection.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_healthz_reports_database_and_layer(gateways):
    gateway = gateways()
    code, body = http_json("GET", f"{gateway.http}/healthz")
    assert code == 200
    assert body == {"status": "ok", "database": "ok", "channel_layer": "ok"}
