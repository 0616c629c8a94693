"""The transactional outbox in tests: the relay does not start by itself under pytest, so tests drive it."""

from __future__ import annotations


async def drain_outbox() -> int:
    """Publish what the outbox holds now, as a gateway's relay would; return how many rows were published."""
    from realtime.relay import Relay

    relay = Relay()
    try:
        return await relay.relay_once()
    finally:
        await relay.aclose()
