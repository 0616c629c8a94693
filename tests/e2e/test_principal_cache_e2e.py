"""The per-process principal cache (issue 13) across real gateway processes on Redis: an admin's change made in
another process reaches every gateway's cache, so a deactivated user is refused at the next connect everywhere."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets

from tests.support.processes import Gateway, manage
from tests.support.rest import login
from tests.support.wsclient import WsClient

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
AT = {"location_id": "loc-xyz789"}
REFUSED_WITHIN_S = 2.0  # the bound, from the commit to the refused connect, on every process


def set_active(gateway: Gateway, username: str, active: bool) -> None:
    """Change the user the way an admin does (``save()``, so the access-change signal fires), in another process."""
    manage(
        {**gateway.env},
        "shell",
        "-c",
        "from accounts.models import User; "
        f"u = User.objects.get(username={username!r}); u.is_active = {active}; u.save()",
    )


async def first_frame_and_close(url: str, token: str) -> tuple[dict, int | None]:
    async with websockets.connect(f"{url}?access_token={token}", open_timeout=10) as connection:
        frame = json.loads(await asyncio.wait_for(connection.recv(), 5))
        try:
            await asyncio.wait_for(connection.recv(), 5)
        except websockets.ConnectionClosed as closed:
            return frame, closed.rcvd.code if closed.rcvd else None
        return frame, None


async def test_a_deactivated_user_is_refused_at_the_next_connect_on_every_process(gateways, shared_redis):
    a = gateways(shared_redis)
    b = gateways(shared_redis)
    token = login(a, "sarah")
    live = []
    for gateway in (a, b):  # both processes now hold sarah's principal: their next connects ask no database
        client = await WsClient.open(gateway.ws, token)
        assert (await client.subscribe("orders", AT))["success"] is True
        live.append(client)
        again = await WsClient.open(gateway.ws, token)
        await again.close()
    try:
        set_active(a, "sarah", False)
        committed = time.monotonic()
        refused: dict[str, float] = {}
        for name, gateway in (("a", a), ("b", b)):
            while True:
                frame, code = await first_frame_and_close(gateway.ws, token)
                if frame.get("type") == "error":
                    assert frame["code"] == "unauthenticated" and code == 4401, (frame, code)
                    refused[name] = time.monotonic() - committed
                    break
                assert time.monotonic() - committed < REFUSED_WITHIN_S, f"{name} still accepts sarah: {frame}"
                await asyncio.sleep(0.05)
        assert all(seconds < REFUSED_WITHIN_S for seconds in refused.values()), refused
        for client in live:  # live connections are closed as before the cache
            error = await client.next_of("error", timeout=10)
            assert error["code"] == "unauthenticated"
    finally:
        set_active(a, "sarah", True)
    again = await WsClient.open(b.ws, token)  # reactivation reaches the caches too
    await again.close()
