"""Process lifecycle: a graceful stop closes every live connection with 1012 so clients reconnect elsewhere.

Uvicorn sends the ASGI ``lifespan.shutdown`` event on SIGTERM; daphne has no lifespan support, so
``install_signal_handlers`` also hooks SIGTERM/SIGINT on the running loop for it. Either way each local connection
leaves presence cleanly and gets a 1012 close frame before the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from realtime.conf import realtime_settings
from realtime.hub import current_hubs

logger = logging.getLogger(__name__)


async def aclose_all_connections() -> int:
    """Close every connection of this process with the restart code; return how many were closed."""
    code = int(realtime_settings.SHUTDOWN_CLOSE_CODE)
    closed = 0
    for hub in current_hubs():
        for members in list(hub.users.values()):
            for member in list(members):
                close = getattr(member, "close_for_restart", None)
                if close is not None:
                    await close(code)
                    closed += 1
    return closed


class LifespanShutdown:
    """Wrap the application: answer the lifespan protocol and close connections on shutdown."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                install_signal_handlers()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                closed = await aclose_all_connections()
                logger.info("lifespan shutdown closed %d connections", closed)
                await send({"type": "lifespan.shutdown.complete"})
                return


_installed: set[int] = set()


def install_signal_handlers() -> None:
    """On daphne, close connections with 1012 on SIGTERM before the reactor stops."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    if id(loop) in _installed:
        return
    _installed.add(id(loop))
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        async def drain_then_stop() -> None:
            try:
                closed = await asyncio.wait_for(aclose_all_connections(), timeout=5)
                logger.info("SIGTERM: closed %d connections with restart code", closed)
                await asyncio.sleep(0.2)  # let the close frames reach the sockets
            finally:
                if callable(previous):
                    previous(signum, frame)
                else:
                    raise SystemExit(0)

        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(drain_then_stop()))

    signal.signal(signal.SIGTERM, on_term)
