"""The per-process fan-out hub between the channel layer and this process's connections.

Each gateway process (each event loop) joins a stream's channel-layer group once, with one hub channel, as soon as
one local connection needs the stream, and leaves when none does. An event crosses the layer once per process and
is then handed to each local connection connection in a plain loop: no per-connection layer queue, no deserializing or
deep-copying per recipient, no task switch before the filter decides. This is what keeps the per-delivery cost close
to a raw WebSocket broadcast (see docs/performance.md).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from channels.layers import get_channel_layer

from realtime import metrics
from realtime.heartbeat import astart_heartbeat
from realtime.relay import astart_relay
from realtime.stores import access_cache, live
from realtime.streams import CONTROL_GROUP

logger = logging.getLogger(__name__)


class LocalConnection(Protocol):
    """What the hub needs of a connection."""

    user_id: str
    connection_id: str

    def deliver_event(self, message: dict[str, Any]) -> int: ...

    def deliver_presence(self, message: dict[str, Any]) -> None: ...

    def deliver_redelivery(self, message: dict[str, Any]) -> None: ...

    def on_access_changed(self) -> None: ...

    async def close_for_restart(self, code: int) -> None: ...

    def force_disconnect(self, reason: str) -> None: ...


class Hub:
    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channel_name = ""
        self.by_group: dict[str, set[LocalConnection]] = {}
        self.users: dict[str, set[LocalConnection]] = {}
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "rt.event": self._on_event,
            "rt.events": self._on_events,
            "rt.presence": self._on_presence,
            "rt.redelivery": self._on_redelivery,
            "rt.access_changed": self._on_access_changed,
            "rt.disconnect": self._on_disconnect,
        }

    async def start(self) -> None:
        self.channel_name = await self.layer.new_channel("rt.hub.")
        await self.layer.group_add(CONTROL_GROUP, self.channel_name)
        self._task = asyncio.create_task(self._receive_forever(), name="realtime-hub")
        await astart_heartbeat()  # a no-op when the lifespan (or daphne's reactor) started it already
        await astart_relay()  # likewise; never under pytest (OUTBOX_RELAY_ENABLED off: tests drive the relay)

    # Membership -----------------------------------------------------------------------------------------------

    def register(self, connection: LocalConnection) -> int:
        """Track a connection of a user; return how many this process now has for that user."""
        connections = self.users.setdefault(connection.user_id, set())
        connections.add(connection)
        return len(connections)

    def unregister(self, connection: LocalConnection) -> None:
        connections = self.users.get(connection.user_id)
        if connections is not None:
            connections.discard(connection)
            if not connections:
                del self.users[connection.user_id]

    async def join(self, group: str, connection: LocalConnection) -> None:
        """Add ``connection`` to ``group``; returns once the process is subscribed on the layer."""
        pending = self._pending.get(group)
        if pending is not None:
            await asyncio.shield(pending)
        connections = self.by_group.get(group)
        if connections is None:
            connections = self.by_group[group] = set()
            connections.add(connection)
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._pending[group] = future
            try:
                await self.layer.group_add(group, self.channel_name)
            except BaseException as exc:
                self.by_group.pop(group, None)
                future.set_exception(exc)
                future.exception()  # retrieved: waiters re-raise it through shield
                raise
            else:
                future.set_result(None)
            finally:
                self._pending.pop(group, None)
        else:
            connections.add(connection)

    async def leave(self, group: str, connection: LocalConnection) -> None:
        connections = self.by_group.get(group)
        if connections is None:
            return
        connections.discard(connection)
        if not connections:
            del self.by_group[group]
            await self.layer.group_discard(group, self.channel_name)

    # Delivery -------------------------------------------------------------------------------------------------

    async def _receive_forever(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.record_redis_error("layer_receive")
                logger.exception("hub receive failed; retrying")
                await asyncio.sleep(0.5)
                continue
            self.dispatch(message)

    def dispatch(self, message: dict[str, Any]) -> None:
        handler = self._handlers.get(message.get("type", ""))
        if handler is None:
            logger.warning("hub dropped a message of unknown type %r", message.get("type"))
            return
        try:
            handler(message)
        except Exception:
            logger.exception("hub failed to dispatch %s", message.get("type"))

    def _on_event(self, message: dict[str, Any]) -> None:
        sent = 0
        for connection in tuple(self.by_group.get(message["group"], ())):
            sent += connection.deliver_event(message)
        if sent and metrics.enabled():
            metrics.record_fanout(message, sent)  # once per event, with its number of recipients

    def _on_events(self, message: dict[str, Any]) -> None:
        """A batch's events of one stream, in seq order: one channel-layer message instead of one per event."""
        for event in message["events"]:
            self._on_event(event)

    def _on_presence(self, message: dict[str, Any]) -> None:
        for connection in tuple(self.by_group.get(message["group"], ())):
            connection.deliver_presence(message)

    def _on_redelivery(self, message: dict[str, Any]) -> None:
        """An unacknowledged KDS event sent again (``realtime.acks``): only ack subscriptions take it."""
        for connection in tuple(self.by_group.get(message["group"], ())):
            connection.deliver_redelivery(message)

    def _on_access_changed(self, message: dict[str, Any]) -> None:
        user_ids = message.get("user_ids")
        access_cache.forget(user_ids)
        targets = self.users.keys() if user_ids is None else user_ids
        for user_id in list(targets):
            for connection in tuple(self.users.get(user_id, ())):
                connection.on_access_changed()

    def _on_disconnect(self, message: dict[str, Any]) -> None:
        """An operator's disconnect (``realtime.stores.live.request_disconnect``): close the targets that live here."""
        for connection in live.disconnect_targets(self.users, message):
            connection.force_disconnect(str(message.get("reason") or ""))


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Future[Hub]] = weakref.WeakKeyDictionary()


async def aget_hub() -> Hub:
    """The hub of the running event loop, started on first use."""
    loop = asyncio.get_running_loop()
    ready = _hubs.get(loop)
    if ready is None:
        ready = _hubs[loop] = loop.create_future()
        hub = Hub()
        try:
            await hub.start()
        except BaseException as exc:
            del _hubs[loop]
            ready.set_exception(exc)
            ready.exception()
            raise
        ready.set_result(hub)
    return await asyncio.shield(ready)


def current_hubs() -> list[Hub]:
    return [f.result() for f in _hubs.values() if f.done() and not f.exception()]
