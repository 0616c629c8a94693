"""Process lifecycle: a graceful stop closes every live connection with 1012 so clients reconnect elsewhere.

Uvicorn sends the ASGI ``lifespan.shutdown`` event on SIGTERM; daphne has no lifespan support, so
``install_daphne_shutdown_trigger`` hooks the reactor's shutdown for it. Either way each local connection
leaves presence cleanly and gets a 1012 close frame before the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from realtime.conf import realtime_settings
from realtime.heartbeat import astart_heartbeat
from realtime.hub import current_hubs

logger = logging.getLogger(__name__)
SHUTDOWN_DRAIN_SECONDS = 5.0


async def aclose_all_connections() -> int:
    """Close every connection of this process with the restart code; return how many were closed."""
    code = realtime_settings.SHUTDOWN_CLOSE_CODE
    members = [m for hub in current_hubs() for ms in list(hub.users.values()) for m in ms]
    await asyncio.gather(*(m.close_for_restart(code) for m in members), return_exceptions=True)
    return len(members)


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
                await astart_heartbeat()  # presence liveness and the sweep of dead processes start with the process
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                closed = await aclose_all_connections()
                logger.info("lifespan shutdown closed %d connections", closed)
                await send({"type": "lifespan.shutdown.complete"})
                return


def install_daphne_shutdown_trigger() -> bool:
    """On daphne, close every connection with 1012 before the reactor stops (SIGTERM, SIGINT).

    Registered while config.asgi is imported, which daphne does before it registers its own shutdown trigger
    (the one that cancels every application instance), so ours starts first; Twisted waits for the Deferred.
    """
    if "twisted.internet.reactor" not in sys.modules:
        return False  # not running under daphne (uvicorn uses the lifespan shutdown above)
    from twisted.internet import defer, reactor

    def close_connections() -> defer.Deferred[Any]:
        async def drain() -> None:
            closed = await asyncio.wait_for(aclose_all_connections(), timeout=SHUTDOWN_DRAIN_SECONDS)
            logger.info("shutdown: closed %d connections with the restart code", closed)
            await asyncio.sleep(0.2)  # let the close frames reach the sockets

        deferred = defer.Deferred.fromFuture(asyncio.ensure_future(drain()))
        deferred.addErrback(lambda failure: logger.warning("shutdown drain failed: %s", failure.value))
        return deferred

    reactor.addSystemEventTrigger("before", "shutdown", close_connections)  # type: ignore[attr-defined,arg-type]
    return True
