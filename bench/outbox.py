"""The transactional outbox (issue 14): commit to socket, with model saves relayed by 2 gateway processes.

    python -m bench.run --scenario outbox [--quick]        # needs PostgreSQL: BENCH_DATABASE_URL or DATABASE_URL

A database of its own on that PostgreSQL server (created, migrated, seeded with the demo world, dropped at the
end), the benchmark's Redis database, and 2 uvicorn gateway processes, each running its outbox relay (LISTEN/NOTIFY,
SKIP LOCKED). One subscriber per gateway on ``orders`` at loc-xyz789. A writer process (a worker, no gateway) saves
``Order`` rows at RATE per second in autocommit, each save writing its ``order.created`` outbox row in the save's
transaction, and notes the wall-clock time when each commit returned. The figure is the time from that commit to
the event frame read by each subscriber: p50 / p99 / max over every (event, subscriber). Target: p99 < 50 ms.
Every order must arrive exactly once at each subscriber, in commit order (the scenario fails otherwise).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bench import servers
from bench.scenarios import Bench

RATE_PER_S = 50.0
DURATION_S = 20.0
QUICK_DURATION_S = 6.0
TARGET_P99_MS = 50.0
ROOT = Path(__file__).resolve().parents[1]

WRITER = """
import json, sys, time
from locations.models import Location, Order
location = Location.objects.get(public_id="loc-xyz789")
rate, count = float(sys.argv[1]), int(sys.argv[2])
start = time.perf_counter()
for n in range(count):
    delay = start + n / rate - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    order = Order.objects.create(location=location, type="takeout", table_label=f"b{n}")
    print(json.dumps([order.public_id, time.time()]), flush=True)
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def admin_url() -> str | None:
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql://")) else None


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


async def subscriber(url: str, token: str, ready: asyncio.Event, count: int) -> list[tuple[str, float]]:
    """Subscribe, then collect ``count`` order.created frames: (order id, wall-clock time read), in arrival order."""
    import websockets

    seen: list[tuple[str, float]] = []
    async with websockets.connect(f"{url}?access_token={token}", open_timeout=10) as socket:
        json.loads(await socket.recv())  # connected
        request = {"type": "subscribe", "id": "s", "channel": "orders", "params": {"location_id": "loc-xyz789"}}
        await socket.send(json.dumps(request))
        while json.loads(await socket.recv()).get("id") != "s":
            pass
        ready.set()
        while len(seen) < count:
            frame = json.loads(await socket.recv())
            if frame.get("type") == "event" and frame["event"] == "order.created":
                seen.append((frame["data"]["order_id"], time.time()))
    return seen


async def scenario_outbox(bench: Bench) -> dict[str, Any]:
    admin = admin_url()
    if admin is None:
        bench.emit("outbox: skipped, needs PostgreSQL (BENCH_DATABASE_URL or DATABASE_URL=postgres://...)")
        return {"skipped": "no PostgreSQL"}
    if bench.gateway_env is None:
        raise RuntimeError("the gateway is not available")
    import psycopg

    duration = QUICK_DURATION_S if bench.scale.idle_connections < 5000 else DURATION_S
    count = int(RATE_PER_S * duration)
    name = f"rtgw_bench_outbox_{secrets.token_hex(3)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = urlparse(admin)._replace(path=f"/{name}").geturl()
    env = {
        **bench.gateway_env,
        "DATABASE_URL": database_url,
        "REDIS_URL": bench.redis_url,
        "REDIS_PREFIX": f"rtgw-bench-outbox-{secrets.token_hex(2)}",
    }
    deployment = None
    try:
        manage(env, "migrate", "--noinput")
        manage(env, "seed_demo")
        deployment = await servers.start_gateway(bench.supervisor, env, processes=2, name="outbox")
        from bench.scenarios import fetch_token

        readies = [asyncio.Event(), asyncio.Event()]
        tasks = []
        for ready, endpoint in zip(readies, deployment.endpoints, strict=True):
            token = await fetch_token(endpoint, {"username": "kim", "password": "demo-pass-123"})
            url = f"ws://{endpoint.host}:{endpoint.port}/v1/ws"
            tasks.append(asyncio.create_task(subscriber(url, token, ready, count)))
        await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready in readies)), 10)
        writer = await asyncio.create_subprocess_exec(
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            f"import sys; sys.argv = ['w', '{RATE_PER_S}', '{count}']\n{WRITER}",
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        bench.supervisor.adopt(writer)
        output, _ = await writer.communicate()
        commits = [json.loads(line) for line in output.decode().splitlines() if line.startswith("[")]
        received = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        if deployment is not None:
            servers.stop_deployment(bench.supervisor, deployment)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    committed_order = [order_id for order_id, _ in commits]
    latencies = []
    for seen in received:
        if [order_id for order_id, _ in seen] != committed_order:
            raise RuntimeError("a subscriber did not see each order once, in commit order")
        latencies += [(read - at) * 1000 for (_, read), (_, at) in zip(seen, commits, strict=True)]
    result = {
        "rate_per_s": RATE_PER_S,
        "events": len(commits),
        "subscribers": len(received),
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 2),
        "target_p99_ms": TARGET_P99_MS,
    }
    result["status"] = "PASS" if result["p99_ms"] < TARGET_P99_MS else "MISS"
    bench.emit(
        f"outbox target: {result['status']:4}  commit to socket p99 {result['p99_ms']} ms < {TARGET_P99_MS:g} ms "
        f"(p50 {result['p50_ms']}, max {result['max_ms']}; {len(commits)} model saves at {RATE_PER_S:g}/s, "
        "2 gateway processes, PostgreSQL + Redis)"
    )
    return result
