"""Shared fixtures: the seed's world (loc-xyz789, Sarah Server, John Manager), tokens, and live connections."""

from __future__ import annotations

import io
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlparse

import pytest
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.core.cache import caches
from django.core.management import call_command
from rest_framework_simplejwt.tokens import AccessToken

from realtime import access_cache, acks, connections, history, live, liveness, presence

REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def service_reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1).close()
    except OSError:
        return False
    return True


def require_service(url: str, default_port: int, what: str) -> None:
    """Skip with a reason on a machine without the service; fail where CI says it must be there."""
    if service_reachable(url, default_port):
        return
    message = f"{what} is not reachable at {url}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (REQUIRE_SERVICES=1: this test must run)")
    pytest.skip(f"{message}; start it or set REDIS_TEST_URL / DATABASE_URL")


def close_connections_of_the_database_thread() -> None:
    """Close what tests left open in asgiref's shared thread (``sync_to_async`` ORM calls): the gateway no longer
    queries on every connect, so nothing else would close it before the test database is dropped."""
    from asgiref.sync import SyncToAsync
    from django.db import connections as db_connections

    SyncToAsync.single_thread_executor.submit(db_connections.close_all).result(timeout=10)


def require_redis_server() -> None:
    """Skip where ``redis-server`` is not installed (tests that start a private one); fail where CI needs it."""
    import shutil

    if shutil.which("redis-server") is not None:
        return
    if REQUIRE_SERVICES:
        pytest.fail("redis-server is not installed (REQUIRE_SERVICES=1: this test must run)")
    pytest.skip("redis-server is not installed")


@pytest.fixture(autouse=True)
def fresh_realtime_state() -> Iterator[None]:
    """Each test gets a new channel layer, history and presence store (the layer's queues belong to one loop)."""

    def reset() -> None:
        close_connections_of_the_database_thread()
        channel_layers.backends.clear()
        history.reset_history()
        presence.reset_presence_store()
        connections.reset_connection_registry()
        live.reset_directory()
        liveness.reset_liveness()
        acks.reset_acks()
        access_cache.forget(None)
        caches["login_throttle"].clear()  # login failure counts (in-process without REDIS_URL)

    reset()
    yield
    reset()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """Demo users are created per test; the production hasher's cost is not what these tests measure."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(django_db_blocker: Any) -> dict[str, Any]:
    """The demo world of the protocol document, built by the same command `make run` uses."""
    from accounts.models import User

    call_command("seed_demo", stdout=io.StringIO())
    return {u.username: u for u in User.objects.all()}


def access_token_for(user: Any) -> str:
    return str(AccessToken.for_user(user))


@pytest.fixture
def token_for(world: dict[str, Any]) -> Callable[[str], str]:
    return lambda username: access_token_for(world[username])


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The real Redis server (database 15 by default), emptied before and after the test."""
    require_service(REDIS_TEST_URL, 6379, "Redis")
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL)
    client.flushdb()
    yield REDIS_TEST_URL
    client.flushdb()
    client.close()


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
