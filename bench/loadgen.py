"""The load generator: many subscribed WebSocket connections, events published at a fixed rate, latency per delivery.

One step of a benchmark, against any server that speaks the gateway's protocol (the gateway or the baseline):

1. ``LoadGenerator.open(plans)`` opens one authenticated connection per ``ConnectionPlan``, waits for
   ``{"type": "connected"}``, subscribes, and times both (bounded concurrency: Twisted listens with a backlog of 50).
2. ``LoadGenerator.run_step(publisher, events, rate)`` publishes ``events`` open-loop at ``rate`` per second through a
   ``Publisher`` (REST, publisher socket or a separate process calling ``realtime.publishing.publish``). Each event
   carries ``data = {"sent_ns": <time_ns at send>, "run": <step tag>, "i": <index>, ...}``; every received frame is
   timed on arrival, so latency = arrival - sent_ns, per delivery. Expected deliveries are computed here by applying
   the subscriptions' filters to the planned events, so loss is exact, not estimated.

Frames from an earlier step (another ``run`` tag) are counted as stale and never as deliveries of this one.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import resource
import secrets
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Protocol

from bench.procstat import busy_seconds_per_core, cpu_seconds
from bench.wsclient import HandshakeFailed, WebSocketClient

GENERATOR_BOTTLENECK_CPU_SHARE = 0.9
"""Generator CPU (share of its one core) above which its numbers measure the generator, not the server."""
EVENT_FRAME_START = b'{"type":"event"'
EVENT_STAMP = re.compile(rb'"sent_ns":(\d+),"run":"([^"]*)","i":(\d+)')
STREAM_KEY = b'"stream":"'
# Close codes after which a screen reconnects and resumes (server restart, slow consumer, dropped socket).
RESUMABLE_CLOSE_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 4408, None})
RECONNECT_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 2.0, 4.0, 4.0)
"""The stamp ``PlannedEvent.body`` puts first in ``data``, as compact JSON renders it."""
FOREIGN_CPU_WARNING_SHARE = 0.15
"""CPU used by processes outside this benchmark (share of all cores) above which a step is flagged as disturbed."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


@dataclass(frozen=True)
class SubscriptionSpec:
    """What one screen subscribes to; ``accepts`` mirrors the server-side filters (sets, like the gateway's)."""

    channel: str
    params: dict[str, Any]

    def accepts(self, event: PlannedEvent) -> bool:
        params = self.params
        if event.channel != self.channel:
            return False
        locations = params.get("location_ids") or [params.get("location_id")]
        if event.location_id not in locations:
            return False
        if "events" in params and event.event not in params["events"]:
            return False
        if "types" in params and event.fields.get("type") not in params["types"]:
            return False
        return "statuses" not in params or event.fields.get("status") in params["statuses"]


@dataclass(frozen=True)
class ConnectionPlan:
    endpoint: Endpoint
    token: str
    subscriptions: tuple[SubscriptionSpec, ...]


@dataclass(frozen=True)
class PlannedEvent:
    index: int
    channel: str
    event: str
    location_id: str
    fields: dict[str, Any]

    def body(self, tag: str, sent_ns: int) -> dict[str, Any]:
        """The ``POST /v1/events`` body, stamped with the moment it is sent."""
        data = {"sent_ns": sent_ns, "run": tag, "i": self.index, **self.fields}
        return {"channel": self.channel, "event": self.event, "location_id": self.location_id, "data": data}


@dataclass
class PublishReport:
    published: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    first_sent_ns: int = 0
    last_sent_ns: int = 0
    max_lag_ms: float = 0.0  # how far behind its schedule the publisher fell
    connections: int = 1

    def record_error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(text[:300])


class Publisher(Protocol):
    name: str

    async def publish_all(self, events: Sequence[PlannedEvent], rate: float, tag: str) -> PublishReport: ...


OVERLOADED_SHARE = 0.5
OVERLOADED_DRAIN_S = 2.0
PUBLISH_OVERRUN_FACTOR = 1.0
PUBLISH_OVERRUN_GRACE_S = 1.0


def publish_deadline(event_count: int, rate: float) -> float:
    """``perf_counter`` time after which a publisher that fell behind gives up on what it has not sent yet.

    Keeps an overloaded step bounded in time: events not sent by then count as publish errors, loudly.
    """
    return time.perf_counter() + event_count / rate * PUBLISH_OVERRUN_FACTOR + PUBLISH_OVERRUN_GRACE_S


async def publish_paced(
    events: Sequence[PlannedEvent],
    rate: float,
    send: Callable[[PlannedEvent], None],
) -> float:
    """Call ``send`` for each event at ``rate`` per second (open loop: late sends catch up); return max lag (ms)."""
    start = time.perf_counter()
    max_lag = 0.0
    for position, event in enumerate(events):
        due = start + position / rate
        delay = due - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        max_lag = max(max_lag, time.perf_counter() - due)
        send(event)
    return max_lag * 1000


@dataclass
class ConnectionState:
    """Per-connection bookkeeping the message callback needs."""

    plan: ConnectionPlan
    connected: asyncio.Future[dict[str, Any]]
    pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    subscription_ids: list[str] = field(default_factory=list)
    # The last event frame seen per stream, parsed only when the connection must resume after a reconnect.
    last_event: dict[bytes, bytes] = field(default_factory=dict)

    def resume_positions(self) -> dict[str, dict[str, Any]]:
        """``resume`` for a re-subscribe: the last seq and epoch seen on each stream."""
        positions = {}
        for frame in self.last_event.values():
            event = json.loads(frame)
            positions[event["stream"]] = {"seq": event["seq"], "epoch": event["epoch"]}
        return positions


@dataclass
class ConnectReport:
    requested: int
    established: int
    subscribed: int
    seconds: float
    errors: dict[str, int]
    connect_ms: dict[str, float]
    subscribe_ms: dict[str, float]


@dataclass
class StepResult:
    label: str
    rate: float
    duration_s: float
    publisher: str
    events_planned: int
    events_published: int
    publish_errors: int
    publish_error_samples: list[str]
    publish_max_lag_ms: float
    expected: int
    received: int
    lost: int
    duplicates: int
    stale: int
    deliveries_per_s: float
    latency_ms: dict[str, float]
    window_s: float
    drain_s: float
    server_cpu_s: float
    server_cpu_us_per_delivery: float | None
    server_cpu_share: float
    generator_cpu_share: float
    generator_bound: bool
    foreign_cpu_share: float
    disturbed: bool
    closed_connections: dict[str, int]
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def children_cpu_seconds() -> float:
    """CPU of this process' finished children (the Python publisher process, once it exits)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def percentiles(values: Sequence[float], quantiles: Sequence[float] = (0.5, 0.9, 0.99)) -> dict[str, float]:
    """Nearest-rank percentiles plus max, rounded to 0.01; empty input gives an empty dict."""
    if not values:
        return {}
    ordered = sorted(values)
    result = {f"p{round(q * 100)}": ordered[max(0, math.ceil(q * len(ordered)) - 1)] for q in quantiles}
    result["max"] = ordered[-1]
    return {name: round(value, 2) for name, value in result.items()}


class LoadGenerator:
    """Holds the connections of one benchmark target and measures steps against it."""

    def __init__(self) -> None:
        self.clients: list[WebSocketClient] = []
        self.close_codes: Counter[str] = Counter()
        self.other_frames: Counter[str] = Counter()
        self._tag = ""
        self._counts = array("i")
        self._latencies_ns: list[int] = []
        self._received = 0
        self._stale = 0
        self._last_receipt_ns = 0
        self.reconnect = True  # dropped screens reconnect and resume (the gateway only; the baseline has no resume)
        self.reconnected = 0
        self.resumed_streams: Counter[tuple[str, bool]] = Counter()
        self._reconnects: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- frames -------------------------------------------------------------------------------------------------

    def _on_message(self, client: WebSocketClient, payload: bytes, received_ns: int) -> None:
        # Hot path: read the stamp of a compact event frame with one regex instead of decoding all of it.
        if payload.startswith(EVENT_FRAME_START):
            stream_at = payload.find(STREAM_KEY)
            if stream_at >= 0:  # remember it for resume; parsed only if the connection has to reconnect
                start = stream_at + len(STREAM_KEY)
                client.context.last_event[payload[start : payload.find(b'"', start)]] = payload
            stamp = EVENT_STAMP.search(payload)
            if stamp is not None:
                self._record_event(stamp[2].decode(), int(stamp[3]), int(stamp[1]), received_ns)
                return
        message = json.loads(payload)
        kind = message.get("type")
        if kind == "event":
            data = message.get("data") or {}
            self._record_event(data.get("run"), data.get("i", -1), data.get("sent_ns", 0), received_ns)
            return
        state: ConnectionState = client.context
        if kind == "connected":
            if not state.connected.done():
                state.connected.set_result(message)
            return
        waiter = state.pending.pop(str(message.get("id")), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(message)
        elif kind == "error" and not state.connected.done():
            state.connected.set_exception(RuntimeError(f"error before connected: {message.get('code')}"))
        else:
            self.other_frames[f"{kind}:{message.get('code') or message.get('reason') or ''}"] += 1

    def _record_event(self, tag: object, index: int, sent_ns: int, received_ns: int) -> None:
        if tag != self._tag or not 0 <= index < len(self._counts):
            self._stale += 1
            return
        self._counts[index] += 1
        self._received += 1
        self._latencies_ns.append(received_ns - sent_ns)
        self._last_receipt_ns = received_ns

    def _on_closed_future(self, client: WebSocketClient, _: asyncio.Future[int | None]) -> None:
        self.close_codes[str(client.close_code)] += 1
        if self.reconnect and not self._closing and client.close_code in RESUMABLE_CLOSE_CODES:
            task = asyncio.ensure_future(self._reconnect(client))
            self._reconnects.add(task)
            task.add_done_callback(self._reconnects.discard)

    async def _reconnect(self, old: WebSocketClient) -> None:
        """Reconnect a dropped screen and re-subscribe with ``resume``, as the JS client does, so nothing is lost."""
        loop = asyncio.get_running_loop()
        previous: ConnectionState = old.context
        plan = previous.plan
        for delay in RECONNECT_DELAYS_S:
            await asyncio.sleep(delay)
            if self._closing:
                return
            state = ConnectionState(plan=plan, connected=loop.create_future(), last_event=dict(previous.last_event))
            try:
                async with asyncio.timeout(10):
                    client = await WebSocketClient.connect(
                        plan.endpoint.host,
                        plan.endpoint.port,
                        f"/v1/ws?access_token={plan.token}",
                        self._on_message,
                        state,
                    )
                    await state.connected
                    resume = state.resume_positions()
                    for position, spec in enumerate(plan.subscriptions):
                        request_id = f"r{position}"
                        state.pending[request_id] = loop.create_future()
                        client.send_json(
                            {
                                "type": "subscribe",
                                "id": request_id,
                                "channel": spec.channel,
                                "params": spec.params,
                                "resume": resume,
                            }
                        )
                        reply = await state.pending[request_id]
                        own_streams = reply.get("positions", {})  # the streams of this subscription
                        for stream, covered in reply.get("resumed", {}).items():
                            if stream in own_streams:
                                self.resumed_streams[(stream, covered)] += 1
            except (TimeoutError, HandshakeFailed, OSError, RuntimeError):
                continue
            self.clients[self.clients.index(old)] = client
            self.reconnected += 1
            client.closed.add_done_callback(partial(self._on_closed_future, client))
            return

    # -- connections --------------------------------------------------------------------------------------------

    async def open(
        self, plans: Sequence[ConnectionPlan], concurrency: int = 48, timeout_s: float = 15.0
    ) -> ConnectReport:
        """Open, authenticate and subscribe one connection per plan; failures are counted, not raised."""
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(concurrency)
        errors: Counter[str] = Counter()
        connect_ms: list[float] = []
        subscribe_ms: list[float] = []
        subscribed = 0

        async def open_one(plan: ConnectionPlan) -> None:
            nonlocal subscribed
            state = ConnectionState(plan=plan, connected=loop.create_future())
            client: WebSocketClient | None = None
            async with gate:
                started = time.perf_counter()
                try:
                    async with asyncio.timeout(timeout_s):
                        client = await WebSocketClient.connect(
                            plan.endpoint.host,
                            plan.endpoint.port,
                            f"/v1/ws?access_token={plan.token}",
                            self._on_message,
                            state,
                        )
                        client.closed.add_done_callback(partial(self._on_closed_future, client))
                        await state.connected
                        connect_ms.append((time.perf_counter() - started) * 1000)
                        self.clients.append(client)
                        replies = []
                        for position, spec in enumerate(plan.subscriptions):
                            request_id = f"s{position}"
                            state.pending[request_id] = loop.create_future()
                            sent = time.perf_counter()
                            client.send_json(
                                {"type": "subscribe", "id": request_id, "channel": spec.channel, "params": spec.params}
                            )
                            reply = await state.pending[request_id]
                            subscribe_ms.append((time.perf_counter() - sent) * 1000)
                            replies.append(reply)
                except TimeoutError:
                    errors["timeout"] += 1
                    if client is not None:
                        client.abort()
                    return
                except (HandshakeFailed, OSError, RuntimeError) as exc:
                    code = client.close_code if client is not None else None
                    errors[f"{type(exc).__name__}: {str(exc)[:80]}" + (f" (close {code})" if code else "")] += 1
                    if client is not None:
                        client.abort()
                    return
            failed = [r for r in replies if not r.get("success")]
            if failed:
                errors[f"subscribe {failed[0].get('code')}: {str(failed[0].get('message'))[:80]}"] += 1
            else:
                state.subscription_ids = [r["subscription_id"] for r in replies]
                subscribed += 1

        started = time.perf_counter()
        await asyncio.gather(*(open_one(plan) for plan in plans))
        return ConnectReport(
            requested=len(plans),
            established=len(self.clients),
            subscribed=subscribed,
            seconds=round(time.perf_counter() - started, 3),
            errors=dict(errors),
            connect_ms=percentiles(connect_ms),
            subscribe_ms=percentiles(subscribe_ms),
        )

    async def close(self) -> None:
        """Close every connection politely, then abort what has not closed within two seconds."""
        self._closing = True
        for task in list(self._reconnects):
            task.cancel()
        for client in self.clients:
            client.close()
        pending = [client.closed for client in self.clients if not client.closed.done()]
        if pending:
            await asyncio.wait(pending, timeout=2.0)
        for client in self.clients:
            if not client.closed.done():
                client.abort()
        self.clients.clear()

    def live_subscriptions(self) -> list[SubscriptionSpec]:
        """Subscriptions of connections that are open and fully subscribed right now."""
        specs: list[SubscriptionSpec] = []
        for client in self.clients:
            state: ConnectionState = client.context
            if client.is_open and state.subscription_ids:
                specs.extend(state.plan.subscriptions)
        return specs

    # -- one measured step --------------------------------------------------------------------------------------

    def expected_per_event(self, events: Sequence[PlannedEvent]) -> array[int]:
        """How many live subscriptions accept each event (identical subscriptions are evaluated once)."""
        distinct: dict[str, tuple[SubscriptionSpec, int]] = {}
        for spec in self.live_subscriptions():
            key = json.dumps([spec.channel, spec.params], sort_keys=True)
            known = distinct.get(key)
            distinct[key] = (spec, known[1] + 1 if known else 1)
        by_stream: dict[tuple[str, str], list[tuple[SubscriptionSpec, int]]] = {}
        for spec, count in distinct.values():
            for location in spec.params.get("location_ids") or [spec.params.get("location_id")]:
                by_stream.setdefault((spec.channel, location), []).append((spec, count))
        return array(
            "i",
            (sum(n for spec, n in by_stream.get((e.channel, e.location_id), ()) if spec.accepts(e)) for e in events),
        )

    async def run_step(
        self,
        label: str,
        publisher: Publisher,
        events: Sequence[PlannedEvent],
        rate: float,
        server_pids: Sequence[int],
        accounted_pids: Sequence[int] = (),
        drain_timeout_s: float = 4.0,
        idle_timeout_s: float = 1.0,
    ) -> StepResult:
        """Publish ``events`` at ``rate``, wait for the deliveries, and measure the server over the window."""
        expected = self.expected_per_event(events)
        expected_total = sum(expected)
        self._tag = f"{label}-{secrets.token_hex(3)}"
        self._counts = array("i", bytes(4 * len(events)))
        self._latencies_ns = []
        self._received = 0
        self._stale = 0
        self._last_receipt_ns = 0
        closes_before = Counter(self.close_codes)

        cpu_before = cpu_seconds(server_pids)
        machine_before = sum(busy_seconds_per_core())
        accounted_before = cpu_seconds(accounted_pids) + children_cpu_seconds()
        generator_cpu_before = time.process_time()
        wall_before = time.perf_counter()
        report = await publisher.publish_all(events, rate, self._tag)
        published_at = time.perf_counter()

        # Drain: until everything expected arrived, or nothing arrived for idle_timeout_s, or drain_timeout_s.
        # Less than half delivered when publishing ends means overload: a long drain would only cost time.
        if self._received < expected_total * OVERLOADED_SHARE:
            drain_timeout_s = min(drain_timeout_s, OVERLOADED_DRAIN_S)
        last_progress, last_count = time.perf_counter(), -1
        while self._received < expected_total:
            now = time.perf_counter()
            if self._received != last_count:
                last_progress, last_count = now, self._received
            if now - last_progress > idle_timeout_s or now - published_at > drain_timeout_s:
                break
            await asyncio.sleep(0.02)
        wall_after = time.perf_counter()
        cpu_after = cpu_seconds(server_pids)
        generator_cpu = time.process_time() - generator_cpu_before
        machine_busy = sum(busy_seconds_per_core()) - machine_before
        accounted = cpu_seconds(accounted_pids) + children_cpu_seconds() - accounted_before

        window_s = wall_after - wall_before
        unique = sum(min(got, want) for got, want in zip(self._counts, expected, strict=True))
        duplicates = self._received - unique
        server_cpu = cpu_after - cpu_before
        delivering_s = (
            (self._last_receipt_ns - report.first_sent_ns) / 1e9 if self._received and report.first_sent_ns else 0.0
        )
        generator_share = generator_cpu / window_s if window_s else 0.0
        # Whatever else ran meanwhile (other processes, Redis, a publisher process): it competes for the cores.
        foreign_share = (
            max(0.0, machine_busy - server_cpu - generator_cpu - accounted) / window_s / len(busy_seconds_per_core())
        )
        closed = Counter(self.close_codes)
        closed.subtract(closes_before)
        return StepResult(
            label=label,
            rate=rate,
            duration_s=round(len(events) / rate, 3),
            publisher=publisher.name,
            events_planned=len(events),
            events_published=report.published,
            publish_errors=report.errors,
            publish_error_samples=report.error_samples,
            publish_max_lag_ms=round(report.max_lag_ms, 1),
            expected=expected_total,
            received=unique,
            lost=expected_total - unique,
            duplicates=duplicates,
            stale=self._stale,
            deliveries_per_s=round(unique / delivering_s, 1) if delivering_s > 0 else 0.0,
            latency_ms=percentiles([value / 1e6 for value in self._latencies_ns]),
            window_s=round(window_s, 3),
            drain_s=round(wall_after - published_at, 3),
            server_cpu_s=round(server_cpu, 3),
            server_cpu_us_per_delivery=round(server_cpu / unique * 1e6, 1) if unique else None,
            server_cpu_share=round(server_cpu / window_s, 3) if window_s else 0.0,
            generator_cpu_share=round(generator_share, 3),
            generator_bound=generator_share >= GENERATOR_BOTTLENECK_CPU_SHARE,
            foreign_cpu_share=round(foreign_share, 3),
            disturbed=foreign_share >= FOREIGN_CPU_WARNING_SHARE,
            closed_connections={code: n for code, n in closed.items() if n > 0},
            extra={"publisher_connections": report.connections},
        )
