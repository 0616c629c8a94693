"""Which services this machine has, and the one rule for their absence: skip here, fail where CI requires them.

``REQUIRE_SERVICES=1`` (CI) turns a skip for a missing Redis, PostgreSQL or ``redis-server`` into a failure;
``REQUIRE_BROWSER=1`` does the same for Chromium and Playwright.
"""

from __future__ import annotations

import os
import shutil
from urllib.parse import urlparse

import pytest

from tests.support.ports import port_answers

REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
REQUIRE_BROWSER = os.environ.get("REQUIRE_BROWSER") == "1"


def service_reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    return port_answers(parsed.port or default_port, parsed.hostname or "127.0.0.1", timeout=1)


def missing(reason: str, required: bool, how: str) -> None:
    """Fail where the service is required (``how`` names the variable), else skip with the reason."""
    if required:
        pytest.fail(f"{reason} ({how}: this test must run)")
    pytest.skip(reason)


def require_service(url: str, default_port: int, what: str) -> None:
    """Skip with a reason on a machine without the service; fail where CI says it must be there."""
    if not service_reachable(url, default_port):
        message = f"{what} is not reachable at {url}; start it or set REDIS_TEST_URL / DATABASE_URL"
        missing(message, REQUIRE_SERVICES, "REQUIRE_SERVICES=1")


def require_redis_server() -> None:
    """Skip where ``redis-server`` is not installed (tests that start a private one); fail where CI needs it."""
    if shutil.which("redis-server") is None:
        missing("redis-server is not installed", REQUIRE_SERVICES, "REQUIRE_SERVICES=1")


def flush_redis_db(url: str) -> None:
    """Empty the one Redis database a test owns, so stream history from earlier runs cannot leak in."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def require_postgres() -> None:
    """Skip a test of PostgreSQL-only behaviour (row locks, LISTEN/NOTIFY) on SQLite; fail where CI requires it."""
    from django.db import connection

    if connection.vendor != "postgresql":
        missing("needs PostgreSQL: set DATABASE_URL=postgres://...", REQUIRE_SERVICES, "REQUIRE_SERVICES=1")
