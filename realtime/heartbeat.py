"""The process heartbeat: keep this process live, sweep dead ones, and recover what a lost liveness dropped.

Started with the process, not with its first connection: from the ASGI lifespan startup under uvicorn
(``realtime.lifecycle``), from the reactor's start under daphne (``install_daphne_startup``), and, for in-process
use such as tests with Channels' ``WebsocketCommunicator`` (no lifespan), by the hub on first use. Starting it again
on the same event loop is a no-op.

Every ``PRESENCE_HEARTBEAT_SECONDS`` one beat (one Redis script at rest, ``realtime.liveness``) refreshes this
process's liveness and removes lapsed processes with their members and connections; this process then announces
``user_left`` for the users the sweep found gone. A process of which nothing is heard for ``PRESENCE_TTL_SECONDS``
is lapsed; its users' ``user_left`` goes out by the next beat of any live process, so within
``PRESENCE_TTL_SECONDS + PRESENCE_HEARTBEAT_SECONDS`` of its last beat (docs/protocol.md).

When a beat reports this process ``lost`` (Redis restarted empty, or the process was cut off for longer than the
lapse and was swept), the process counts its open connections again and re-joins every presence member it holds,
announcing ``user_joined`` where the user had been removed. Until that has succeeded every beat retries it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import weakref

from realtime.conf import realtime_settings
from realtime.connections import get_connection_registry
from realtime.liveness import get_liveness
from realtime.presence import Member, announce, get_keeper

logger = logging.getLogger(__name__)


class Heartbeat:
    """One event loop's heartbeat; ``beat`` runs one at a time."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None
        self.rejoin_pending = False
        self.failing = False
        self.beats = 0

    async def beat(self) -> None:
        async with self.lock:
            result = await get_liveness().beat()
            self.beats += 1
            for key, payload in result.left:
                await announce("user_left", key, Member.from_json(payload))
            if result.lost or self.rejoin_pending:
                self.rejoin_pending = True
                await get_connection_registry().restore()
                rejoined = await get_keeper().rejoin_all()
                self.rejoin_pending = False
                if rejoined:
                    logger.warning("presence liveness was lost (Redis restart or outage); re-joined %d", rejoined)

    async def run_forever(self) -> None:
        interval = float(realtime_settings.PRESENCE_HEARTBEAT_SECONDS)
        while True:
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self.failing:  # once per outage, not once per beat
                    logger.warning("heartbeat failed (%s: %s); retrying every beat", type(exc).__name__, exc)
                self.failing = True
            else:
                if self.failing:
                    logger.warning("heartbeat works again")
                self.failing = False
            await asyncio.sleep(interval)

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


_heartbeats: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Heartbeat] = weakref.WeakKeyDictionary()


async def astart_heartbeat() -> Heartbeat:
    """Start this event loop's heartbeat (its first beat runs at once); idempotent."""
    loop = asyncio.get_running_loop()
    heartbeat = _heartbeats.get(loop)
    if heartbeat is None:
        heartbeat = _heartbeats[loop] = Heartbeat()
        heartbeat.task = loop.create_task(heartbeat.run_forever(), name="realtime-heartbeat")
    return heartbeat


async def arecover() -> None:
    """Beat now: used when a script finds this process not live, so it re-registers and re-joins before retrying."""
    await (await astart_heartbeat()).beat()


def install_daphne_startup() -> bool:
    """On daphne (no ASGI lifespan), start the heartbeat when the reactor runs, before any connection."""
    if "twisted.internet.reactor" not in sys.modules:
        return False  # uvicorn starts it from the lifespan startup
    from twisted.internet import reactor

    def start() -> None:
        asyncio.get_event_loop().create_task(astart_heartbeat())

    reactor.callWhenRunning(start)  # type: ignore[attr-defined]
    return True
