"""A lean WebSocket client connection: websockets' Sans-I/O ``ClientProtocol`` on an asyncio transport.

Why not ``websockets.connect``: that gives each connection a reader task and futures per message, which at 5,000
connections makes the generator cost as much as the server it measures. Here a connection is one
``asyncio.Protocol`` object; every text frame goes to a callback together with the wall-clock time (``time_ns``)
its bytes arrived, taken once per read. The Sans-I/O core still answers pings and runs the closing handshake.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

MessageHandler = Callable[["WebSocketClient", bytes, int], None]


class HandshakeFailed(Exception):
    """The server refused the WebSocket upgrade or closed before accepting it."""


class WebSocketClient(asyncio.Protocol):
    """One client connection; ``on_message(client, payload, received_ns)`` sees every text frame."""

    def __init__(self, uri: str, on_message: MessageHandler, context: Any = None) -> None:
        self.protocol = ClientProtocol(parse_uri(uri), max_size=None)
        self.on_message = on_message
        self.context = context  # the owner's per-connection state, set before the first frame can arrive
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int | None] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    @classmethod
    async def connect(
        cls, host: str, port: int, path: str, on_message: MessageHandler, context: Any = None
    ) -> WebSocketClient:
        """Open the TCP connection and finish the WebSocket handshake."""
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(
            lambda: cls(f"ws://{host}:{port}{path}", on_message, context), host, port
        )
        await client.opened
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # uvloop's transports do not subclass asyncio's
        self.protocol.send_request(self.protocol.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        received_ns = time.time_ns()
        protocol = self.protocol
        protocol.receive_data(data)
        for event in protocol.events_received():
            if type(event) is Frame:
                if event.opcode is Opcode.TEXT:
                    self.on_message(self, bytes(event.data), received_ns)
            elif isinstance(event, Response) and not self.opened.done():
                if protocol.handshake_exc is not None:
                    self.opened.set_exception(HandshakeFailed(str(protocol.handshake_exc)))
                else:
                    self.opened.set_result(None)
        self._flush()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(HandshakeFailed(f"connection lost before the handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result(self.protocol.close_rcvd.code if self.protocol.close_rcvd else None)

    def send_json(self, message: dict[str, Any]) -> None:
        self.send_text(json.dumps(message, separators=(",", ":")).encode())

    def send_text(self, payload: bytes) -> None:
        if self.protocol.state is State.OPEN:
            self.protocol.send_text(payload)
            self._flush()

    def close(self) -> None:
        """Start the closing handshake (1000); the transport closes when the server answers or drops."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(1000)
            self._flush()
        elif self.transport is not None and self.protocol.state is not State.CLOSED:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    @property
    def is_open(self) -> bool:
        return self.protocol.state is State.OPEN

    @property
    def close_code(self) -> int | None:
        return self.protocol.close_rcvd.code if self.protocol.close_rcvd else None

    def _flush(self) -> None:
        assert self.transport is not None
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.transport.write(chunk)
            elif self.transport.can_write_eof():
                self.transport.write_eof()
        if self.protocol.state is State.CLOSED and self.protocol.close_expected():
            self.transport.close()
