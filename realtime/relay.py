"""The outbox relay: publish committed outbox rows (``realtime.outbox``) in commit order, then mark them sent.

It runs inside every gateway process, on the server's own event loop: started from the ASGI lifespan under uvicorn,
from the reactor's start under daphne, and by the hub on first use where neither ran (``astart_relay``, the same
hooks as ``realtime.heartbeat``). It is never started on a short-lived loop (a request's or a test's
``async_to_sync``): tests set ``OUTBOX_RELAY_ENABLED`` off and drive ``Relay.relay_once`` or start and stop a relay
themselves.

One pass:

- PostgreSQL: in one transaction, claim up to ``OUTBOX_BATCH_SIZE`` unsent rows in commit order with
  ``SELECT ... FOR UPDATE SKIP LOCKED`` (so relays of several processes never take the same row), drop the streams
  of which another relay holds an earlier row (publishing ours first would reorder the stream), publish, mark sent,
  commit. The relay wakes on ``LISTEN realtime_outbox`` (a trigger notifies after each insert) and polls every
  ``OUTBOX_POLL_SECONDS`` in case a notification was missed.
- SQLite: read the unsent rows, publish, mark sent; it wakes when this process commits an event and polls.

Each row is published with the idempotency key ``outbox:<id>`` and a dedup window of ``OUTBOX_RETENTION_SECONDS``:
a relay that died after publishing and before its mark committed leaves the row unsent, and the next attempt (by
any relay) publishes nothing new. That is what makes delivery into the stream exactly once, also with two relays on
SQLite, where nothing is locked. While Redis is down a pass stops at the first failure, keeps the rows unsent
(counting ``attempts``, keeping ``last_error``) and the relay retries with exponential backoff up to
``OUTBOX_RETRY_MAX_SECONDS``. A row the registry refuses (its channel or event no longer exists) can never be
published: it is marked sent with its error and logged, so it does not block its stream forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.db import connections, router

from realtime import metrics
from realtime.conf import realtime_settings
from realtime.errors import ProtocolError, Unavailable
from realtime.outbox import idempotency_key, target_of

logger = logging.getLogger(__name__)
T = TypeVar("T")
PURGE_INTERVAL_SECONDS = 60.0
RETRY_BASE_SECONDS = 0.1
DEFERRED_RETRY_SECONDS = 0.01


class OutboxStalled(Exception):
    """A pass stopped at a row it could not publish (Redis down, or a bug); the rows stay unsent."""


@dataclass(frozen=True)
class OutboxRow:
    id: int
    stream: str
    channel: str
    event: str
    scope_id: str
    data: dict[str, Any]
    source: str
    position: int  # where it stands in commit order: commit_seq on PostgreSQL, the id on SQLite

    @property
    def target(self) -> dict[str, str]:
        return target_of(self.channel, self.scope_id)


@dataclass
class PassResult:
    """What one pass did: rows published, rows refused for good, and the row it stopped at."""

    sent: list[int] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    failed: tuple[int, str] | None = None
    backlog: int | None = None  # unsent rows left after the pass, for the gauge
    claimed: int = 0  # rows the pass took (a full batch: more may be waiting)
    deferred: int = 0  # rows left for another relay that holds an earlier row of their stream


def refused_indexes(error: ProtocolError, count: int) -> set[int]:
    """The positions of a batch an error names: each bad item of an ``InvalidParams``, or a clash's ``index``."""
    named = [entry.get("index") for entry in error.details.get("errors", [])] or [error.details.get("index")]
    return {index for index in named if isinstance(index, int) and 0 <= index < count}


class Relay:
    """One process's outbox relay. ``start()`` runs it on the running loop; ``relay_once()`` is one pass."""

    def __init__(self, using: str | None = None) -> None:
        from realtime.models import OutboxEvent

        self.alias = using or router.db_for_write(OutboxEvent)
        self.table = OutboxEvent._meta.db_table
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._pg: Any = None  # psycopg.AsyncConnection of the claims (PostgreSQL)
        # The relay's ORM work runs on a thread (and database connection) of its own: it must not queue behind, or
        # share a connection with, the consumers' database_sync_to_async thread.
        self._executor: ThreadPoolExecutor | None = None
        self._failures = 0
        self._last_purge: float | None = None
        self.published = 0  # rows this relay published (duplicates included), for tests and logs
        self.last_pass = PassResult()

    @property
    def vendor(self) -> str:
        return str(connections[self.alias].vendor)

    # One pass -------------------------------------------------------------------------------------------------

    async def relay_once(self) -> int:
        """Publish what is committed and unsent now; return how many rows were published.

        Raises ``OutboxStalled`` when a row could not be published (its attempt is recorded, the row stays unsent).
        """
        result = await (self._pass_postgresql() if self.vendor == "postgresql" else self._pass_orm())
        self.last_pass = result
        if result.backlog is not None:
            metrics.OUTBOX_BACKLOG.set(result.backlog)
        self.published += len(result.sent)
        await self._purge_if_due()
        if result.failed is not None:
            raise OutboxStalled(f"outbox row {result.failed[0]}: {result.failed[1]}")
        return len(result.sent)

    async def publish_rows(self, rows: list[OutboxRow]) -> PassResult:
        """Publish ``rows`` in order, each under its row's idempotency key; stop at the first failure.

        Consecutive rows of one source go in one ``apublish_many`` (one Redis round trip per stream, in order
        within it). A row the registry refuses is set aside (``rejected``) and the others are sent again at once:
        the ones already appended answer as duplicates. After an outage or a bug nothing of the run counts as sent;
        the rows stay unsent, and the next pass publishes only what did not get through.
        """
        result = PassResult()
        index = 0
        while index < len(rows):
            end = index
            while end < len(rows) and rows[end].source == rows[index].source:
                end += 1
            run = rows[index:end]
            failure = await self._publish_run(run, result)
            if failure is not None:
                result.failed = failure
                break
            index = end
        return result

    async def _publish_run(self, run: list[OutboxRow], result: PassResult) -> tuple[int, str] | None:
        from realtime.publishing import PublishItem, apublish_many

        dedup_seconds = realtime_settings.OUTBOX_RETENTION_SECONDS
        pending = list(run)
        while pending:
            items = [
                PublishItem(
                    row.channel, row.event, data=row.data, idempotency_key=idempotency_key(row.id), **row.target
                )
                for row in pending
            ]
            try:
                await apublish_many(items, source=pending[0].source, dedup_seconds=dedup_seconds)
            except Unavailable as exc:
                return pending[0].id, f"unavailable: {exc.__cause__ or exc}"
            except ProtocolError as exc:  # refused by the registry, or a key clash: it can never be published
                refused = refused_indexes(exc, len(pending))
                if not refused:
                    logger.exception("outbox rows from %d not published", pending[0].id)
                    return pending[0].id, f"{type(exc).__name__}: {exc}"
                for position in refused:
                    row = pending[position]
                    logger.error("outbox row %d (%s %s) refused and dropped: %s", row.id, row.stream, row.event, exc)
                    result.rejected.append((row.id, f"refused: {exc}"))
                pending = [row for position, row in enumerate(pending) if position not in refused]
                continue
            except Exception as exc:
                logger.exception("outbox rows from %d not published", pending[0].id)
                return pending[0].id, f"{type(exc).__name__}: {exc}"
            result.sent.extend(row.id for row in pending)
            pending = []
        return None

    async def _pass_postgresql(self) -> PassResult:
        connection = await self._pg_connection()
        try:
            async with connection.transaction():
                cursor = await connection.execute(
                    f"SELECT id, stream, channel, event, scope_id, data, source, commit_seq FROM {self.table} "
                    "WHERE sent_at IS NULL AND commit_seq IS NOT NULL ORDER BY commit_seq LIMIT %s "
                    "FOR UPDATE SKIP LOCKED",
                    [realtime_settings.OUTBOX_BATCH_SIZE],
                )
                rows = [OutboxRow(*record) for record in await cursor.fetchall()]
                result = PassResult()
                if rows:
                    mine = await self._without_held_streams(connection, rows)
                    result = await self.publish_rows(mine)
                    result.claimed, result.deferred = len(rows), len(rows) - len(mine)
                    await self._mark_postgresql(connection, result)
                cursor = await connection.execute(f"SELECT count(*) FROM {self.table} WHERE sent_at IS NULL")
                result.backlog = int((await cursor.fetchone())[0])
                return result
        except Exception:
            await self._close_pg()  # a broken connection is opened again by the next pass
            raise

    async def _without_held_streams(self, connection: Any, rows: list[OutboxRow]) -> list[OutboxRow]:
        """Drop the streams of which an earlier unsent row is not ours: another relay holds it, so it goes first."""
        first_claimed: dict[str, int] = {}
        for row in rows:
            first_claimed.setdefault(row.stream, row.position)
        cursor = await connection.execute(
            f"SELECT stream, min(commit_seq) FROM {self.table} "
            "WHERE sent_at IS NULL AND commit_seq IS NOT NULL AND stream = ANY(%s) GROUP BY stream",
            [list(first_claimed)],
        )
        held = {stream for stream, first in await cursor.fetchall() if first < first_claimed[stream]}
        return [row for row in rows if row.stream not in held]

    async def _mark_postgresql(self, connection: Any, result: PassResult) -> None:
        table = self.table
        if result.sent:
            await connection.execute(
                f"UPDATE {table} SET sent_at = now(), attempts = attempts + 1 WHERE id = ANY(%s)",
                [result.sent],
            )
        for row_id, error in result.rejected:
            await connection.execute(
                f"UPDATE {table} SET sent_at = now(), attempts = attempts + 1, last_error = %s WHERE id = %s",
                [error, row_id],
            )
        if result.failed is not None:
            await connection.execute(
                f"UPDATE {table} SET attempts = attempts + 1, last_error = %s WHERE id = %s",
                [result.failed[1], result.failed[0]],
            )

    async def _pass_orm(self) -> PassResult:
        rows = await self._in_db_thread(self._read_unsent)
        result = await self.publish_rows(rows) if rows else PassResult()
        result.claimed = len(rows)
        result.backlog = await self._in_db_thread(self._mark_orm, result)
        return result

    def _read_unsent(self) -> list[OutboxRow]:
        from realtime.models import OutboxEvent

        fields = ("id", "stream", "channel", "event", "scope_id", "data", "source", "id")
        batch = realtime_settings.OUTBOX_BATCH_SIZE
        unsent = OutboxEvent.objects.using(self.alias).filter(sent_at__isnull=True).order_by("id")
        return [OutboxRow(*values) for values in unsent.values_list(*fields)[:batch]]

    def _mark_orm(self, result: PassResult) -> int:
        """Mark the pass's rows; return how many unsent rows are left."""
        from django.db import transaction
        from django.db.models import F
        from django.utils import timezone

        from realtime.models import OutboxEvent

        rows = OutboxEvent.objects.using(self.alias)
        now = timezone.now()
        with transaction.atomic(using=self.alias):
            if result.sent:
                rows.filter(id__in=result.sent).update(sent_at=now, attempts=F("attempts") + 1)
            for row_id, error in result.rejected:
                rows.filter(id=row_id).update(sent_at=now, attempts=F("attempts") + 1, last_error=error)
            if result.failed is not None:
                rows.filter(id=result.failed[0]).update(attempts=F("attempts") + 1, last_error=result.failed[1])
        return rows.filter(sent_at__isnull=True).count()

    # Housekeeping ---------------------------------------------------------------------------------------------

    async def _purge_if_due(self) -> None:
        now = time.monotonic()
        if self._last_purge is not None and now - self._last_purge < PURGE_INTERVAL_SECONDS:
            return
        self._last_purge = now
        deleted = await self._in_db_thread(self.purge_sent)
        if deleted:
            logger.info(
                "outbox: deleted %d rows sent more than %ss ago", deleted, realtime_settings.OUTBOX_RETENTION_SECONDS
            )

    def purge_sent(self) -> int:
        """Delete rows sent more than ``OUTBOX_RETENTION_SECONDS`` ago; return how many."""
        from datetime import timedelta

        from django.utils import timezone

        from realtime.models import OutboxEvent

        cutoff = timezone.now() - timedelta(seconds=realtime_settings.OUTBOX_RETENTION_SECONDS)
        deleted, _ = OutboxEvent.objects.using(self.alias).filter(sent_at__isnull=False, sent_at__lte=cutoff).delete()
        return deleted

    async def _in_db_thread(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="realtime-outbox-relay")
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, functools.partial(self._call, fn, *args)
        )

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the relay's thread, then give its connection back (to the pool, on PostgreSQL)."""
        try:
            return fn(*args)
        finally:
            connections[self.alias].close()  # a no-op for SQLite's in-memory test database

    async def _close_db_thread(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, connections.close_all)  # this thread's only
            executor.shutdown(wait=False)

    # PostgreSQL connections -----------------------------------------------------------------------------------

    def _pg_params(self) -> dict[str, Any]:
        """Django's connection parameters for psycopg, without Django's own options (pool, cursor class)."""
        params = dict(connections[self.alias].get_connection_params())
        for key in ("cursor_factory", "context", "prepare_threshold", "pool"):
            params.pop(key, None)
        return params

    async def _pg_connection(self) -> Any:
        import psycopg

        if self._pg is None or self._pg.closed:
            self._pg = await psycopg.AsyncConnection.connect(**self._pg_params())
        return self._pg

    async def _close_pg(self) -> None:
        connection, self._pg = self._pg, None
        if connection is not None:
            try:
                await connection.close()
            except Exception:  # closing a broken connection
                logger.debug("outbox relay connection close failed", exc_info=True)

    async def _listen(self) -> None:
        """Wake the relay on every NOTIFY of the outbox trigger; reconnect with backoff when the link breaks."""
        import psycopg

        from realtime.models import NOTIFY_CHANNEL

        failures = 0
        while True:
            connection = None
            try:
                connection = await psycopg.AsyncConnection.connect(**self._pg_params(), autocommit=True)
                await connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
                failures = 0
                self.wake()  # rows may have been committed while nobody listened
                async for _notify in connection.notifies():
                    self.wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if failures == 1:
                    logger.warning("outbox LISTEN failed (%s: %s); polling meanwhile", type(exc).__name__, exc)
                await asyncio.sleep(min(realtime_settings.OUTBOX_RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2**failures))
            finally:
                if connection is not None:
                    await connection.close()

    # Running --------------------------------------------------------------------------------------------------

    def wake(self) -> None:
        """Run the next pass now (thread-safe: called after commits in any thread of this process)."""
        loop, event = self.loop, self._wake
        if loop is None or event is None or loop.is_closed():
            return
        try:
            if loop is asyncio.get_running_loop():
                event.set()
                return
        except RuntimeError:
            pass
        loop.call_soon_threadsafe(event.set)

    def retry_delay(self) -> float:
        """Exponential backoff after consecutive failed passes: 0.1 s, 0.2 s, ... up to ``OUTBOX_RETRY_MAX_SECONDS``."""
        return float(min(realtime_settings.OUTBOX_RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (self._failures - 1)))

    async def run_forever(self) -> None:
        assert self._wake is not None
        listener = asyncio.get_running_loop().create_task(self._listen()) if self.vendor == "postgresql" else None
        try:
            while True:
                self._wake.clear()
                try:
                    await self.relay_once()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._failures += 1
                    if self._failures == 1:  # once per outage, not once per retry
                        logger.warning("outbox relay: %s; retrying with backoff, rows stay unsent", exc)
                    await asyncio.sleep(self.retry_delay())
                    continue
                if self._failures:
                    logger.warning("outbox relay works again after %d failed passes", self._failures)
                    self._failures = 0
                if self.last_pass.claimed >= realtime_settings.OUTBOX_BATCH_SIZE:
                    continue  # more is waiting
                if self.last_pass.deferred:  # the relay holding their stream's earlier rows is about to commit
                    await asyncio.sleep(DEFERRED_RETRY_SECONDS)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), realtime_settings.OUTBOX_POLL_SECONDS)
        finally:
            if listener is not None:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
            await self._close_pg()

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done() and self.loop is not None and not self.loop.is_closed()

    def start(self) -> Relay:
        """Run the relay on the running event loop, until ``stop()``."""
        if self.running:
            return self
        self.loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.task = self.loop.create_task(self.run_forever(), name="realtime-outbox-relay")
        _running.add(self)
        return self

    async def stop(self) -> None:
        """Stop the relay and close its connections (a pass in flight is abandoned: its rows stay unsent)."""
        _running.discard(self)
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._close_pg()
        await self._close_db_thread()

    async def aclose(self) -> None:
        """Close what ``relay_once`` opened when the relay was never started (tests that drive passes by hand)."""
        await self.stop()


_running: set[Relay] = set()
_process_relay: Relay | None = None


def wake() -> None:
    """Wake every relay running in this process (after this process committed outbox rows)."""
    for relay in list(_running):
        relay.wake()


async def astart_relay() -> Relay | None:
    """Start this process's relay on the running (the server's) loop, once; None if ``OUTBOX_RELAY_ENABLED`` is off."""
    global _process_relay
    if not realtime_settings.OUTBOX_RELAY_ENABLED:
        return None
    relay = _process_relay
    if relay is not None and relay.running:
        return relay
    _process_relay = Relay().start()
    return _process_relay


async def astop_relay() -> None:
    """Stop this process's relay (server shutdown)."""
    global _process_relay
    relay, _process_relay = _process_relay, None
    if relay is not None and relay.loop is asyncio.get_running_loop():
        await relay.stop()
