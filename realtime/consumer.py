"""The WebSocket consumer: the I/O shell around ``realtime.protocol``.

It authenticates the handshake, turns each client frame into a command (``protocol.parse_message``), asks the
database what it must (authorization, at subscribe time only), applies the decision to the connection's state and
queues the replies. Events arrive from the process hub (``realtime.hub``) as plain method calls, are filtered here
without touching the database, and sent, dropped or held as each subscription's cursor (``realtime.delivery``)
decides; this module keeps only the awaits. Every outbound frame, replies and events alike, leaves through one
``SendQueue`` (``realtime.sendqueue``), so frames keep their order and a client that stops reading is closed (4408)
instead of growing the server's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer

from realtime import acks, delivery, expiry, metrics, protocol
from realtime.auth import Identity, aauthenticate_token, extract_credentials
from realtime.authorization import aauthorize, amay_read, arefresh_user
from realtime.conf import realtime_settings
from realtime.delivery import DELIVER, FILL_GAP
from realtime.errors import (
    CloseCode,
    ConnectionLimit,
    Disconnected,
    EventNotFound,
    Forbidden,
    InternalError,
    InvalidMessage,
    ProtocolError,
    RateLimited,
    TokenExpired,
    Unauthenticated,
    Unavailable,
)
from realtime.hub import Hub, aget_hub
from realtime.limits import TokenBucket
from realtime.sendqueue import SendQueue
from realtime.stores import live, presence
from realtime.stores import redis_client as shared_redis
from realtime.stores.connections import get_connection_counts
from realtime.stores.history import get_history
from realtime.streams import StreamPosition, group_for_stream, scope_of, split_stream

logger = logging.getLogger(__name__)

# No per-connection channel-layer channel: the process hub holds the layer groups (see realtime.hub).
NO_PER_CONNECTION_LAYER = "__realtime_hub_only__"
# Commands whose success changes what the live-connections directory shows of a connection (realtime.stores.live).
CHANGES_LIVE_ENTRY = (
    protocol.Subscribe,
    protocol.Unsubscribe,
    protocol.UnsubscribeAll,
    protocol.PresenceJoin,
    protocol.PresenceLeave,
)


class GatewayConsumer(AsyncWebsocketConsumer):
    channel_layer_alias = NO_PER_CONNECTION_LAYER

    user_id: str = ""
    hub: Hub | None = None

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch without its thread hop per message (issue 13: a connect, a subscribe, a ping each
        paid one to run ``close_old_connections``): every database call of the gateway goes through
        ``database_sync_to_async``, which closes stale connections around itself in the thread that owns them."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # Connection lifecycle -----------------------------------------------------------------------------------------

    async def connect(self) -> None:
        started = time.perf_counter()
        self.connection_id = protocol.new_id("conn")
        self.connected_at = protocol.now_iso()
        self.closing = False
        self.identity: Identity | None = None
        self.state = protocol.ConnectionState(max_subscriptions=realtime_settings.MAX_SUBSCRIPTIONS)
        self.presence_keys: set[str] = set()
        self.bucket = TokenBucket(realtime_settings.RATE_LIMIT_PER_SECOND, realtime_settings.RATE_LIMIT_BURST)
        self.violations = 0
        self.tasks: set[asyncio.Task[Any]] = set()
        self.access_check: asyncio.Task[None] | None = None
        credentials = extract_credentials(self.scope)
        # Accept before any refusal: a close before accept reaches browsers as 1006 with no reason.
        await self.accept(credentials.subprotocol)
        metrics.record_connection_opened()
        self.sendq = SendQueue(
            self.base_send,
            max_frames=realtime_settings.OUTBOUND_QUEUE_MAX_MESSAGES,
            max_bytes=realtime_settings.MAX_SEND_BUFFER_BYTES,
            on_overflow=self._close_slow_consumer,
        )
        if not self._origin_allowed():
            self._refuse(Forbidden("Origin not allowed"), started, CloseCode.FORBIDDEN)
            return
        try:
            self.identity = await aauthenticate_token(credentials.token)
        except Unauthenticated as exc:
            self._refuse(exc, started)
            return
        user = self.identity.user
        self.user_id = user.public_id
        limit = realtime_settings.MAX_CONNECTIONS_PER_USER
        try:
            admitted = await get_connection_counts().add(self.user_id, self.connection_id, limit)
        except Exception as exc:
            if not shared_redis.is_outage(exc):
                raise
            metrics.record_redis_error("connections")
            self._refuse(Unavailable(), started, CloseCode.TRY_AGAIN_LATER)
            return
        if not admitted:
            self._refuse(ConnectionLimit(limit), started)
            return
        self.hub = await aget_hub()
        self.hub.register(self)
        live.get_tracker().touch(self)
        metrics.record_command("connect", "ok", time.perf_counter() - started)
        logger.debug("connection opened", extra=self._log_context("connected"))
        self._watch_token_expiry(self.identity.expires_at)
        limits: dict[str, int | float] = {
            "max_subscriptions": self.state.max_subscriptions,
            "max_message_bytes": realtime_settings.MAX_MESSAGE_BYTES,
            "rate_limit_per_second": realtime_settings.RATE_LIMIT_PER_SECOND,
            "rate_limit_burst": realtime_settings.RATE_LIMIT_BURST,
            "max_connections_per_user": limit,
        }
        self.push(protocol.connected(self.user_id, self.connection_id, limits))

    async def disconnect(self, code: int) -> None:
        self.closing = True
        sendq = getattr(self, "sendq", None)
        server_code = sendq.close_code if sendq is not None else None
        closed_with = server_code if server_code is not None else code
        metrics.record_disconnect(closed_with)
        # Closes the server chose say why at INFO; a restart's 1012s are summed up by the lifespan shutdown instead.
        logger.log(
            logging.INFO if server_code not in (None, CloseCode.SERVICE_RESTART) else logging.DEBUG,
            "connection closed (%s)",
            closed_with,
            extra=self._log_context("disconnected", closed_with),
        )
        for task in list(self.tasks):
            task.cancel()
        if getattr(self, "sendq", None) is not None:
            self.sendq.cancel()
        if self.hub is None:
            return
        hub, self.hub = self.hub, None
        hub.unregister(self)
        live.get_tracker().forget(self.connection_id)
        with contextlib.suppress(Exception):
            await get_connection_counts().remove(self.user_id, self.connection_id)
        _, subscribed_groups = self.state.remove_all()
        groups = {*subscribed_groups, *(group_for_stream(k) for k in self.presence_keys)}
        for key in list(self.presence_keys):
            await self._leave_presence(key)
        for group in groups:
            with contextlib.suppress(Exception):
                await hub.leave(group, self)

    async def close_for_restart(self, code: int) -> None:
        """Leave presence cleanly and close with ``code`` (1012): the client reconnects, elsewhere if need be."""
        if self.closing:
            return
        self.closing = True
        for key in list(self.presence_keys):
            await self._leave_presence(key)
        self.sendq.put_close(code)

    def _origin_allowed(self) -> bool:
        allowed = realtime_settings.ALLOWED_ORIGINS
        if not allowed:
            return True
        origin = dict(self.scope.get("headers") or []).get(b"origin")
        # Server-side and mobile clients send no Origin; they are judged by their token alone.
        return origin is None or origin.decode("latin-1") in allowed

    def _log_context(self, event: str, code: int | str | None = None) -> dict[str, Any]:
        """The fields of a structured log line (``LOG_FORMAT=json``) about this connection."""
        context: dict[str, Any] = {"connection_id": self.connection_id, "user_id": self.user_id or None, "event": event}
        if code is not None:
            context["code"] = str(code)  # one type for log indexes: a close code ("4408") or an error code
        return context

    def _refuse(self, error: ProtocolError, started: float, close_code: int | None = None) -> None:
        """Refuse the handshake with ``error``; counted as a failed ``connect`` command."""
        metrics.record_command("connect", metrics.error_code_label(error.code), time.perf_counter() - started)
        logger.info("connection refused: %s", error.message, extra=self._log_context("refused", error.code))
        self._fail(error, close_code)

    def force_disconnect(self, reason: str) -> None:
        """An operator closed this connection (``realtime.stores.live``): tell the client why, close with 4000."""
        if self.closing:
            return
        logger.info("disconnected by an operator: %s", reason, extra=self._log_context("force_disconnect", 4000))
        self._fail(Disconnected(reason or None))

    def _fail(self, error: ProtocolError, close_code: int | None = None) -> None:
        """Answer with ``error`` and close: nothing else is processed on this connection."""
        self.closing = True
        self.push(error.as_frame())
        self.close_after_flush(close_code or error.close_code or CloseCode.POLICY_VIOLATION)

    # Outbound -----------------------------------------------------------------------------------------------------

    def push(self, frame: dict[str, Any]) -> None:
        self.push_text(protocol.encode(frame))

    def push_text(self, text: str) -> None:
        self.sendq.put_text(text)

    def close_after_flush(self, code: int) -> None:
        self.closing = True
        self.sendq.put_close(code)

    def _close_slow_consumer(self) -> None:
        if self.closing:
            return
        logger.info(
            "closing slow consumer %s (%d frames waiting)",
            self.connection_id,
            len(self.sendq),
            extra=self._log_context("slow_consumer", int(CloseCode.SLOW_CONSUMER)),
        )
        metrics.record_slow_consumer_close()
        self.closing = True
        self.sendq.drop_pending()  # what it could not read is dropped; it resumes from its last seq
        self.sendq.put_close(CloseCode.SLOW_CONSUMER)

    # Inbound ------------------------------------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing or self.identity is None:
            return
        max_bytes = realtime_settings.MAX_MESSAGE_BYTES
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > max_bytes:
            self.closing = True
            self.close_after_flush(CloseCode.MESSAGE_TOO_BIG)
            return
        retry_after = self.bucket.take(time.monotonic())
        if retry_after:
            metrics.record_rate_limited()
            self.violations += 1
            if self.violations > realtime_settings.RATE_LIMIT_MAX_VIOLATIONS:
                self._fail(RateLimited(int(retry_after * 1000) + 1), CloseCode.POLICY_VIOLATION)
            else:
                self.push(RateLimited(int(retry_after * 1000) + 1).as_frame())
            return
        request_id: str | int | None = None
        started = time.perf_counter()
        kind, result = "invalid", "ok"
        command: protocol.Command | None = None
        try:
            if text_data is None:
                raise InvalidMessage("Binary frames are not supported; send JSON text frames")
            command = protocol.parse_message(text_data)
            request_id, kind = command.id, command.type
            await self.handlers[type(command)](self, command)
            if isinstance(command, CHANGES_LIVE_ENTRY):
                self._update_live_entry()
        except ProtocolError as exc:
            if command is None:  # the frame did not parse: answer with the id and count it by the type it claimed
                request_id, kind = exc.request_id, metrics.command_type_label(exc.message_type)
            result = metrics.error_code_label(exc.code)
            self.push(exc.as_frame(request_id))
            if exc.close_code is not None:
                self.close_after_flush(exc.close_code)
        except Exception as exc:
            if shared_redis.is_outage(exc):
                result = "unavailable"
                metrics.record_redis_error("command")
                logger.warning(
                    "backend unavailable for connection %s: %s",
                    self.connection_id,
                    exc,
                    extra=self._log_context("unavailable", "unavailable"),
                )
                self.push(Unavailable().as_frame(request_id))
                return
            result = "internal_error"
            logger.exception(
                "unhandled error for connection %s (user %s)",
                self.connection_id,
                self.user_id,
                extra=self._log_context("internal_error", "internal_error"),
            )
            self.push(InternalError().as_frame(request_id))
        finally:
            metrics.record_command(kind, result, time.perf_counter() - started)

    @property
    def user(self) -> Any:
        assert self.identity is not None
        return self.identity.user

    async def _join_group(self, group: str) -> None:
        assert self.hub is not None
        await self.hub.join(group, self)

    async def _leave_group_if_unused(self, group: str) -> None:
        if self.hub is None or group in self.state.by_group:
            return
        if any(group_for_stream(k) == group for k in self.presence_keys):
            return
        await self.hub.leave(group, self)

    async def handle_subscribe(self, command: protocol.Subscribe) -> None:
        request = protocol.prepare_subscription(command.channel, command.params, user_id=self.user_id)
        self.state.check_room()
        await aauthorize(self.user, request.spec, request.scope_ids)
        if request.params.get("ack") is True:  # this location's tickets await acks from now on (issue 16)
            await acks.atrack_screen(self, request.scope_ids)
        subscription, to_join = self.state.add(request)
        subscription.cursor.hold()  # events that arrive before the response wait behind it
        try:
            starts = await self._starting_points(subscription, command.resume or {})
            for group in to_join:
                await self._join_group(group)
            covered = await self._replay(subscription, starts)
        except BaseException:
            await self._drop_subscription(subscription.id)
            raise
        resumed = None if command.resume is None else delivery.resume_outcome(command.resume, covered)
        if resumed is not None:
            metrics.record_resume(resumed)
        self.push(protocol.subscribed(command.id, subscription, resumed))
        self._flush_replay_and_pending(subscription)

    async def _starting_points(
        self, subscription: protocol.Subscription, resume: dict[str, protocol.ResumePosition]
    ) -> dict[str, protocol.ResumePosition]:
        """Where each stream's feed starts: the client's resume position, or where the stream stands now.

        A start is a ``ResumePosition``, as a client sends it, because its epoch may be absent (no epoch check).

        Read before the groups are joined, then replayed after: an event published while the join is under way
        (a Redis SUBSCRIBE is not confirmed before it returns) is then sent from history, not lost.
        """
        history = get_history()
        starts: dict[str, protocol.ResumePosition] = {}
        for stream in subscription.streams:
            if stream in resume:
                starts[stream] = resume[stream]
            else:
                now = await history.position(stream)
                starts[stream] = protocol.ResumePosition.model_construct(seq=now.seq, epoch=now.epoch or None)
        return starts

    async def _replay(
        self, subscription: protocol.Subscription, starts: dict[str, protocol.ResumePosition]
    ) -> dict[str, bool]:
        """Load each stream's events after its starting point (sent right after the response); report coverage."""
        covered: dict[str, bool] = {}
        history = get_history()
        backlog: list[str] = []
        for stream, start in starts.items():
            replay = await history.replay(stream, start.seq, start.epoch)
            covered[stream] = replay.covered
            backlog.extend(delivery.start_replay(subscription, stream, start.seq, replay))
        subscription.backlog = backlog
        return covered

    def _flush_replay_and_pending(self, subscription: protocol.Subscription) -> None:
        for frame in subscription.backlog:
            self.push_text(frame)
        subscription.backlog = []
        for message in subscription.cursor.release():
            self._deliver_to(subscription, message)

    async def _drop_subscription(self, subscription_id: str) -> None:
        """Forget a subscription and leave the groups nothing else of this connection reads."""
        _, to_leave = self.state.remove(subscription_id)
        for group in to_leave:
            await self._leave_group_if_unused(group)

    async def handle_unsubscribe(self, command: protocol.Unsubscribe) -> None:
        await self._drop_subscription(command.subscription_id)
        self.push(
            protocol.response(command.id, subscription_id=command.subscription_id, message="Unsubscribed successfully")
        )

    async def handle_unsubscribe_all(self, command: protocol.UnsubscribeAll) -> None:
        removed, groups = self.state.remove_all()
        for group in groups:
            await self._leave_group_if_unused(group)
        self.push(protocol.response(command.id, unsubscribed=len(removed)))

    async def handle_list_subscriptions(self, command: protocol.ListSubscriptions) -> None:
        self.push(protocol.with_id("subscriptions_list", command.id, subscriptions=self.state.listing()))

    async def handle_ping(self, command: protocol.Ping) -> None:
        self.push(protocol.with_id("pong", command.id, server_time=protocol.now_iso()))

    async def _presence_target(self, channel: str, params: dict[str, Any]) -> str:
        spec, location_id = protocol.prepare_presence_target(channel, params)
        await aauthorize(self.user, spec, (location_id,))
        return spec.stream(location_id)

    async def handle_presence_join(self, command: protocol.PresenceJoin) -> None:
        key = await self._presence_target(command.channel, command.params)
        user_info = protocol.check_user_info(
            command.user_info,
            max_bytes=realtime_settings.PRESENCE_USER_INFO_MAX_BYTES,
            max_depth=realtime_settings.PRESENCE_USER_INFO_MAX_DEPTH,
            channel=command.channel,
        )
        await self._join_group(group_for_stream(key))
        self.presence_keys.add(key)
        member = presence.Member(self.user_id, user_info, protocol.now_iso())
        presence.get_keeper().track(self.connection_id, key, member)
        await presence.ajoin(key, self.connection_id, member)
        self.push(protocol.response(command.id, channel=command.channel, params=command.params))

    async def handle_presence_leave(self, command: protocol.PresenceLeave) -> None:
        key = await self._presence_target(command.channel, command.params)
        if key in self.presence_keys:
            await self._leave_presence(key)
        self.push(protocol.response(command.id, channel=command.channel, params=command.params))

    async def _leave_presence(self, key: str) -> None:
        """Stop being present at ``key``, and leave its group when nothing else of this connection reads it.

        Untracked first, so the keeper never renews what is being removed. A closing connection leaves its groups
        with the rest of its state, and a store outage must not keep it from closing.
        """
        self.presence_keys.discard(key)
        presence.get_keeper().untrack(self.connection_id, key)
        if self.closing:
            with contextlib.suppress(Exception):
                await presence.aleave(key, self.connection_id)
            return
        await presence.aleave(key, self.connection_id)
        await self._leave_group_if_unused(group_for_stream(key))

    async def handle_presence_list(self, command: protocol.PresenceList) -> None:
        key = await self._presence_target(command.channel, command.params)
        users = await presence.alist(key)
        self.push(
            protocol.with_id(
                "presence_list_response", command.id, channel=command.channel, params=command.params, users=users
            )
        )

    async def handle_authenticate(self, command: protocol.Authenticate) -> None:
        identity = await aauthenticate_token(command.token)
        if identity.user.pk != self.user.pk:
            raise Unauthenticated("The new token belongs to another user")
        self.identity = identity
        self._watch_token_expiry(identity.expires_at)
        self.push(protocol.response(command.id, user_id=self.user_id, expires_at=identity.expires_at))

    async def handle_ack(self, command: protocol.Ack) -> None:
        """A screen saw a kds event (issue 16): settle its pending ack, record the first on the ticket."""
        subscription = self.state.get(command.subscription_id)
        store = acks.get_acks()
        entry = await store.lookup(command.event_id) if protocol.wants_acks(subscription) else None
        protocol.check_ack(
            subscription,
            command.event_id,
            location_id=entry.location_id if entry is not None else None,
            station=entry.station if entry is not None else None,
        )
        assert entry is not None
        result = await store.acknowledge(command.event_id, user_id=self.user_id, connection_id=self.connection_id)
        if result is None:  # forgotten between the two calls (retention ran out)
            raise EventNotFound(command.event_id)
        if result.first and entry.ticket_id:
            await acks.arecord_ack_on_ticket_logged(entry.ticket_id, self.user.pk, self.connection_id, result.acked_ms)
        self.push(
            protocol.response(
                command.id,
                subscription_id=subscription.id,
                event_id=command.event_id,
                acked_at=protocol.iso_from_ms(result.acked_ms),
                duplicate=not result.first,
            )
        )

    handlers: dict[type, Callable[[Any, Any], Awaitable[None]]] = {
        protocol.Subscribe: handle_subscribe,
        protocol.Unsubscribe: handle_unsubscribe,
        protocol.UnsubscribeAll: handle_unsubscribe_all,
        protocol.ListSubscriptions: handle_list_subscriptions,
        protocol.Ping: handle_ping,
        protocol.PresenceJoin: handle_presence_join,
        protocol.PresenceLeave: handle_presence_leave,
        protocol.PresenceList: handle_presence_list,
        protocol.Authenticate: handle_authenticate,
        protocol.Ack: handle_ack,
    }

    # Called by the hub: no awaiting, no database ---------------------------------------------------------------

    def deliver_event(self, message: dict[str, Any]) -> int:
        """Hand the event to each matching subscription; return how many frames were sent (for the metrics)."""
        subscriptions = self.state.by_group.get(message["group"])
        if not subscriptions or self.closing:
            return 0
        event = message["event"]
        fields = message["fields"]
        sent = 0
        for subscription in subscriptions:
            if subscription.matcher.matches(event, fields) and self._deliver_to(subscription, message):
                sent += 1
        return sent

    def _deliver_to(self, subscription: protocol.Subscription, message: dict[str, Any]) -> bool:
        verdict = subscription.cursor.offer(message)
        if verdict is DELIVER:
            self.push_text(subscription.frame_prefix + message["tail"])
            return True
        if verdict is FILL_GAP:
            stream = message["stream"]
            self._spawn(self._fill_gap(subscription, stream, subscription.cursor.positions[stream]))
        return False

    async def _fill_gap(self, subscription: protocol.Subscription, stream: str, position: StreamPosition) -> None:
        """Fetch what a later seq overtook from history, send it, then release the events held meanwhile."""
        try:
            replay = await get_history().replay(stream, position.seq, position.epoch or None)
        except Exception:
            logger.warning("gap fill failed for %s; delivering what arrived", stream, exc_info=True)
            replay = None
        for frame in delivery.fill_gap(subscription, stream, replay):
            self.push_text(frame)
        if subscription.id in self.state.subscriptions:
            self._flush_replay_and_pending(subscription)

    def deliver_redelivery(self, message: dict[str, Any]) -> None:
        """An unacknowledged kds event again (``realtime.acks``): ack subscriptions only, past the seq dedupe."""
        if self.closing:
            return
        for subscription in self.state.by_group.get(message["group"], ()):
            if (
                protocol.wants_acks(subscription)
                and subscription.cursor.pending is None  # not while subscribing or filling a gap
                and subscription.matcher.matches(message["event"], message["fields"])
            ):
                self.push_text(protocol.redelivery_frame(subscription, message["tail"], message["redelivery"]))

    def deliver_presence(self, message: dict[str, Any]) -> None:
        if not self.closing:
            self.push_text(message["frame"])

    def on_access_changed(self) -> None:
        """Re-check this connection's access soon; many changes in a burst cost one check."""
        if self.access_check is None or self.access_check.done():
            self.access_check = self._spawn(self._recheck_access())

    async def _recheck_access(self) -> None:
        await asyncio.sleep(0.05)
        user = await arefresh_user(self.user)
        if user is None or not user.is_active:
            self._fail(Unauthenticated("The user was deactivated"))
            return
        assert self.identity is not None
        self.identity = Identity(user, self.identity.expires_at)
        for subscription in list(self.state.subscriptions.values()):
            scope_ids = tuple(scope_of(s) for s in subscription.streams)
            if not await amay_read(user, subscription.spec, scope_ids):
                await self._drop_subscription(subscription.id)
                self.push(protocol.subscription_revoked(subscription, "permission_removed"))
        for key in list(self.presence_keys):
            channel, location_id = split_stream(key)
            spec = protocol.lookup_channel(channel)
            if not await amay_read(user, spec, (location_id,)):
                await self._leave_presence(key)
        self._update_live_entry()

    def _update_live_entry(self) -> None:
        if self.hub is not None:  # still registered: not closed meanwhile
            live.get_tracker().touch(self)

    # Token lifetime -----------------------------------------------------------------------------------------------

    # One timer per process (realtime.expiry) instead of a task sleeping for the token's lifetime per connection.

    def _watch_token_expiry(self, expires_at: float) -> None:
        expiry.get_timer().schedule(expires_at, self, GatewayConsumer._on_token_due, expires_at)

    def _on_token_due(self, expires_at: float) -> None:
        if self.closing or self.identity is None or self.identity.expires_at > expires_at:
            return  # gone, or refreshed in band meanwhile
        self.push(TokenExpired().as_frame())
        grace = realtime_settings.TOKEN_EXPIRY_GRACE_SECONDS
        expiry.get_timer().schedule(time.time() + grace, self, GatewayConsumer._on_token_grace_over, expires_at)

    def _on_token_grace_over(self, expires_at: float) -> None:
        if not self.closing and self.identity is not None and self.identity.expires_at <= expires_at:
            self.close_after_flush(CloseCode.UNAUTHENTICATED)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task
