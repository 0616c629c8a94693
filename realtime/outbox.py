"""Write events in the caller's database transaction; the relay (``realtime.relay``) publishes them after commit.

An event is part of the change that caused it: ``enqueue`` inserts one ``OutboxEvent`` row beside the change, so the
row exists exactly when the change committed. Nobody sees an event of a rolled-back transaction, and a committed
event survives Redis being down or the process dying right after the commit: a relay publishes it later.

Commit order per stream. The relay publishes a stream's rows in id order, so ids must follow commit order within a
stream. They would not by themselves: ids are drawn at insert, and a transaction that inserted first can commit
last. On PostgreSQL ``enqueue`` therefore takes a transaction-scoped advisory lock of the stream
(``pg_advisory_xact_lock``) before it inserts: a second transaction writing to the same stream waits at its insert
until the first one has committed or rolled back, so it draws a higher id and commits later. The lock is held until
the end of the writer's transaction; other streams are not affected. (A transaction that writes to two streams while
another writes to them in the other order can deadlock; PostgreSQL detects it and aborts one of them, which is
retried like any serialization failure.) SQLite has one writer at a time, from the first write to the commit, which
gives the same order without a lock.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connections, router, transaction
from django.db.models import Count, Min
from django.utils import timezone

from realtime.errors import InvalidParams
from realtime.publishing import build_event, resolve_target

logger = logging.getLogger(__name__)

ADVISORY_LOCK_NAMESPACE = 0x0B0C  # the first key of the two-key advisory lock: "outbox stream", apart from others
OUTBOX_KEY_PREFIX = "outbox:"


def idempotency_key(row_id: int) -> str:
    """The key the relay publishes a row with, so a second attempt of the same row publishes nothing."""
    return f"{OUTBOX_KEY_PREFIX}{row_id}"


def stream_lock_key(stream: str) -> int:
    """A stream's advisory lock key (a signed 32-bit int; a collision only serializes two streams' writers)."""
    value = zlib.crc32(stream.encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def enqueue(
    channel: str,
    event: str,
    *,
    location_id: str | None = None,
    user_id: str | None = None,
    data: Mapping[str, Any] | None = None,
    using: str | None = None,
    source: str = "python",
) -> int:
    """Write one event into the outbox in the current transaction (its own one in autocommit); return the row id.

    The event is validated here, like a publish, so bad input fails in the caller's code, not later in the relay.
    """
    from realtime.models import OutboxEvent

    spec, scope_id = resolve_target(channel, event, location_id=location_id, user_id=user_id)
    if data is not None and not isinstance(data, Mapping):
        raise InvalidParams("Invalid parameter data: must be a JSON object", channel=spec.name)
    build_event(spec, event, scope_id, data or {})  # the same checks as publish: JSON, size
    stream = spec.stream(scope_id)
    alias = using or router.db_for_write(OutboxEvent)
    with transaction.atomic(using=alias, savepoint=False):  # autocommit: the lock lives until this insert commits
        connection = connections[alias]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(%s, %s)", [ADVISORY_LOCK_NAMESPACE, stream_lock_key(stream)]
                )
        row = OutboxEvent.objects.using(alias).create(
            stream=stream, channel=spec.name, event=event, scope_id=scope_id, data=dict(data or {}), source=source
        )
        transaction.on_commit(wake_local_relay, using=alias)
    return row.pk


def wake_local_relay() -> None:
    """After a commit in this process, wake its relay now rather than at its next poll (SQLite has no NOTIFY)."""
    from realtime.relay import wake

    wake()


def publish_in_transaction(
    channel: str,
    event: str,
    *,
    location_id: str | None = None,
    user_id: str | None = None,
    data: Mapping[str, Any] | None = None,
    using: str | None = None,
) -> int:
    """Publish an event as part of the current transaction: delivered once it commits, never if it rolls back.

    Raises ``ChannelNotFound`` or ``InvalidParams`` at once for a bad channel, event, scope id or data. Returns
    the outbox row id.
    """
    return enqueue(  # validates first: a bad event fails here, in the caller's transaction
        channel, event, location_id=location_id, user_id=user_id, data=data, using=using, source="python"
    )


@dataclass(frozen=True)
class StreamBacklog:
    stream: str
    unsent: int
    oldest_id: int
    oldest_created_at: datetime


@dataclass(frozen=True)
class Backlog:
    """Committed rows not yet published: how many, and how long the oldest has waited."""

    unsent: int
    lag_seconds: float
    oldest_created_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"backlog": self.unsent, "lag_seconds": round(self.lag_seconds, 3)}


def read_backlog(using: str | None = None) -> Backlog:
    from realtime.models import OutboxEvent

    unsent = OutboxEvent.objects.using(using).filter(sent_at__isnull=True)
    summary = unsent.aggregate(count=Count("id"), oldest=Min("created_at"))
    oldest = summary["oldest"]
    lag = max(0.0, (timezone.now() - oldest).total_seconds()) if oldest is not None else 0.0
    return Backlog(summary["count"], lag, oldest)


def read_stream_backlogs(using: str | None = None) -> list[StreamBacklog]:
    """Per stream: unsent rows and the oldest of them, oldest streams first."""
    from realtime.models import OutboxEvent

    rows = (
        OutboxEvent.objects.using(using)
        .filter(sent_at__isnull=True)
        .values("stream")
        .annotate(unsent=Count("id"), oldest_id=Min("id"), oldest_created_at=Min("created_at"))
        .order_by("oldest_id")
    )
    return [StreamBacklog(r["stream"], r["unsent"], r["oldest_id"], r["oldest_created_at"]) for r in rows]
