"""Prometheus metrics of one gateway process: ``GET /metrics`` (``realtime.metrics_view``) serves them.

Each process is its own scrape target (the Prometheus convention for async servers; no multiprocess files). Labels
take bounded values only, a registry channel, a close code, a command type, an error code, a publish source, never
a location, a user or a connection. Events are counted once per event with their number of recipients, not once
per delivery, so the fan-out's hot path pays one ``inc`` per event per process (``REALTIME_METRICS_ENABLED=0``
turns even that off; the bench's ``metrics`` scenario measures both). Gauges of live state (connections,
subscriptions per channel, presence members) are read off the process's hubs at scrape time, not kept on the hot
path.

    realtime_deliveries_total{channel="orders"} 1200.0
    realtime_event_delivery_lag_seconds_bucket{channel="orders",le="0.05"} 12.0
    realtime_disconnects_total{code="4408"} 1.0
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.core.signals import setting_changed
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from realtime.conf import realtime_settings
from realtime.errors import CloseCode, ErrorCode
from realtime.protocol import MESSAGE_TYPES
from realtime.registry import CHANNELS
from realtime.streams import channel_of

PUBLISH_SOURCES = ("rest", "python", "model", "outbox")
"""Who published an event: ``POST /v1/events``, Python code, a model save, the transactional outbox relay."""
RESUME_RESULTS = ("recovered", "not_recovered")
# Close codes a peer may also send or a server may report (1005 no status, 1006 abnormal, 1011 server error).
_PEER_CLOSE_CODES = (1005, 1006, 1011)
CLOSE_CODE_LABELS = frozenset(str(int(c)) for c in (*CloseCode, *_PEER_CLOSE_CODES))
OTHER = "other"
# The handshake counts as the "connect" command; a frame that never parsed into a command counts as "invalid".
COMMAND_TYPES = frozenset({"connect", "invalid", *MESSAGE_TYPES})
REDIS_OPS = ("publish", "connections", "command", "directory", "heartbeat", "layer_receive")
CHANNEL_NAMES = tuple(spec.name for spec in CHANNELS)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CONNECTIONS_OPENED = Counter("realtime_connections_opened", "WebSocket handshakes accepted (before authentication)")
DISCONNECTS = Counter("realtime_disconnects", "Closed connections by close code (the server's if it closed)", ["code"])
COMMANDS = Counter("realtime_commands", "Client commands by type and result (ok or the error code)", ["type", "result"])
COMMAND_DURATION = Histogram(
    "realtime_command_duration_seconds", "Time to handle a client command", ["type"], buckets=LATENCY_BUCKETS
)
EVENTS_PUBLISHED = Counter(
    "realtime_events_published", "Events published from this process, by channel and source", ["channel", "source"]
)
DELIVERIES = Counter("realtime_deliveries", "Event frames handed to the server for local connections", ["channel"])
DELIVERY_LAG = Histogram(
    "realtime_event_delivery_lag_seconds",
    "Event timestamp to its frames handed to the server, once per event per process",
    ["channel"],
    buckets=LATENCY_BUCKETS,
)
RESUMES = Counter("realtime_resume", "Streams asked to resume: recovered from history or not", ["result"])
SLOW_CONSUMER_CLOSES = Counter("realtime_slow_consumer_closes", "Connections closed 4408 for not reading")
RATE_LIMITED = Counter("realtime_rate_limited", "Client frames refused by the per-connection rate limit")
HISTORY_APPEND = Histogram(
    "realtime_history_append_seconds", "Time to append a published event to its stream history", buckets=LATENCY_BUCKETS
)
REDIS_ERRORS = Counter("realtime_redis_errors", "Redis (or channel layer) failures by operation", ["op"])
OUTBOX_BACKLOG = Gauge(
    "realtime_outbox_backlog", "Outbox rows committed and not yet published (set by the outbox relay)"
)

# Children resolved once: ``labels()`` costs a lock and a dict lookup, the fan-out path should not pay it per event.
_deliveries = {name: DELIVERIES.labels(name) for name in CHANNEL_NAMES}
_lag = {name: DELIVERY_LAG.labels(name) for name in CHANNEL_NAMES}
_published = {(c, s): EVENTS_PUBLISHED.labels(c, s) for c in CHANNEL_NAMES for s in PUBLISH_SOURCES}


def _initialize_labels() -> None:
    """Export every known series at 0 from the start, so ``rate()`` and alerts see the first increment."""
    for code in CLOSE_CODE_LABELS:
        DISCONNECTS.labels(code)
    for channel in CHANNEL_NAMES:
        for source in PUBLISH_SOURCES:
            EVENTS_PUBLISHED.labels(channel, source)
    for command in COMMAND_TYPES:
        COMMANDS.labels(command, "ok")
        COMMAND_DURATION.labels(command)
    for result in RESUME_RESULTS:
        RESUMES.labels(result)
    for op in REDIS_OPS:
        REDIS_ERRORS.labels(op)


_initialize_labels()


_enabled: bool | None = None


def enabled() -> bool:
    """``REALTIME_METRICS_ENABLED``, read once (it is asked per event) and again after a settings change."""
    global _enabled
    if _enabled is None:
        _enabled = realtime_settings.METRICS_ENABLED
    return _enabled


def _forget_enabled(*, setting: str, **kwargs: Any) -> None:
    global _enabled
    if setting == "REALTIME":
        _enabled = None


setting_changed.connect(_forget_enabled)


def close_code_label(code: int | None) -> str:
    label = str(code) if code is not None else "1005"
    return label if label in CLOSE_CODE_LABELS else OTHER


def command_type_label(message_type: object) -> str:
    """The metrics label of a frame that claimed ``message_type``: a known command's name, else ``invalid``."""
    return message_type if isinstance(message_type, str) and message_type in COMMAND_TYPES else "invalid"


def error_code_label(code: ErrorCode | str) -> str:
    return str(code) if code in ErrorCode.__members__.values() else OTHER


def channel_of_stream(stream: str) -> str:
    channel = channel_of(stream)
    return channel if channel in _deliveries else OTHER


# Recording ---------------------------------------------------------------------------------------------------------


def record_fanout(message: dict[str, Any], sent: int) -> None:
    """One event handed to ``sent`` local recipients: count them, observe its lag once."""
    channel = channel_of(message["stream"])
    deliveries = _deliveries.get(channel)
    if deliveries is None:
        return
    deliveries.inc(sent)
    timestamp = message.get("timestamp")
    if isinstance(timestamp, str):
        try:
            lag = time.time() - datetime.fromisoformat(timestamp).timestamp()
        except ValueError:
            return
        _lag[channel].observe(max(0.0, lag))


def record_published(stream: str, source: str, append_seconds: float) -> None:
    if not enabled():
        return
    child = _published.get((channel_of(stream), source))
    if child is None:
        child = EVENTS_PUBLISHED.labels(channel_of_stream(stream), source if source in PUBLISH_SOURCES else OTHER)
    child.inc()
    HISTORY_APPEND.observe(append_seconds)


def record_command(kind: str, result: str, seconds: float) -> None:
    if not enabled():
        return
    COMMANDS.labels(kind, result).inc()
    COMMAND_DURATION.labels(kind).observe(seconds)


def record_connection_opened() -> None:
    if enabled():
        CONNECTIONS_OPENED.inc()


def record_disconnect(code: int | None) -> None:
    if enabled():
        DISCONNECTS.labels(close_code_label(code)).inc()


def record_resume(covered: dict[str, bool]) -> None:
    if not enabled():
        return
    recovered = sum(1 for ok in covered.values() if ok)
    if recovered:
        RESUMES.labels("recovered").inc(recovered)
    if len(covered) - recovered:
        RESUMES.labels("not_recovered").inc(len(covered) - recovered)


def record_slow_consumer_close() -> None:
    if enabled():
        SLOW_CONSUMER_CLOSES.inc()


def record_rate_limited() -> None:
    if enabled():
        RATE_LIMITED.inc()


def record_redis_error(op: str) -> None:
    if enabled():
        REDIS_ERRORS.labels(op if op in REDIS_OPS else OTHER).inc()


# Live state, read at scrape time -----------------------------------------------------------------------------------


class LiveStateCollector(Collector):
    """Connections, subscriptions per channel and presence memberships of this process's hubs, counted on scrape.

    Scraped from the event loop (the metrics view is async), so the hubs' sets are not changing under the walk.
    """

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from realtime.hub import current_hubs

        connections = 0
        presence = 0
        subscriptions: Tally[str] = Tally(dict.fromkeys(CHANNEL_NAMES, 0))
        for hub in current_hubs():
            for members in list(hub.users.values()):
                for member in list(members):
                    connections += 1
                    presence += len(getattr(member, "presence_keys", ()))
                    state = getattr(member, "state", None)
                    for subscription in list(getattr(state, "subscriptions", {}).values()):
                        subscriptions[subscription.spec.name] += 1
        yield GaugeMetricFamily("realtime_connections", "Authenticated connections open on this process", connections)
        family = GaugeMetricFamily("realtime_subscriptions", "Live subscriptions on this process", labels=["channel"])
        for channel, count in sorted(subscriptions.items()):
            family.add_metric([channel], count)
        yield family
        yield GaugeMetricFamily(
            "realtime_presence_members", "Presence memberships (connection at a channel and location) here", presence
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("realtime_connections", "")
        yield GaugeMetricFamily("realtime_subscriptions", "", labels=["channel"])
        yield GaugeMetricFamily("realtime_presence_members", "")


_live_state = LiveStateCollector()
REGISTRY.register(_live_state)


def metric_names() -> set[str]:
    """Every sample name the registry exports (``_total``, ``_bucket``, ... included), for checks of dashboards."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names
