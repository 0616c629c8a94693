"""HTTP requests and WebSocket clients straight into the real ASGI application (``config.asgi.application``).

Django's test client skips the ASGI layer (and so ``realtime.proxy``); this goes through all of it, with a chosen
peer address.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from asgiref.testing import ApplicationCommunicator
from channels.testing import WebsocketCommunicator
from rest_framework_simplejwt.tokens import AccessToken


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


async def asgi_request(
    method: str,
    path: str,
    body: bytes | str | Any = b"",
    *,
    headers: dict[str, str] | None = None,
    peer: str = "127.0.0.1",
    content_type: str | None = "application/json",
    send_length: bool = True,
    timeout: float = 30,
) -> Answer:
    """Send one request through the ASGI app; a non-bytes ``body`` is sent as JSON."""
    from config.asgi import application

    if not isinstance(body, bytes | str):
        body = json.dumps(body)
    raw = body.encode() if isinstance(body, str) else body
    path, _, query = path.partition("?")
    header_list = [(b"host", b"testserver")]
    if content_type is not None and raw:
        header_list.append((b"content-type", content_type.encode()))
    if send_length and raw:
        header_list.append((b"content-length", str(len(raw)).encode()))
    for name, value in (headers or {}).items():
        header_list.append((name.lower().encode(), value.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": header_list,
        "client": (peer, 50000),
        "server": ("testserver", 80),
    }
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": raw, "more_body": False})
    start = await communicator.receive_output(timeout)
    chunks = []
    while True:
        message = await communicator.receive_output(timeout)
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    await communicator.wait(timeout)
    response_headers = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    return Answer(start["status"], response_headers, b"".join(chunks))


def access_token_for(user: Any) -> str:
    return str(AccessToken.for_user(user))


def close_connections_of_the_database_thread() -> None:
    """Close what tests left open in asgiref's shared thread (``sync_to_async`` ORM calls): the gateway no longer
    queries on every connect, so nothing else would close it before the test database is dropped."""
    from asgiref.sync import SyncToAsync
    from django.db import connections as db_connections

    SyncToAsync.single_thread_executor.submit(db_connections.close_all).result(timeout=10)


class Client:
    """A WebSocket client through the real ASGI application, with helpers for request/response."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.ws = communicator
        self.connected: dict[str, Any] | None = None

    async def send(self, message: dict[str, Any] | str) -> None:
        if isinstance(message, str):  # also the empty string, which send_to refuses
            await self.ws.send_input({"type": "websocket.receive", "text": message})
        else:
            await self.ws.send_json_to(message)

    async def recv(self, timeout: float = 2) -> dict[str, Any]:
        return await self.ws.receive_json_from(timeout=timeout)  # type: ignore[no-any-return]

    async def request(self, message: dict[str, Any] | str, timeout: float = 2) -> dict[str, Any]:
        await self.send(message)
        return await self.recv(timeout)

    async def subscribe(self, channel: str, params: dict[str, Any], request_id: str = "req") -> dict[str, Any]:
        return await self.request({"type": "subscribe", "id": request_id, "channel": channel, "params": params})

    async def nothing(self, timeout: float = 0.2) -> bool:
        return await self.ws.receive_nothing(timeout=timeout)  # type: ignore[no-any-return]


@asynccontextmanager
async def open_client(
    token: str | None = None,
    *,
    query: bool = True,
    headers: list[tuple[bytes, bytes]] | None = None,
    subprotocols: list[str] | None = None,
    expect_connected: bool = True,
) -> AsyncIterator[Client]:
    from config.asgi import application

    path = f"/v1/ws?access_token={token}" if token and query else "/v1/ws"
    communicator = WebsocketCommunicator(application, path, headers=headers or [], subprotocols=subprotocols)
    connected, _ = await communicator.connect()
    assert connected
    client = Client(communicator)
    if expect_connected:
        client.connected = await client.recv()
        assert client.connected["type"] == "connected", client.connected
    try:
        yield client
    finally:
        await communicator.disconnect()
