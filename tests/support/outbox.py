"""The transactional outbox in tests: the relay does not start by itself under pytest, so tests drive it."""

from __future__ import annotations

import pytest


async def drain_outbox() -> int:
    """Publish what the outbox holds now, as a gateway's relay would; return how many rows were published."""
    from realtime.relay import Relay

    relay = Relay()
    try:
        return await relay.relay_once()
    finally:
        await relay.aclose()


def require_postgres() -> None:
    """Skip a test of PostgreSQL-only behaviour (row locks, LISTEN/NOTIFY) on SQLite; CI runs it on PostgreSQL."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: set DATABASE_URL=postgres://... (CI does)")
