"""Fixtures that start real processes: a provisioned database, gateways on loopback ports, Redis."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import browser as support_browser
from tests.support.ports import free_port
from tests.support.processes import Database, Gateway, RedisServer, base_env, prepare_database, provision_database
from tests.support.services import REDIS_TEST_URL, require_redis_server, require_service


@pytest.fixture(scope="session")
def e2e_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """One migrated, seeded database shared by the gateway processes of the e2e tests."""
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        require_service(os.environ["DATABASE_URL"], 5432, "PostgreSQL")
    provisioned = provision_database(tmp_path_factory.mktemp("e2e-db"))
    database = next(provisioned)
    prepare_database(base_env(database.url))
    yield database
    next(provisioned, None)


@pytest.fixture
def shared_redis() -> str:
    """The machine's Redis (CI has it on 6379); each test namespaces its keys and pub/sub with REDIS_PREFIX."""
    require_service(REDIS_TEST_URL, 6379, "Redis")
    return REDIS_TEST_URL


@pytest.fixture
def gateways(e2e_database: Database, tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """Start gateway processes: ``start(redis_url=None, **env)``; all are stopped after the test."""
    started: list[Gateway] = []
    prefix = f"rtgw-test-{secrets.token_hex(3)}"

    def start(
        redis_url: str | None = None, server_args: tuple[str, ...] = (), server: str | None = None, **extra: str
    ) -> Gateway:
        env = base_env(e2e_database.url, REDIS_PREFIX=prefix, **extra)
        if redis_url:
            env["REDIS_URL"] = redis_url
        gateway = Gateway(free_port(), env, tmp_path / f"gateway-{len(started)}.log", server_args)
        if server is not None:
            gateway.server = server
        started.append(gateway)
        return gateway.start()

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, which it may stop and restart."""
    require_redis_server()
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium (a playwright Browser); skipped or failed (REQUIRE_BROWSER) where missing."""
    support_browser.require_chromium()
    with support_browser.launch_chromium() as launched:
        yield launched
