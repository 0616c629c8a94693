"""The ``publish_cost`` scenario (issue 14): server CPU per REST publish, single and batched.

Targets: "a single REST publish costs at most 1 ms of server CPU" and "a batch publish sustains at least 5,000
events/s on one core". The gateway runs alone on core 0 with no subscribers (fan-out is what ``fanout`` and
``chain`` measure); the generator sends closed-loop on a few keep-alive connections, so the server is busy the
whole time. CPU is read from ``/proc`` of the server process (``bench.procstat``), minus what it burns idle over
the same time (the presence heartbeat). Events are spread over 20 locations, as a chain's are.

    python -m bench.run --scenario publish_cost [--quick] [--redis-db N]

Measured on the in-memory layer (one process) and on Redis (history in Redis Streams, the pub/sub layer), the
deployment the cost matters in. A step whose machine was busy with other processes is flagged ``disturbed``.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
from collections.abc import Sequence
from typing import Any

from bench import profiling
from bench.httpclient import HttpConnection
from bench.loadgen import Endpoint
from bench.procstat import busy_seconds_per_core, cpu_seconds
from bench.scenarios import GATEWAY, Bench, Target
from bench.workload import chain_events

GATEWAY_REDIS_1P = Target("gateway-redis-1p", "gateway", redis=True)
TARGET_SINGLE_CPU_MS = 1.0
TARGET_BATCH_EVENTS_PER_CORE_S = 5000.0
CONNECTIONS = 4
BATCH_SIZE = 100
LOCATIONS = 20
DISTURBED_FOREIGN_SHARE = 0.15
FULL_SINGLES, QUICK_SINGLES = 3000, 600
FULL_BATCHES, QUICK_BATCHES = 200, 40


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def closed_loop(endpoint: Endpoint, token: str, path: str, bodies: Sequence[Any]) -> tuple[int, list[str]]:
    """Send ``bodies`` over ``CONNECTIONS`` keep-alive connections, each waiting for its answer; count 2xx."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    ok = 0
    errors: list[str] = []
    headers = {"Authorization": f"Bearer {token}"}

    async def worker() -> None:
        nonlocal ok
        connection = HttpConnection(endpoint.host, endpoint.port)
        try:
            while not queue.empty():
                body = queue.get_nowait()
                response = await connection.request("POST", path, body, headers)
                if response.status in (200, 202):
                    ok += 1
                elif len(errors) < 5:
                    errors.append(f"HTTP {response.status}: {response.body[:200]!r}")
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return ok, errors


async def measure(
    bench: Bench, pids: list[int], idle_cpu_per_s: float, run: Any, events: int, label: str
) -> dict[str, Any]:
    """Run ``run()`` and turn the server's CPU over it into per-event figures (py-spy with ``--profile``)."""
    profiler = path = None
    if bench.profile_dir is not None:
        path = bench.profile_dir / f"publish_cost-{label}-{pids[0]}.txt"
        profiler = await profiling.start(pids[0], 2.0, path)
        await asyncio.sleep(0.3)
    cores_before = busy_seconds_per_core()
    own_before = own_cpu_seconds()
    cpu_before = cpu_seconds(pids)
    started = time.perf_counter()
    ok, errors = await run()
    wall = time.perf_counter() - started
    server_cpu = cpu_seconds(pids) - cpu_before
    own_cpu = own_cpu_seconds() - own_before
    busy = sum(busy_seconds_per_core()) - sum(cores_before)
    foreign = max(0.0, busy - server_cpu - own_cpu)
    foreign_share = foreign / (wall * (os.cpu_count() or 1))
    publish_cpu = max(0.0, server_cpu - idle_cpu_per_s * wall)
    per_event = publish_cpu / events if events else None
    if profiler is not None and path is not None:
        await profiling.finish(profiler)
        bench.emit(profiling.summarize(path))
    return {
        "label": label,
        "events": events,
        "answered_ok": ok,
        "errors": errors,
        "wall_s": round(wall, 3),
        "events_per_s_wall": round(events / wall, 1),
        "server_cpu_s": round(server_cpu, 3),
        "server_cpu_share": round(server_cpu / wall, 3),
        "cpu_ms_per_event": None if per_event is None else round(per_event * 1000, 4),
        "events_per_core_s": None if not per_event else round(1 / per_event),
        "foreign_cpu_share": round(foreign_share, 3),
        "disturbed": foreign_share > DISTURBED_FOREIGN_SHARE,
    }


async def measure_publish_cost(bench: Bench, target: Target, singles: int, batches: int) -> dict[str, Any]:
    locations = bench.world.locations[:LOCATIONS]
    result: dict[str, Any] = {"target": target.name, "redis": target.redis, "measurements": []}
    async with bench.deploy(target) as deployment:
        endpoint, pids, token = deployment.endpoints[0], deployment.pids, bench.world.publisher_token
        warm = [e.body("warmup", time.time_ns()) for e in chain_events(locations, 2 * len(locations))]
        await closed_loop(endpoint, token, "/v1/events", warm)  # grants remembered, scripts loaded
        await closed_loop(endpoint, token, "/v1/events/batch", [{"events": warm}])
        await asyncio.sleep(1.0)
        idle_before = cpu_seconds(pids)
        await asyncio.sleep(2.0)
        idle_cpu_per_s = (cpu_seconds(pids) - idle_before) / 2.0
        result["idle_cpu_share"] = round(idle_cpu_per_s, 4)

        single_bodies = [e.body("single", time.time_ns()) for e in chain_events(locations, singles)]
        single = await measure(
            bench,
            pids,
            idle_cpu_per_s,
            lambda: closed_loop(endpoint, token, "/v1/events", single_bodies),
            singles,
            "single",
        )
        result["measurements"].append(single)
        bench.emit(json.dumps({"scenario": "publish_cost", "target": target.name, **single}))
        await asyncio.sleep(1.0)

        planned = chain_events(locations, batches * BATCH_SIZE)
        batch_bodies = [
            {"events": [e.body("batch", time.time_ns()) for e in planned[i : i + BATCH_SIZE]]}
            for i in range(0, len(planned), BATCH_SIZE)
        ]
        batch = await measure(
            bench,
            pids,
            idle_cpu_per_s,
            lambda: closed_loop(endpoint, token, "/v1/events/batch", batch_bodies),
            len(planned),
            f"batch-{BATCH_SIZE}",
        )
        batch["batches_answered_ok"] = batch.pop("answered_ok")
        result["measurements"].append(batch)
        bench.emit(json.dumps({"scenario": "publish_cost", "target": target.name, **batch}))
    return result


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """PASS/MISS for the two cost targets, per target measured."""
    found = []
    for name, result in results.items():
        steps = {step["label"]: step for step in result.get("measurements", [])}
        single, batch = steps.get("single"), steps.get(f"batch-{BATCH_SIZE}")
        if single and single["cpu_ms_per_event"] is not None:
            found.append(
                {
                    "target": f"{name}: single REST publish <= {TARGET_SINGLE_CPU_MS:g} ms server CPU",
                    "value": single["cpu_ms_per_event"],
                    "status": "PASS" if single["cpu_ms_per_event"] <= TARGET_SINGLE_CPU_MS else "MISS",
                    "disturbed": single["disturbed"],
                }
            )
        if batch and batch["events_per_core_s"] is not None:
            found.append(
                {
                    "target": f"{name}: batch publish >= {TARGET_BATCH_EVENTS_PER_CORE_S:g} events/s on one core",
                    "value": batch["events_per_core_s"],
                    "status": "PASS" if batch["events_per_core_s"] >= TARGET_BATCH_EVENTS_PER_CORE_S else "MISS",
                    "disturbed": batch["disturbed"],
                }
            )
    return found


async def scenario_publish_cost(
    bench: Bench, targets: Sequence[Target] = (GATEWAY, GATEWAY_REDIS_1P)
) -> dict[str, Any]:
    quick = bench.scale.chain_connections < 5000
    singles, batches = (QUICK_SINGLES, QUICK_BATCHES) if quick else (FULL_SINGLES, FULL_BATCHES)
    results: dict[str, Any] = {}
    for target in targets:
        if bench.out_of_time(f"publish_cost/{target.name}"):
            continue
        results[target.name] = await measure_publish_cost(bench, target, singles, batches)
    checks = verdicts(results)
    for check in checks:
        note = f"publish cost: {check['status']:4}  {check['target']}: {check['value']}" + (
            " DISTURBED" if check["disturbed"] else ""
        )
        bench.notes.append(note)
        bench.emit(note)
    return {**results, "targets": checks}
