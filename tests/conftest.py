"""Shared fixtures: the seed's world (loc-xyz789, Sarah Server, John Manager), tokens, and live connections."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from channels.layers import channel_layers
from django.core.cache import caches
from django.core.management import call_command

from realtime import acks, stations
from realtime.stores import reset_stores
from tests.support.asgi import access_token_for, close_connections_of_the_database_thread
from tests.support.services import REDIS_TEST_URL, flush_redis_db, require_service


@pytest.fixture(autouse=True)
def fresh_realtime_state() -> Iterator[None]:
    """Each test gets a new channel layer, history and presence store (the layer's queues belong to one loop)."""

    def reset() -> None:
        close_connections_of_the_database_thread()
        channel_layers.backends.clear()
        reset_stores()
        stations.reset_station_store()
        acks.reset_acks()
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


@pytest.fixture
def token_for(world: dict[str, Any]) -> Callable[[str], str]:
    return lambda username: access_token_for(world[username])


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The real Redis server (database 15 by default), emptied before and after the test."""
    require_service(REDIS_TEST_URL, 6379, "Redis")
    flush_redis_db(REDIS_TEST_URL)
    yield REDIS_TEST_URL
    flush_redis_db(REDIS_TEST_URL)


@pytest.fixture
async def outbox_relay() -> AsyncIterator[Any]:
    """A relay running on the test's event loop, as one runs in every gateway process; stopped after the test."""
    from realtime.relay import Relay

    relay = Relay().start()
    yield relay
    await relay.stop()
