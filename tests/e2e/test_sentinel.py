"""Redis Sentinel through settings: two gateways find the primary through a real redis-sentinel and work as usual."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.processes import RedisServer
from tests.support.rest import http_json, login
from tests.support.wsclient import WsClient

pytestmark = [pytest.mark.e2e, pytest.mark.redis]


@pytest.fixture
def sentinel(private_redis: RedisServer, tmp_path: Path) -> Iterator[str]:
    port = free_port()  # private_redis already required redis-server
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor gatewaymaster 127.0.0.1 {private_redis.port} 1\n"
    )
    server = RedisServer(tmp_path, str(config), "--sentinel", port=port).start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()


async def test_gateways_use_redis_through_sentinel(gateways, sentinel, private_redis):
    env = {"REDIS_SENTINELS": sentinel, "REDIS_SENTINEL_MASTER": "gatewaymaster"}
    a = gateways(**env)
    b = gateways(**env)
    assert http_json("GET", f"{a.http}/healthz")[0] == 200
    kim = await WsClient.open(a.ws, login(a, "kim"))
    await kim.subscribe("orders", {"location_id": "loc-xyz789"})
    code, body = http_json(
        "POST",
        f"{b.http}/v1/events",
        {"channel": "orders", "event": "order.created", "location_id": "loc-xyz789", "data": {"via": "sentinel"}},
        token=login(b, "john"),
    )
    assert code == 202, body
    event = await kim.next_of("event")
    assert event["data"] == {"via": "sentinel"} and event["seq"] == body["seq"]  # history too, through Sentinel
    listing = await kim.request(
        {"type": "presence_join", "channel": "orders", "params": {"location_id": "loc-xyz789"}, "user_info": {}}
    )
    assert listing["success"] is True
    import redis

    primary = redis.Redis.from_url(private_redis.url)  # the state the gateways reached through Sentinel
    keys = {k.decode() for k in primary.keys("*")}
    primary.close()
    assert any(":hist:" in k for k in keys) and any(":pres:" in k for k in keys) and any(":conn:" in k for k in keys)
    assert any(":liveness:" in k for k in keys)  # the processes' liveness (presence, connection counts)
    await kim.close()
