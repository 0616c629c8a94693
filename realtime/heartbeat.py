"""The process heartbeat: keep this process live, sweep dead ones, and recover what a lost liveness dropped.

Started with the process, not with its first connection: from the ASGI lifespan startup under uvicorn
(``realtime.lifecycle``), from the reactor's start under daphne (``install_daphne_startup``), and, for in-process
use such as tests with Channels' ``WebsocketCommunicator`` (no lifespan), by the hub on first use. Starting it again
on the same event loop is a no-op.

Every ``PRESENCE_HEARTBEAT_SECONDS`` one beat (one Redis script at rest, ``realtime.stores.liveness``) refreshes this
process's liveness and removes lapsed processes with their members and connections; this process then announces
``user_left`` for the users the sweep found gone. A process of which nothing is heard for ``PRESENCE_TTL_SECONDS``
is lapsed; its users' ``user_left`` goes out by the next beat of any live process, so within
``PRESENCE_TTL_SECONDS + PRESENCE_HEARTBEAT_SECONDS`` of its last beat (docs/protocol.md).

When a beat reports this process ``lost`` (Redis restarted empty, or the process was cut off for longer than the
lapse and was swept), the process counts its open connections again and re-joins every presence member it holds,
announcing ``user_joined`` where the user had been removed. Until that has succeeded every beat retries it.

A process started as a server (the lifespan, daphne's reactor) also checks its kitchen stations beside the beats
(``realtime.stations``): at most one check at a time, every ``KDS_STATION_CHECK_SECONDS``; a slow or failing check
never delays a beat.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import weakref

from realtime import acks, metrics
from realtime.conf import realtime_settings
from realtime.outages import OutageLog
from realtime.stations import StationMonitor
from realtime.stores import live
from realtime.stores.connections import get_connection_counts
from realtime.stores.liveness import get_liveness
from realtime.stores.presence import Member, announce, get_keeper

logger = logging.getLogger(__name__)


class Heartbeat:
    """One event loop's heartbeat. Beats run one at a time and never wait for a recovery, which runs beside them:
    re-joining thousands of members takes longer than a lapse, and the process must stay live meanwhile."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None
        self.recovery: asyncio.Task[None] | None = None
        self.losses = 0  # how many times a beat found this process lost
        self.rejoin_pending = False
        self.outage = OutageLog("heartbeat", logger)
        self.announcing: asyncio.Task[None] | None = None
        self.stations: StationMonitor | None = None  # set for server processes (``astart_heartbeat``)
        self.station_check: asyncio.Task[None] | None = None

    async def beat(self) -> None:
        async with self.lock:
            result = await get_liveness().beat()
        if result.left:  # beside the beats too: thousands of user_left must not delay the next beat
            self.announcing = asyncio.get_running_loop().create_task(self._announce_left(result.left, self.announcing))
        if result.lost:
            self.losses += 1
            self.rejoin_pending = True
        if self.rejoin_pending and (self.recovery is None or self.recovery.done()):
            self.recovery = asyncio.get_running_loop().create_task(self._recover(), name="realtime-presence-rejoin")
        await self._beat_live_directory()
        self._check_stations()

    def _check_stations(self) -> None:
        """Start a station check beside the beats when one is due and none is running."""
        if self.stations is None or (self.station_check is not None and not self.station_check.done()):
            return
        loop = asyncio.get_running_loop()
        if self.stations.due(loop.time()):
            self.station_check = loop.create_task(self.stations.run_check(), name="realtime-station-check")

    async def _beat_live_directory(self) -> None:
        """Renew the live-connections directory (the admin's view, ``realtime.stores.live``): 2 commands, any size.

        After presence has had its beat, and apart from it: a failure here must never cost a presence recovery.
        """
        try:
            await live.get_tracker().beat()
        except Exception as exc:
            metrics.record_redis_error("heartbeat")
            logger.warning("live-connections directory not renewed (%s: %s)", type(exc).__name__, exc)

    async def _announce_left(self, left: list[tuple[str, str]], previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # in sweep order
        for key, payload in left:
            try:
                await announce("user_left", key, Member.from_json(payload))
            except Exception as exc:
                logger.warning("user_left at %s not announced (%s: %s)", key, type(exc).__name__, exc)

    async def ensure_live(self) -> None:
        """Make this process live again now; when a beat is already running, its outcome serves."""
        if self.lock.locked():
            async with self.lock:
                return
        await self.beat()

    async def _recover(self) -> None:
        losses = self.losses
        try:
            await get_connection_counts().restore()
            rejoined = await get_keeper().rejoin_all()
        except Exception as exc:  # the next beat starts it again
            logger.warning("re-joining presence failed (%s: %s); retrying on the next beat", type(exc).__name__, exc)
            return
        if losses == self.losses:  # not lost again meanwhile (then the next beat starts over)
            self.rejoin_pending = False
        if rejoined:
            logger.warning("presence liveness was lost (Redis restart or outage): re-joined %d members", rejoined)

    async def run_forever(self) -> None:
        interval = realtime_settings.PRESENCE_HEARTBEAT_SECONDS
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.record_redis_error("heartbeat")
                self.outage.failed(exc)
            else:
                self.outage.succeeded()
            # A fixed cadence, not interval + the beat's own time: a slow beat must not stretch the next gap.
            await asyncio.sleep(max(0.0, interval - (loop.time() - started)))

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.station_check is not None:
            self.station_check.cancel()


_heartbeats: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Heartbeat] = weakref.WeakKeyDictionary()


async def astart_heartbeat(*, monitor_stations: bool = False) -> Heartbeat:
    """Start this event loop's heartbeat (its first beat runs at once); idempotent.

    ``monitor_stations`` (server processes) adds the dark-station checks; in-process use (tests through
    ``WebsocketCommunicator``, whose hub starts the heartbeat) runs none unless it asks.
    """
    loop = asyncio.get_running_loop()
    heartbeat = _heartbeats.get(loop)
    if heartbeat is None:
        heartbeat = _heartbeats[loop] = Heartbeat()
        heartbeat.task = loop.create_task(heartbeat.run_forever(), name="realtime-heartbeat")
        acks.start_sweeper(loop)  # redelivery and escalation of KDS acks (issue 16) live as long as the heartbeat
    if monitor_stations and heartbeat.stations is None:
        heartbeat.stations = StationMonitor()
    return heartbeat


async def arecover() -> None:
    """Make this process live again now: a script found it not live (it also starts re-joining what it holds)."""
    await (await astart_heartbeat()).ensure_live()


_startup_tasks: list[asyncio.Task[object]] = []  # referenced until done (the loop keeps only weak references)


def install_daphne_startup() -> bool:
    """On daphne (no ASGI lifespan), start the heartbeat and the outbox relay when the reactor runs."""
    if "twisted.internet.reactor" not in sys.modules:
        return False  # uvicorn starts it from the lifespan startup
    from twisted.internet import reactor

    def start() -> None:
        from realtime.relay import astart_relay  # the outbox relay starts with the heartbeat, on the reactor's loop

        loop = asyncio.get_event_loop()
        _startup_tasks.extend(
            [loop.create_task(astart_heartbeat(monitor_stations=True)), loop.create_task(astart_relay())]
        )

    reactor.callWhenRunning(start)  # type: ignore[attr-defined]
    return True
