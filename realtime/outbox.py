"""Write events in the caller's database transaction; the relay (``realtime.relay``) publishes them after commit.

An event is part of the change that caused it: ``enqueue`` inserts one ``OutboxEvent`` row beside the change, so the
row exists exactly when the change committed. Nobody sees an event of a rolled-back transaction, and a committed
event survives Redis being down or the process dying right after the commit: a relay publishes it later.

Commit order per stream. The relay publishes each stream's rows in the order their transactions committed. Ids
do not give that by themselves: they are drawn at insert, and a transaction that inserted first may commit last.
On PostgreSQL a deferred constraint trigger (migration ``0001_outbox``) runs at COMMIT: it takes one transaction-
scoped advisory lock shared by every outbox writer (``pg_advisory_xact_lock``), held only from there to the end of
that commit, and numbers the transaction's rows from a sequence (``commit_seq``). The next committing writer waits
for the lock, so numbers grow in commit order and a row is visible before any later-numbered one exists; the relay
orders by ``commit_seq``. Writers are serialized only during their commit, never while their transaction runs, and
since the lock is one for all streams, two transactions writing several streams cannot deadlock on it (only a
deferred foreign-key check that runs after it and waits for a row another committing writer locked ``FOR UPDATE``
could; PostgreSQL then aborts one of the two). SQLite has one writer at a time, from its first write to its commit,
so there id order is commit order.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import router, transaction
from django.db.models import Count, Min
from django.utils import timezone

from realtime.errors import InvalidParams
from realtime.publishing import build_event, resolve_target

logger = logging.getLogger(__name__)

OUTBOX_KEY_PREFIX = "outbox:"


def target_of(channel: str, scope_id: str) -> dict[str, str]:
    """The scope keyword of a publish: ``{"location_id": ...}``, or ``{"user_id": ...}`` on a user channel."""
    from realtime.registry import Scope, get_channel

    spec = get_channel(channel)
    return {"user_id" if spec is not None and spec.scope is Scope.USER else "location_id": scope_id}


def idempotency_key(row_id: int) -> str:
    """The key the relay publishes a row with, so a second attempt of the same row publishes nothing."""
    return f"{OUTBOX_KEY_PREFIX}{row_id}"


def enqueue(
    channel: str,
    event: str,
    *,
    location_id: str | None = None,
    user_id: str | None = None,
    data: Mapping[str, Any] | None = None,
    using: str | None = None,
    source: str = "outbox",
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
    row = OutboxEvent.objects.using(alias).create(
        stream=stream, channel=spec.name, event=event, scope_id=scope_id, data=dict(data or {}), source=source
    )
    transaction.on_commit(wake_local_relay, using=alias)
    return row.pk


def wake_local_relay() -> None:
    """After a commit in this process, wake its relay now rather than at its next poll (SQLite has no NOTIFY)."""
    from realtime.relay import wake

    wake()


publish_in_transaction = enqueue
"""The public name: publish an event as part of the current transaction, delivered once it commits, never if it
rolls back; a bad channel, event, scope id or data raises ``ChannelNotFound`` / ``InvalidParams`` at once."""


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
