"""LOG_FORMAT=json on a real gateway process: one JSON object per line, the connection's fields, tokens redacted."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets

from tests.support.rest import login
from tests.support.wsclient import WsClient

pytestmark = [pytest.mark.e2e]


def log_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object, or this raises
    assert all(isinstance(p, dict) for p in parsed)
    return parsed


async def test_json_logs_carry_the_connection_fields_and_no_token(gateways):
    gateway = gateways(LOG_FORMAT="json")
    bad_token = "eyJhbGciOiJIUzI1NiJ9.bm90LWEtcmVhbC10b2tlbg.c2lnbmF0dXJlLXNlY3JldA"
    with pytest.raises(websockets.ConnectionClosed):
        async with websockets.connect(f"{gateway.ws}?access_token={bad_token}") as bad:
            await asyncio.wait_for(bad.recv(), 10)
            await asyncio.wait_for(bad.recv(), 10)
    token = login(gateway, "sarah")
    sarah = await WsClient.open(gateway.ws, token)
    await sarah.request({"type": "ping"})
    await sarah.close()

    deadline = time.monotonic() + 15
    while True:
        records = log_lines(gateway.log_path.read_text())
        refused = [r for r in records if r.get("event") == "refused"]
        closed = [r for r in records if r.get("event") == "disconnected" and r.get("code") == "4401"]
        if (refused and closed) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert refused and closed, records
    assert refused[0]["code"] == "unauthenticated"
    assert refused[0]["connection_id"].startswith("conn-") and refused[0]["level"] == "INFO"
    assert closed[0]["connection_id"] == refused[0]["connection_id"]
    assert {"time", "level", "logger", "message"} <= set(closed[0])
    text = gateway.log_path.read_text()
    assert bad_token not in text and token not in text
    # The server's own lines (uvicorn's) are JSON too, with the query string's token redacted.
    server_lines = [r for r in records if r["logger"].startswith("uvicorn")]
    assert server_lines
    assert any("access_token=[redacted]" in r["message"] for r in server_lines)
