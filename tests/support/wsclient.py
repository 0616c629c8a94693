"""A small protocol client over a real socket (the `websockets` library), for the e2e tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets


class WsClient:
    def __init__(self, connection: Any) -> None:
        self.conn = connection
        self.connected: dict[str, Any] = {}
        self.backlog: list[dict[str, Any]] = []
        self._next = 0

    @classmethod
    async def open(cls, url: str, token: str) -> WsClient:
        connection = await websockets.connect(f"{url}?access_token={token}", open_timeout=10)
        client = cls(connection)
        client.connected = await client.recv()
        assert client.connected["type"] == "connected", client.connected
        return client

    async def recv(self, timeout: float = 5) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.conn.recv(), timeout))  # type: ignore[no-any-return]

    async def send(self, message: dict[str, Any]) -> None:
        await self.conn.send(json.dumps(message))

    async def request(self, message: dict[str, Any], timeout: float = 5) -> dict[str, Any]:
        """Send a request and return the frame answering it, keeping other frames for ``recv_type``."""
        self._next += 1
        request_id = message.setdefault("id", f"r{self._next}")
        await self.send(message)
        while True:
            frame = await self.recv(timeout)
            if frame.get("id") == request_id:
                return frame
            self.backlog.append(frame)

    async def subscribe(self, channel: str, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return await self.request({"type": "subscribe", "channel": channel, "params": params, **extra})

    async def next_of(self, frame_type: str, timeout: float = 5, **match: Any) -> dict[str, Any]:
        """The next frame of a type (and matching fields), from the backlog first."""
        for index, frame in enumerate(self.backlog):
            if frame.get("type") == frame_type and all(frame.get(k) == v for k, v in match.items()):
                return self.backlog.pop(index)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.recv(max(0.01, deadline - loop.time()))
            if frame.get("type") == frame_type and all(frame.get(k) == v for k, v in match.items()):
                return frame
            self.backlog.append(frame)

    async def events(self, count: int, timeout: float = 5) -> list[dict[str, Any]]:
        return [await self.next_of("event", timeout) for _ in range(count)]

    async def close(self) -> None:
        await self.conn.close()
