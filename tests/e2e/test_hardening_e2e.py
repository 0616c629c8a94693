"""Hardening over real sockets: slow consumers, restarts, dead peers, limits and revocation across processes."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time

import pytest
import websockets

from tests.support.processes import manage
from tests.support.rest import http_json, login
from tests.support.wsclient import WsClient

pytestmark = [pytest.mark.e2e]
AT = {"location_id": "loc-xyz789"}


def publish_body(n: int, size: int = 0) -> dict:
    return {
        "channel": "orders",
        "event": "order.updated",
        "location_id": "loc-xyz789",
        "data": {"n": n, "pad": "x" * size},
    }


SERVERS = pytest.mark.parametrize("server", ["uvicorn", "daphne"])


@SERVERS
async def test_a_client_that_stops_reading_is_closed_4408_and_others_keep_receiving(gateways, server):
    # The abort delay is long here so the test client, reading late, still finds the 4408 close frame.
    gateway = gateways(
        server=server, REALTIME_MAX_SEND_BUFFER_BYTES=str(256 * 1024), REALTIME_SLOW_CONSUMER_ABORT_SECONDS="60"
    )
    john = login(gateway, "john")
    token = login(gateway, "kim")
    # The slow client reads nothing: the library stops pulling from the socket once 1 frame is queued.
    slow = await websockets.connect(f"{gateway.ws}?access_token={token}", max_queue=1)
    await slow.send('{"type": "subscribe", "id": "s", "channel": "orders", "params": {"location_id": "loc-xyz789"}}')
    healthy = await WsClient.open(gateway.ws, token)
    await healthy.subscribe("orders", AT)
    await asyncio.sleep(0.3)

    total = 200
    healthy_reads = asyncio.create_task(healthy.events(total, timeout=20))  # a client that keeps up, concurrently
    for n in range(total):  # 200 x 60 KiB: far more than the kernel socket buffers plus the 256 KiB bound
        code, _ = await asyncio.to_thread(
            http_json, "POST", f"{gateway.http}/v1/events", publish_body(n, 60 * 1024), john
        )
        assert code == 202
    received = [e["data"]["n"] for e in await healthy_reads]
    assert received == list(range(total))

    with pytest.raises(websockets.ConnectionClosed) as closed:
        for _ in range(total + 5):
            await asyncio.wait_for(slow.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408
    await healthy.close()


@pytest.mark.redis
@SERVERS
async def test_sigterm_closes_with_1012_and_leaves_presence_at_once(gateways, shared_redis, server):
    ttl = {"REALTIME_PRESENCE_TTL_SECONDS": "30"}  # a clean leave must not wait for expiry
    a = gateways(shared_redis, **ttl)
    b = gateways(shared_redis, server=server, **ttl)
    sarah = await WsClient.open(a.ws, login(a, "sarah"))
    await sarah.subscribe("orders", AT)
    john = await WsClient.open(b.ws, login(b, "john"))
    await john.request({"type": "presence_join", "channel": "orders", "params": AT, "user_info": {}})
    await sarah.next_of("presence", event="user_joined")

    started = time.monotonic()
    b.stop()  # SIGTERM
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await john.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    left = await sarah.next_of("presence", event="user_left", timeout=5)
    assert left["data"]["user_id"] == "user-john" and time.monotonic() - started < 10
    await sarah.close()


@SERVERS
async def test_a_peer_that_stops_answering_pings_is_dropped(gateways, server):
    gateway = gateways(server=server, GATEWAY_PING_INTERVAL_SECONDS="1", GATEWAY_PING_TIMEOUT_SECONDS="2")
    token = login(gateway, "sarah")
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /v1/ws?access_token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert b"101" in sock.recv(4096).split(b"\r\n")[0]
    started = time.monotonic()
    # Never answer a ping: the server must give up on us within interval + timeout (+ slack).
    while True:
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        assert time.monotonic() - started < 10, "server kept a dead peer"
    assert time.monotonic() - started < 10
    sock.close()


@pytest.mark.redis
async def test_connection_limit_holds_across_processes(gateways, shared_redis):
    a = gateways(shared_redis, REALTIME_MAX_CONNECTIONS_PER_USER="2")
    b = gateways(shared_redis, REALTIME_MAX_CONNECTIONS_PER_USER="2")
    token = login(a, "sarah")
    first = await WsClient.open(a.ws, token)
    second = await WsClient.open(b.ws, token)
    third = await websockets.connect(f"{a.ws}?access_token={token}")
    assert '"code":"connection_limit"' in await third.recv()
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await third.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
    await first.close()
    await asyncio.sleep(0.3)
    again = await WsClient.open(b.ws, token)  # a closed connection frees its place everywhere
    await asyncio.gather(second.close(), again.close())


@pytest.mark.redis
async def test_revocation_in_another_process_reaches_every_gateway(gateways, shared_redis):
    a = gateways(shared_redis)
    b = gateways(shared_redis)
    sarah_a = await WsClient.open(a.ws, login(a, "sarah"))
    sarah_b = await WsClient.open(b.ws, login(b, "sarah"))
    sub_a = (await sarah_a.subscribe("orders", AT))["subscription_id"]
    sub_b = (await sarah_b.subscribe("orders", AT))["subscription_id"]
    try:
        manage(
            {**a.env},
            "shell",
            "-c",
            "from accounts.models import Membership; Membership.objects.filter(user__username='sarah').delete()",
        )
        revoked = await asyncio.gather(sarah_a.next_of("subscription_revoked"), sarah_b.next_of("subscription_revoked"))
        assert [r["subscription_id"] for r in revoked] == [sub_a, sub_b]
        code, _ = http_json("POST", f"{a.http}/v1/events", publish_body(1), login(a, "john"))
        assert code == 202
        for client in (sarah_a, sarah_b):
            with pytest.raises(TimeoutError):
                await client.next_of("event", timeout=0.5)
            await client.close()
    finally:
        manage({**a.env}, "seed_demo")  # the e2e database is shared by the session: give sarah her role back
