"""Presence at rest (issue 12): with N members joined on one gateway process, what presence costs while idle.

    python -m bench.run --scenario presence            # N = 5,000 (500 with --quick)

Starts a redis-server of its own (free port, no persistence), so its ``INFO commandstats`` counts this gateway
and nothing else on the machine, and one gateway (uvicorn, ``REDIS_URL`` = that server, default presence settings:
heartbeat 1 s, lapse 3 s). Opens N connections spread over the world's locations; each joins presence at its
location (``presence_join`` on ``orders``). After a settle pause it measures a quiet window:

- Redis commands per second (``INFO commandstats`` delta, the measuring ``INFO`` calls left out), by command, and the
  Redis CPU spent in them (``usec``); commandstats also counts the commands a script runs inside Redis, so the
  commands the gateway sent (``total_commands_processed``) are given beside them. Every ``EVALSHA`` at rest is the
  heartbeat's script. Target: <= 5 per process (the stricter count is the one compared).
- the gateway's CPU (utime + stime from /proc) as a share of one core, and redis-server's;
- the CPU one beat costs (500 beats of the same code in a probe process: py-spy hardly sees a beat);
- then a second window under py-spy (when installed): the share of the gateway's samples inside the heartbeat
  (``realtime/heartbeat.py``, ``realtime/stores/liveness.py``), i.e. presence's share of the gateway's CPU at rest.

Then the crash bound, CRASH_RUNS times: an observer on one gateway, a member on another that is SIGKILLed; the time
from the kill to the observer's ``user_left`` (the bound is PRESENCE_TTL_SECONDS + PRESENCE_HEARTBEAT_SECONDS).

Other processes' CPU during the window is reported; at >= 15% of the machine the figures are flagged DISTURBED.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import profiling, servers
from bench.loadgen import FOREIGN_CPU_WARNING_SHARE
from bench.procstat import busy_seconds_per_core, cpu_seconds
from bench.wsclient import HandshakeFailed, WebSocketClient

SETTLE_S = 3.0
WINDOW_S = 10.0
QUICK_WINDOW_S = 5.0
TARGET_COMMANDS_PER_S = 5.0
CONNECT_CONCURRENCY = 48
CRASH_RUNS = 3
PRESENCE_FRAMES = ("realtime/heartbeat.py", "realtime/stores/liveness.py")


class Member:
    """One connection that joins presence; ``ready`` resolves with the join's response."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.connected: asyncio.Future[None] = loop.create_future()
        self.ready: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.user_id = ""


def _on_message(client: WebSocketClient, payload: bytes, received_ns: int) -> None:
    member: Member = client.context
    message = json.loads(payload)
    kind = message.get("type")
    if kind == "connected" and not member.connected.done():
        member.user_id = str(message.get("user_id", ""))
        member.connected.set_result(None)
    elif message.get("id") == "join" and not member.ready.done():
        member.ready.set_result(message)
    elif kind == "error" and not member.connected.done():
        member.connected.set_exception(RuntimeError(message.get("code", "error")))


async def join_members(endpoint: Any, plans: Sequence[tuple[str, str]]) -> tuple[list[WebSocketClient], dict[str, int]]:
    """Open one connection per (location, token) and join presence there; failures are counted."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    clients: list[WebSocketClient] = []
    errors: dict[str, int] = {}

    async def one(location: str, token: str) -> None:
        member = Member()
        async with gate:
            try:
                async with asyncio.timeout(20):
                    client = await WebSocketClient.connect(
                        endpoint.host, endpoint.port, f"/v1/ws?access_token={token}", _on_message, member
                    )
                    clients.append(client)
                    await member.connected
                    client.send_json(
                        {
                            "type": "presence_join",
                            "id": "join",
                            "channel": "orders",
                            "params": {"location_id": location},
                            "user_info": {"screen": len(clients)},
                        }
                    )
                    reply = await member.ready
                    if not reply.get("success"):
                        raise RuntimeError(f"join refused: {reply.get('code')}")
            except (TimeoutError, HandshakeFailed, OSError, RuntimeError) as exc:
                key = f"{type(exc).__name__}: {str(exc)[:60]}"
                errors[key] = errors.get(key, 0) + 1

    await asyncio.gather(*(one(location, token) for location, token in plans))
    return clients, errors


def command_stats(client: Any) -> dict[str, tuple[int, int]]:
    """``INFO commandstats`` as {command: (calls, usec)}."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for name, v in stats.items()}


async def start_redis(bench: Any) -> tuple[str, Any]:
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed")
    port = servers.free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(bench.supervisor.log_dir)]
    child = bench.supervisor.start("redis-presence", argv, {}, cpus=None)
    await servers.wait_for_port(port, child, bench.supervisor.log_dir / "redis-presence.log")
    return f"redis://127.0.0.1:{port}/0", child


async def scenario_presence(bench: Any, targets: Sequence[Any] | None = None) -> dict[str, Any]:
    import redis

    if bench.gateway_env is None or targets is not None:
        raise RuntimeError("the presence scenario needs the gateway")
    members = int(bench.scale.idle_connections)  # 5,000 full, 500 quick: the idle scenario's size
    window_s = QUICK_WINDOW_S if members < 5000 else WINDOW_S
    redis_url, redis_child = await start_redis(bench)
    env = {**bench.gateway_env, "REDIS_URL": redis_url, "REDIS_PREFIX": "rtgw-bench-presence"}
    deployment = await servers.start_gateway(bench.supervisor, env, name="gateway-presence")
    stats_client = redis.Redis.from_url(redis_url)
    clients: list[WebSocketClient] = []
    try:
        locations = bench.world.locations
        plans = [
            (locations[n % len(locations)], bench.world.tokens[locations[n % len(locations)]]) for n in range(members)
        ]
        started = time.perf_counter()
        clients, errors = await join_members(deployment.endpoints[0], plans)
        join_s = time.perf_counter() - started
        stored = sum(stats_client.hlen(key) for key in stats_client.scan_iter("rtgw-bench-presence:pres:*:m"))
        bench.emit(f"presence: {stored} members stored ({members} asked, {join_s:.1f}s, errors {errors})")
        await asyncio.sleep(SETTLE_S)

        gateway_pids, redis_pids = deployment.pids, [redis_child.pid]
        before = command_stats(stats_client)
        machine_before = sum(busy_seconds_per_core())
        gateway_before, redis_before = cpu_seconds(gateway_pids), cpu_seconds(redis_pids)
        own_before = cpu_seconds([os.getpid()])
        window_started = time.perf_counter()
        await asyncio.sleep(window_s)
        elapsed = time.perf_counter() - window_started
        gateway_cpu = cpu_seconds(gateway_pids) - gateway_before
        redis_cpu = cpu_seconds(redis_pids) - redis_before
        own_cpu = cpu_seconds([os.getpid()]) - own_before
        machine_busy = sum(busy_seconds_per_core()) - machine_before
        after = command_stats(stats_client)
        cores = len(busy_seconds_per_core())
        foreign_share = max(0.0, machine_busy - gateway_cpu - redis_cpu - own_cpu) / elapsed / cores

        by_command = {
            name: {
                "per_s": round((calls - before.get(name, (0, 0))[0]) / elapsed, 2),
                "redis_usec_per_s": round((usec - before.get(name, (0, 0))[1]) / elapsed, 1),
            }
            for name, (calls, usec) in after.items()
            if name != "info" and calls != before.get(name, (0, 0))[0]
        }
        commands_per_s = round(sum(v["per_s"] for v in by_command.values()), 2)
        result: dict[str, Any] = {
            "members_asked": members,
            "members_stored": stored,
            "join_seconds": round(join_s, 1),
            "join_errors": errors,
            "window_s": round(elapsed, 1),
            "redis_commands_per_s": commands_per_s,
            "evalsha_per_s": by_command.get("evalsha", {}).get("per_s", 0.0),
            "redis_commands_by_command": by_command,
            "target_commands_per_s": TARGET_COMMANDS_PER_S,
            "target_met": commands_per_s <= TARGET_COMMANDS_PER_S,
            "gateway_cpu_share_of_core": round(gateway_cpu / elapsed, 4),
            "redis_cpu_share_of_core": round(redis_cpu / elapsed, 4),
            "foreign_cpu_share": round(foreign_share, 3),
            "disturbed": foreign_share >= FOREIGN_CPU_WARNING_SHARE,
        }
        result["presence_share_of_gateway_samples"] = await presence_share(bench, gateway_pids[0], window_s)
        result["beat_probe"] = await probe_beat_cpu(env)
        for client in clients:
            client.abort()
        clients = []
        servers.stop_deployment(bench.supervisor, deployment)
        stats_client.flushdb()  # what the stopped gateway left is not part of the crash measurement
        result["crash_bound"] = await measure_crash_bound(bench, env, CRASH_RUNS)
        bench.emit("presence " + json.dumps(result))
        verdict = "PASS" if result["target_met"] else "MISS"
        bench.emit(
            f"PRESENCE at rest, {stored} members on one process: {commands_per_s} Redis commands/s counting those "
            f"inside scripts, EVALSHA {result['evalsha_per_s']}/s sent (target <= {TARGET_COMMANDS_PER_S:g}: "
            f"{verdict}); "
            f"gateway CPU {gateway_cpu / elapsed:.1%} of a core, redis {redis_cpu / elapsed:.1%}"
            + (" DISTURBED" if result["disturbed"] else "")
        )
        if result["disturbed"]:
            bench.notes.append(f"presence: other processes used {foreign_share:.0%} of the machine: re-run quietly")
        if stored != members:
            bench.notes.append(f"presence: only {stored} of {members} members joined ({errors})")
        return {"presence-1p": result}
    finally:
        for client in clients:
            client.abort()
        stats_client.close()
        servers.stop_deployment(bench.supervisor, deployment)
        bench.supervisor.stop(redis_child)


PROBE = """
import asyncio, json, time
import django
django.setup()
from realtime.stores.liveness import RedisLiveness
from realtime.stores.redis_client import key_prefix

async def main(beats):
    store = RedisLiveness(key_prefix(), process="proc-bench-probe")
    await store.beat()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(beats):
        await store.beat()
    print(json.dumps({"beats": beats, "cpu_us_per_beat": (time.process_time() - cpu) / beats * 1e6,
                      "wall_us_per_beat": (time.perf_counter() - wall) / beats * 1e6}))

asyncio.run(main(500))
"""


async def probe_beat_cpu(env: dict[str, str]) -> dict[str, Any] | None:
    """CPU one beat costs a gateway-like process: 500 beats of the same code against the same Redis and state.

    At one beat per ``PRESENCE_HEARTBEAT_SECONDS`` this is presence's CPU at rest, which py-spy at 200 Hz hardly
    catches (a beat is about a millisecond once a second)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PROBE,
        cwd=servers.PROJECT_DIR,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    except TimeoutError:
        process.kill()
        await process.wait()
        return None
    if process.returncode != 0:
        return {"error": err.decode(errors="replace")[-300:]}
    found: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    found = {k: round(v, 1) if isinstance(v, float) else v for k, v in found.items()}
    found["cpu_share_at_1_beat_per_s"] = round(found["cpu_us_per_beat"] / 1e6, 6)
    return found


async def presence_share(bench: Any, pid: int, window_s: float) -> dict[str, Any] | None:
    """py-spy the gateway for a second window: the share of its samples that are inside the heartbeat."""
    if not (servers.VENV_BIN / "py-spy").exists():
        return None
    output = Path(bench.supervisor.log_dir) / "presence-profile.txt"
    process = await profiling.start(pid, window_s, output)
    await profiling.finish(process, timeout_s=window_s + 15)
    total = inside = 0
    try:
        lines = output.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            total += int(count)
            if any(frame in stack for frame in PRESENCE_FRAMES):
                inside += int(count)
    return {"samples": total, "in_heartbeat": inside, "share": round(inside / total, 4) if total else None}


async def _watch(
    endpoint: Any, token: str, location: str, frames: asyncio.Queue[dict[str, Any]]
) -> tuple[WebSocketClient, str]:
    """A connection that joins presence at ``location`` and puts every presence frame on ``frames``."""
    member = Member()

    def on_message(client: WebSocketClient, payload: bytes, received_ns: int) -> None:
        message = json.loads(payload)
        if message.get("type") == "presence":
            frames.put_nowait({**message, "received": time.monotonic()})
        else:
            _on_message(client, payload, received_ns)

    client = await WebSocketClient.connect(
        endpoint.host, endpoint.port, f"/v1/ws?access_token={token}", on_message, member
    )
    await asyncio.wait_for(member.connected, 20)
    params = {"location_id": location}
    client.send_json({"type": "presence_join", "id": "join", "channel": "orders", "params": params, "user_info": {}})
    reply = await asyncio.wait_for(member.ready, 20)
    if not reply.get("success"):
        raise RuntimeError(f"join refused: {reply}")
    return client, member.user_id


async def _next_presence(frames: asyncio.Queue[dict[str, Any]], event: str, user_id: str) -> dict[str, Any]:
    while True:
        frame = await asyncio.wait_for(frames.get(), 30)
        if frame.get("event") == event and frame.get("data", {}).get("user_id") == user_id:
            return frame


async def measure_crash_bound(bench: Any, env: dict[str, str], runs: int) -> dict[str, Any]:
    """Seconds from SIGKILL of a member's process to ``user_left`` on another process, ``runs`` times."""
    from bench.scenarios import fetch_token

    location = bench.world.locations[0]
    observer_deployment = await servers.start_gateway(bench.supervisor, env, name="gateway-presence-observer")
    frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    seconds: list[float] = []
    try:
        observer, _ = await _watch(observer_deployment.endpoints[0], bench.world.tokens[location], location, frames)
        for run in range(runs):
            doomed = await servers.start_gateway(bench.supervisor, env, name=f"gateway-presence-doomed-{run}")
            token = await fetch_token(doomed.endpoints[0], bench.world.publisher)
            victim, victim_user = await _watch(doomed.endpoints[0], token, location, asyncio.Queue())
            await _next_presence(frames, "user_joined", victim_user)
            killed = time.monotonic()
            for child in doomed.children:
                os.killpg(child.pid, signal.SIGKILL)
            frame = await _next_presence(frames, "user_left", victim_user)
            seconds.append(round(frame["received"] - killed, 2))
            victim.abort()
            servers.stop_deployment(bench.supervisor, doomed)
        observer.abort()
    finally:
        servers.stop_deployment(bench.supervisor, observer_deployment)
    bench.emit(f"presence: SIGKILL -> user_left on another process: {seconds} s")
    return {"runs": runs, "seconds": seconds, "max_s": max(seconds) if seconds else None}
