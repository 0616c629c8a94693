"""The three ways the benchmark publishes: gateway REST, baseline publisher socket, gateway Python API in a process.

Each stamps ``data["sent_ns"]`` at the moment the event leaves the publisher, so measured latency includes the
server's whole publish path (HTTP parsing, authorization, storing the event, the channel layer), not just fan-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.httpclient import HttpConnection
from bench.loadgen import Endpoint, PlannedEvent, PublishReport, publish_deadline, publish_paced
from bench.wsclient import WebSocketClient

ACK_TIMEOUT_S = 10.0


class RestPublisher:
    """``POST /v1/events`` on keep-alive connections, open loop.

    A scheduler queues each event at its due time; a pool of connections sends them, growing (up to
    ``max_connections``) whenever every connection is busy, so a slow server sees requests at the offered rate
    instead of a closed loop politely waiting for it. Events still unsent at the deadline are counted as errors.
    """

    name = "rest"

    def __init__(self, endpoint: Endpoint, token: str, max_connections: int = 64) -> None:
        self.endpoint, self.token, self.max_connections = endpoint, token, max_connections

    async def publish_all(self, events: Sequence[PlannedEvent], rate: float, tag: str) -> PublishReport:
        report = PublishReport()
        queue: asyncio.Queue[tuple[PlannedEvent, float] | None] = asyncio.Queue()
        headers = {"Authorization": f"Bearer {self.token}"}
        deadline = publish_deadline(len(events), rate)
        workers: list[asyncio.Task[None]] = []
        idle = 0
        unsent = 0
        worst_wait = 0.0

        async def worker() -> None:
            nonlocal idle, unsent, worst_wait
            connection = HttpConnection(self.endpoint.host, self.endpoint.port)
            try:
                while True:
                    idle += 1
                    item = await queue.get()
                    idle -= 1
                    if item is None:
                        return
                    event, queued_at = item
                    now = time.perf_counter()
                    if now > deadline:
                        unsent += 1
                        continue
                    worst_wait = max(worst_wait, now - queued_at)
                    sent_ns = time.time_ns()
                    report.first_sent_ns = report.first_sent_ns or sent_ns
                    report.last_sent_ns = max(report.last_sent_ns, sent_ns)
                    try:
                        async with asyncio.timeout(max(0.1, deadline - time.perf_counter())):
                            response = await connection.request("POST", "/v1/events", event.body(tag, sent_ns), headers)
                    except TimeoutError:
                        report.record_error("no answer before the step's deadline")
                        await connection.close()
                        continue
                    except (OSError, asyncio.IncompleteReadError) as exc:
                        report.record_error(f"{type(exc).__name__}: {exc}")
                        await connection.close()
                        continue
                    if response.status == 202:
                        report.published += 1
                    else:
                        report.record_error(f"HTTP {response.status}: {response.body[:200]!r}")
            finally:
                await connection.close()

        def schedule(event: PlannedEvent) -> None:
            if idle <= queue.qsize() and len(workers) < self.max_connections:
                workers.append(asyncio.create_task(worker()))
            queue.put_nowait((event, time.perf_counter()))

        report.max_lag_ms = await publish_paced(events, rate, schedule)
        for _ in workers:
            queue.put_nowait(None)
        await asyncio.gather(*workers)
        if unsent:
            report.record_error(f"{unsent} events not sent: the server answered too slowly to keep the rate")
            report.errors += unsent - 1
        report.connections = len(workers)
        report.max_lag_ms += worst_wait * 1000
        return report


class BatchRestPublisher:
    """``POST /v1/events/batch``: events due within each ``flush_s`` window go out together, open loop.

    Each event is stamped when it is due (so its latency includes the wait for its batch); a flusher sends what
    has gathered every ``flush_s`` on one of up to ``max_connections`` keep-alive connections, opening another when
    all are busy. What is unsent at the deadline counts as errors.
    """

    name = "rest-batch"

    def __init__(self, endpoint: Endpoint, token: str, flush_s: float = 0.01, max_connections: int = 8) -> None:
        self.endpoint, self.token, self.flush_s, self.max_connections = endpoint, token, flush_s, max_connections

    async def publish_all(self, events: Sequence[PlannedEvent], rate: float, tag: str) -> PublishReport:
        report = PublishReport()
        headers = {"Authorization": f"Bearer {self.token}"}
        deadline = publish_deadline(len(events), rate)
        pending: list[dict[str, object]] = []
        idle: list[HttpConnection] = []
        opened: list[HttpConnection] = []
        sends: set[asyncio.Task[None]] = set()
        done = asyncio.Event()

        def stamp(event: PlannedEvent) -> None:
            sent_ns = time.time_ns()
            report.first_sent_ns = report.first_sent_ns or sent_ns
            report.last_sent_ns = max(report.last_sent_ns, sent_ns)
            pending.append(event.body(tag, sent_ns))

        async def send(batch: list[dict[str, object]]) -> None:
            if idle:
                connection = idle.pop()
            else:
                connection = HttpConnection(self.endpoint.host, self.endpoint.port)
                opened.append(connection)
            try:
                async with asyncio.timeout(max(0.1, deadline - time.perf_counter())):
                    response = await connection.request("POST", "/v1/events/batch", {"events": batch}, headers)
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                for _ in batch:
                    report.record_error(f"{type(exc).__name__}: {exc}")
                await connection.close()
                opened.remove(connection)
                return
            idle.append(connection)
            if response.status == 202:
                report.published += len(batch)
            else:
                for _ in batch:
                    report.record_error(f"HTTP {response.status}: {response.body[:200]!r}")

        async def flusher() -> None:
            while not (done.is_set() and not pending):
                await asyncio.sleep(self.flush_s)
                if not pending:
                    continue
                if not idle and len(opened) - len(idle) >= self.max_connections:
                    continue  # every connection busy: the batch grows until one is free
                batch = pending[:]
                pending.clear()
                task = asyncio.create_task(send(batch))
                sends.add(task)
                task.add_done_callback(sends.discard)

        flushing = asyncio.create_task(flusher())
        report.max_lag_ms = await publish_paced(events, rate, stamp)
        done.set()
        await flushing
        await asyncio.gather(*sends)
        for connection in opened:
            await connection.close()
        report.connections = len(opened)
        return report


class SocketPublisher:
    """The baseline's publish path: one frame per event on ``/v1/publish``, acknowledged by a ``published`` frame."""

    name = "socket"

    def __init__(self, endpoint: Endpoint, token: str) -> None:
        self.endpoint, self.token = endpoint, token

    async def publish_all(self, events: Sequence[PlannedEvent], rate: float, tag: str) -> PublishReport:
        report = PublishReport()
        acknowledged = asyncio.Event()
        expected = len(events)
        answers = 0

        def on_message(_: WebSocketClient, payload: bytes, __: int) -> None:
            nonlocal answers
            answers += 1
            message = json.loads(payload)
            if message.get("type") == "published":
                report.published += 1
            else:
                report.record_error(payload.decode()[:200])
            if answers >= expected:
                acknowledged.set()

        client = await WebSocketClient.connect(
            self.endpoint.host, self.endpoint.port, f"/v1/publish?access_token={self.token}", on_message
        )

        def send(event: PlannedEvent) -> None:
            sent_ns = time.time_ns()
            report.first_sent_ns = report.first_sent_ns or sent_ns
            report.last_sent_ns = sent_ns
            client.send_json(event.body(tag, sent_ns))

        try:
            report.max_lag_ms = await publish_paced(events, rate, send)
            try:
                async with asyncio.timeout(ACK_TIMEOUT_S):
                    await acknowledged.wait()
            except TimeoutError:
                report.record_error(f"{expected - answers} publishes unacknowledged after {ACK_TIMEOUT_S}s")
        finally:
            client.close()
        return report


class ProcessPublisher:
    """Calls ``realtime.publishing.publish`` in a separate Python process (``bench/publish_loop.py``)."""

    name = "python-publish"

    def __init__(
        self,
        env: dict[str, str],
        cwd: Path,
        spawn: Callable[[asyncio.subprocess.Process], None] | None = None,
        cpus: str | None = "1",
        slack_s: float = ACK_TIMEOUT_S,
    ) -> None:
        self.env, self.cwd, self.cpus = env, cwd, cpus
        self.spawn = spawn
        self.slack_s = slack_s  # beyond the events' own duration: start-up, and a busy machine

    async def publish_all(self, events: Sequence[PlannedEvent], rate: float, tag: str) -> PublishReport:
        spec = {
            "rate": rate,
            "tag": tag,
            "events": [
                {
                    "index": e.index,
                    "channel": e.channel,
                    "event": e.event,
                    "location_id": e.location_id,
                    "fields": e.fields,
                }
                for e in events
            ],
        }
        argv = [sys.executable, "-m", "bench.publish_loop"]
        if self.cpus is not None:
            argv = ["taskset", "-c", self.cpus, *argv]
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.cwd,
            env={**os.environ, **self.env},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        if self.spawn is not None:
            self.spawn(process)
        try:
            async with asyncio.timeout(len(events) / rate + self.slack_s):
                stdout, stderr = await process.communicate(json.dumps(spec).encode())
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):  # it may have exited meanwhile
                process.kill()
            await process.wait()
            report = PublishReport()
            report.record_error("publish process timed out")
            return report
        report = PublishReport()
        lines = stdout.decode().strip().splitlines()
        if process.returncode != 0 or not lines:
            report.record_error(f"exit {process.returncode}: {stderr.decode()[-600:]}")
            return report
        result = json.loads(lines[-1])
        report.published, report.errors = result["published"], result["errors"]
        report.error_samples = result["error_samples"]
        report.first_sent_ns, report.last_sent_ns = result["first_sent_ns"], result["last_sent_ns"]
        report.max_lag_ms = result["max_lag_ms"]
        return report
