"""The scenarios of issue 6, each measured on the gateway and on a reference (the baseline, or another gateway setup).

    fanout   1,000 screens at one location; 10, 50, 100 events/s for 10 s; then a saturation search
    chain    5,000 screens over 200 locations (25 each, filter mix); 500 events/s spread over the locations
    idle     5,000 subscribed, idle screens: memory per connection and time to connect
             (in a full run taken from the chain's connect phase instead of connecting 5,000 twice more)
    redis    the fan-out on two gateway processes sharing a Redis layer (RedisPubSubChannelLayer, the default),
             connections split over both; REST publish to process 0, then the Python ``publish`` function from a
             separate process; then the same on channels-redis' core RedisChannelLayer, for the layer choice
    daphne   the fan-out with the gateway served by daphne instead of uvicorn (the default server)

Every target is measured the same way (``measure_target``): start it, warm it up, take RSS, open and subscribe the
connections, take RSS again (idle memory), run the steps with a quiet pause between them, stop it.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import profiling, servers
from bench.httpclient import request_once
from bench.loadgen import ConnectionPlan, Endpoint, LoadGenerator, PlannedEvent, Publisher, StepResult
from bench.procstat import cpu_seconds, find_pid_by_name, rss_bytes
from bench.publishers import BatchRestPublisher, ProcessPublisher, RestPublisher, SocketPublisher
from bench.workload import chain_events, fanout_events, screen_plans

SATURATION_P99_LIMIT_MS = 100.0
SATURATION_FLOOR_RATE = 1.0
"""Below one event per second a short step holds too few events to judge; the search stops there."""
QUIESCE_MAX_S = 10.0
QUIESCE_BEFORE_OVERLOAD_MAX_S = 2.0
"""Before a late (overloading) step a lingering backlog matters less than the run's time budget."""
QUIESCE_IDLE_CPU_SHARE = 0.1


@dataclass(frozen=True)
class Scale:
    """Sizes of every scenario; ``QUICK`` shrinks them to about a minute in total."""

    fanout_connections: int = 1000
    fanout_rates: tuple[float, ...] = (10, 50, 100)
    fanout_step_s: float = 10
    saturation_step_s: float = 3
    saturation_max_steps: int = 3
    chain_connections: int = 5000
    chain_locations: int = 200
    chain_rate: float = 500
    chain_step_s: float = 10
    idle_connections: int = 5000
    redis_connections: int = 1000
    redis_rates: tuple[float, ...] = (10,)
    redis_step_s: float = 10
    python_publish_rate: float = 50
    python_publish_step_s: float = 3
    uvicorn_rates: tuple[float, ...] = (10, 50)
    uvicorn_step_s: float = 4


FULL = Scale()
QUICK = Scale(
    fanout_connections=200,
    fanout_rates=(10,),
    fanout_step_s=3,
    saturation_step_s=2,
    saturation_max_steps=2,
    chain_connections=500,
    chain_locations=20,
    chain_rate=100,
    chain_step_s=2,
    idle_connections=500,
    redis_connections=200,
    redis_rates=(10,),
    redis_step_s=3,
    python_publish_rate=20,
    python_publish_step_s=2,
    uvicorn_rates=(10,),
    uvicorn_step_s=3,
)


@dataclass(frozen=True)
class Target:
    name: str
    kind: str  # "gateway" | "baseline"
    server: str = "uvicorn"
    processes: int = 1
    redis: bool = False
    env: tuple[tuple[str, str], ...] = ()


BASELINE = Target("baseline", "baseline", server="websockets")
GATEWAY = Target("gateway", "gateway")
GATEWAY_REDIS = Target("gateway-redis-2p", "gateway", processes=2, redis=True)
GATEWAY_REDIS_CORE = Target(
    "gateway-redis-core-2p", "gateway", processes=2, redis=True, env=(("CHANNEL_LAYER_BACKEND", "core"),)
)
GATEWAY_DAPHNE = Target("gateway-daphne", "gateway", server="daphne")


@dataclass(frozen=True)
class StepSpec:
    label: str
    rate: float
    duration_s: float
    events: Callable[[int], list[PlannedEvent]]
    via: str = "default"  # the target's own publish path; "python": realtime.publishing.publish; "batch": REST batches

    def planned(self) -> list[PlannedEvent]:
        return self.events(max(1, round(self.rate * self.duration_s)))


@dataclass(frozen=True)
class SaturationSpec:
    step_s: float
    max_steps: int
    events: Callable[[int], list[PlannedEvent]]
    p99_limit_ms: float = SATURATION_P99_LIMIT_MS


@dataclass
class World:
    """Locations and tokens (from ``bench.setup_db``; dummy tokens when only the baseline runs)."""

    locations: list[str]
    tokens: dict[str, str]
    publisher: dict[str, str] = field(default_factory=dict)
    publisher_token: str = ""


@dataclass
class Bench:
    """Everything a scenario needs: the supervisor, sizes, the world, and the gateway's environment."""

    supervisor: servers.Supervisor
    scale: Scale
    world: World
    gateway_env: dict[str, str] | None
    redis_url: str
    results: dict[str, Any] = field(default_factory=dict)
    emit: Callable[[str], None] = print
    notes: list[str] = field(default_factory=list)
    profile_dir: Path | None = None  # when set, py-spy records the first gateway process during its steps
    deadline: float | None = None  # perf_counter time after which remaining steps are skipped, loudly

    def out_of_time(self, what: str) -> bool:
        """True (and noted) when the run's time budget is spent: ``what`` is skipped."""
        if self.deadline is None or time.perf_counter() < self.deadline:
            return False
        note = f"time budget spent: skipped {what}"
        self.notes.append(note)
        self.emit(f"!!! {note}")
        return True

    @asynccontextmanager
    async def deploy(self, target: Target) -> AsyncIterator[servers.Deployment]:
        if target.kind == "baseline":
            deployment = await servers.start_baseline(self.supervisor)
        else:
            if self.gateway_env is None:
                raise RuntimeError("the gateway is not available (no manage.py / config/asgi.py)")
            env = {**self.gateway_env, **dict(target.env)}
            if target.redis:
                env["REDIS_URL"] = self.redis_url
                flush_redis(self.redis_url)
            deployment = await servers.start_gateway(
                self.supervisor, env, server=target.server, processes=target.processes, name=target.name
            )
        try:
            if target.kind == "gateway" and not self.world.publisher_token:
                self.world.publisher_token = await fetch_token(deployment.endpoints[0], self.world.publisher)
            yield deployment
        finally:
            servers.stop_deployment(self.supervisor, deployment)
            if target.redis:
                flush_redis(self.redis_url)

    def publisher(self, target: Target, deployment: servers.Deployment, via: str = "default") -> Publisher:
        if target.kind == "baseline":
            return SocketPublisher(deployment.endpoints[0], "bench-publisher")
        if via == "python":
            assert self.gateway_env is not None
            env = {**self.gateway_env, **({"REDIS_URL": self.redis_url} if target.redis else {})}
            return ProcessPublisher(env, servers.PROJECT_DIR, spawn=self.supervisor.adopt)
        if via == "batch":
            return BatchRestPublisher(deployment.endpoints[0], self.world.publisher_token)
        return RestPublisher(deployment.endpoints[0], self.world.publisher_token)


def flush_redis(url: str) -> None:
    """Empty the benchmark's own Redis database (``--redis-db``), before and after the Redis target."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


async def fetch_token(endpoint: Endpoint, credentials: dict[str, str]) -> str:
    """Exchange the publisher's password for an access token through the real ``POST /v1/auth/token``."""
    response = await request_once(endpoint.host, endpoint.port, "POST", "/v1/auth/token", credentials)
    if response.status != 200:
        raise RuntimeError(f"POST /v1/auth/token answered {response.status}: {response.body[:300]!r}")
    return str(response.json()["access"])


async def quiesce(pids: Sequence[int], max_s: float = QUIESCE_MAX_S) -> float:
    """Wait (up to ``max_s``) until the server is idle, so one step's backlog does not tax the next."""
    started = time.perf_counter()
    while time.perf_counter() - started < max_s:
        before = cpu_seconds(pids)
        await asyncio.sleep(0.3)
        if (cpu_seconds(pids) - before) / 0.3 < QUIESCE_IDLE_CPU_SHARE:
            break
    return round(time.perf_counter() - started, 2)


def is_clean(step: StepResult, p99_limit_ms: float) -> bool:
    """Zero loss, no publish error, no dropped connection and p99 under the limit."""
    p99 = step.latency_ms.get("p99", math.inf)
    return step.lost == 0 and step.publish_errors == 0 and not step.closed_connections and p99 < p99_limit_ms


def step_line(scenario: str, target: str, step: StepResult) -> str:
    """The one-line JSON summary printed as each step finishes."""
    summary = {
        "scenario": scenario,
        "target": target,
        "step": step.label,
        "publisher": step.publisher,
        "rate": step.rate,
        "expected": step.expected,
        "received": step.received,
        "lost": step.lost,
        "deliveries_per_s": step.deliveries_per_s,
        "latency_ms": step.latency_ms,
        "server_cpu_us_per_delivery": step.server_cpu_us_per_delivery,
        "server_cpu_share": step.server_cpu_share,
        "generator_cpu_share": step.generator_cpu_share,
        "foreign_cpu_share": step.foreign_cpu_share,
        "publish_errors": step.publish_errors,
        "closed": step.closed_connections,
    }
    return json.dumps(summary)


async def measure_target(
    bench: Bench,
    scenario: str,
    target: Target,
    make_plans: Callable[[list[Endpoint]], list[ConnectionPlan]],
    steps: Sequence[StepSpec] = (),
    saturation: SaturationSpec | None = None,
    late_steps: Sequence[StepSpec] = (),
) -> dict[str, Any]:
    """Start ``target``, connect, run ``steps``, a saturation search, then ``late_steps``; always stop it.

    Overloading steps go in ``late_steps``: an overloaded server keeps working off its backlog long after the step,
    which would spoil a search that followed.
    """
    result: dict[str, Any] = {
        "target": target.name,
        "server": target.server,
        "processes": target.processes,
        "redis": target.redis,
        "steps": [],
    }
    if bench.out_of_time(f"{scenario}/{target.name}"):
        result["skipped"] = "time budget"
        return result
    async with bench.deploy(target) as deployment:
        pids = deployment.pids
        plans = make_plans(deployment.endpoints)
        await warm_up(bench, target, deployment, plans)
        await quiesce(pids)
        rss_before = rss_bytes(pids)
        generator = LoadGenerator()
        generator.reconnect = target.kind == "gateway"  # the baseline has no resume
        try:
            connect = await generator.open(plans)
            await asyncio.sleep(1.0)  # let the server finish what the last subscribe started
            await quiesce(pids)
            rss_after = rss_bytes(pids)
            result["connect"] = vars(connect)
            result["idle_memory"] = {
                "rss_before_mib": round(rss_before / 2**20, 1),
                "rss_after_mib": round(rss_after / 2**20, 1),
                "kib_per_connection": round((rss_after - rss_before) / 1024 / max(1, connect.established), 2),
            }
            bench.emit(
                json.dumps(
                    {
                        "scenario": scenario,
                        "target": target.name,
                        "connect": result["connect"],
                        "idle_memory": result["idle_memory"],
                    }
                )
            )
            if connect.errors:
                bench.emit(f"!!! {target.name}: connection errors: {connect.errors}")
            redis_pid = find_pid_by_name("redis-server") if target.redis else None
            for spec in steps:
                if bench.out_of_time(f"{scenario}/{target.name}/{spec.label}"):
                    continue
                step = await run_one_step(bench, generator, target, deployment, spec, redis_pid)
                result["steps"].append(step.as_dict())
                bench.emit(step_line(scenario, target.name, step))
            if saturation is not None:
                result["saturation"] = await search_saturation(
                    bench, scenario, generator, target, deployment, result["steps"], saturation
                )
            for spec in late_steps:
                if bench.out_of_time(f"{scenario}/{target.name}/{spec.label}"):
                    continue
                step = await run_one_step(
                    bench, generator, target, deployment, spec, redis_pid, QUIESCE_BEFORE_OVERLOAD_MAX_S
                )
                result["steps"].append(step.as_dict())
                bench.emit(step_line(scenario, target.name, step))
            result["reconnects"] = {
                "reconnected": generator.reconnected,
                "resumed": {f"{stream}:{ok}": n for (stream, ok), n in generator.resumed_streams.items()},
            }
            if generator.reconnected:
                bench.emit(f"!!! {target.name}: {generator.reconnected} connections reconnected and resumed")
        finally:
            await generator.close()
    return result


async def warm_up(bench: Bench, target: Target, deployment: servers.Deployment, plans: list[ConnectionPlan]) -> None:
    """Connect a few screens and publish two events, so imports and first-use caches are not billed to the run."""
    generator = LoadGenerator()
    generator.reconnect = False
    try:
        await generator.open(plans[: min(4, len(plans))])
        location = plans[0].subscriptions[0].params["location_id"]
        await generator.run_step(
            "warmup",
            bench.publisher(target, deployment),
            fanout_events(location, 2),
            20.0,
            deployment.pids,
            drain_timeout_s=3.0,
        )
    finally:
        await generator.close()


async def run_one_step(
    bench: Bench,
    generator: LoadGenerator,
    target: Target,
    deployment: servers.Deployment,
    spec: StepSpec,
    redis_pid: int | None = None,
    quiesce_max_s: float = QUIESCE_MAX_S,
) -> StepResult:
    quiet_s = await quiesce(deployment.pids, quiesce_max_s)
    redis_cpu_before = cpu_seconds([redis_pid]) if redis_pid else 0.0
    profile_path = profiler = None
    if bench.profile_dir is not None and target.kind == "gateway":
        profile_path = bench.profile_dir / f"{target.name}-{spec.label}.txt"
        profiler = await profiling.start(deployment.pids[0], spec.duration_s, profile_path)
    try:
        step = await generator.run_step(
            spec.label,
            bench.publisher(target, deployment, spec.via),
            spec.planned(),
            spec.rate,
            deployment.pids,
            accounted_pids=[redis_pid] if redis_pid else (),
        )
    finally:
        if profiler is not None:
            await profiling.finish(profiler)
    if profile_path is not None:
        bench.emit(profiling.summarize(profile_path))
    step.extra["quiesce_before_s"] = quiet_s
    step.extra["open_connections"] = sum(1 for client in generator.clients if client.is_open)
    if redis_pid:
        step.extra["redis_cpu_s"] = round(cpu_seconds([redis_pid]) - redis_cpu_before, 3)
    if step.lost or step.publish_errors:
        bench.emit(
            f"!!! LOSS {target.name} {spec.label}: expected {step.expected}, received {step.received}, "
            f"lost {step.lost}, publish errors {step.publish_errors} {step.publish_error_samples[:2]}"
        )
    if step.disturbed:
        bench.emit(
            f"!!! {target.name} {spec.label}: other processes used {step.foreign_cpu_share:.0%} of the "
            "machine's CPU during this step: its figures are disturbed"
        )
    if step.generator_bound:
        bench.emit(
            f"!!! {target.name} {spec.label}: generator CPU {step.generator_cpu_share:.0%}: "
            "the generator, not the server, may be the bottleneck"
        )
    return step


async def search_saturation(
    bench: Bench,
    scenario: str,
    generator: LoadGenerator,
    target: Target,
    deployment: servers.Deployment,
    fixed_steps: list[dict[str, Any]],
    spec: SaturationSpec,
) -> dict[str, Any]:
    """Find the highest rate with zero loss and p99 < limit: double up (or halve down), then bisect geometrically."""

    def clean(step: dict[str, Any]) -> bool:
        p99 = step["latency_ms"].get("p99", math.inf)
        return (
            step["lost"] == 0
            and step["publish_errors"] == 0
            and not step["closed_connections"]
            and p99 < spec.p99_limit_ms
        )

    passing = [s["rate"] for s in fixed_steps if clean(s)]
    failing = [s["rate"] for s in fixed_steps if not clean(s)]
    best = max(passing, default=None)
    worst = min((r for r in failing if best is None or r > best), default=None)
    searched: list[dict[str, Any]] = []
    for _ in range(spec.max_steps):
        if bench.out_of_time(f"{scenario}/{target.name}: rest of the saturation search"):
            break
        if worst is None:
            rate = (best or SATURATION_FLOOR_RATE) * 2
        elif best is None:
            rate = worst / 2
        else:
            rate = math.sqrt(best * worst)
        rate = float(round(rate, 1) if rate < 10 else round(rate))
        if rate < SATURATION_FLOOR_RATE or rate in (best, worst) or (best and worst and worst / best <= 1.2):
            break
        step_spec = StepSpec(f"saturation-r{rate:g}", rate, spec.step_s, spec.events)
        step = await run_one_step(bench, generator, target, deployment, step_spec)
        searched.append(step.as_dict())
        bench.emit(step_line(scenario, target.name, step))
        if is_clean(step, spec.p99_limit_ms):
            best = rate
        else:
            worst = rate
    loss_free = [s for s in [*fixed_steps, *searched] if s["lost"] == 0 and s["publish_errors"] == 0]
    top = max(loss_free, key=lambda s: s["rate"], default=None)
    return {
        "criterion": f"zero loss, no publish error, p99 < {spec.p99_limit_ms:g} ms",
        "rate": best,
        "first_failing_rate": worst,
        "deliveries_per_s_at_rate": None if best is None else best * len(generator.live_subscriptions()),
        "highest_loss_free_rate_tried": None if top is None else top["rate"],
        "highest_loss_free_p99_ms": None if top is None else top["latency_ms"].get("p99"),
        "steps": searched,
    }


# -- the scenarios --------------------------------------------------------------------------------------------------


def fanout_steps(bench: Bench, rates: Sequence[float], duration_s: float, prefix: str = "fanout") -> list[StepSpec]:
    location = bench.world.locations[0]
    return [StepSpec(f"{prefix}-r{rate:g}", rate, duration_s, lambda n: fanout_events(location, n)) for rate in rates]


def fanout_plans(bench: Bench, connections: int) -> Callable[[list[Endpoint]], list[ConnectionPlan]]:
    return lambda endpoints: screen_plans(endpoints, bench.world.tokens, bench.world.locations[:1], connections)


def chain_plans(bench: Bench, connections: int, locations: int) -> Callable[[list[Endpoint]], list[ConnectionPlan]]:
    chosen = bench.world.locations[:locations]
    return lambda endpoints: screen_plans(endpoints, bench.world.tokens, chosen, max(1, connections // locations))


async def scenario_fanout(bench: Bench, targets: Sequence[Target] = (GATEWAY, BASELINE)) -> dict[str, Any]:
    """Lowest rate, saturation search, then the higher rates; the baseline also runs the gateway's saturation rate.

    That extra baseline step gives a CPU-per-delivery comparison at a rate where neither server is overloaded.
    """
    scale = bench.scale
    location = bench.world.locations[0]
    saturation = SaturationSpec(
        scale.saturation_step_s, scale.saturation_max_steps, lambda n: fanout_events(location, n)
    )
    results: dict[str, Any] = {}
    for target in targets:
        rates = sorted(scale.fanout_rates)
        gateway_saturation = results.get(GATEWAY.name, {}).get("saturation", {}).get("rate")
        if target.kind == "baseline" and gateway_saturation and gateway_saturation not in rates:
            rates = sorted([*rates, gateway_saturation])
        matched = [r for r in rates if r not in scale.fanout_rates]  # short: it only serves the CPU ratio
        early = [r for r in scale.fanout_rates if r <= min(scale.fanout_rates)]
        late = [r for r in scale.fanout_rates if r not in early]
        results[target.name] = await measure_target(
            bench,
            "fanout",
            target,
            fanout_plans(bench, scale.fanout_connections),
            fanout_steps(bench, matched, scale.saturation_step_s) + fanout_steps(bench, early, scale.fanout_step_s),
            saturation,
            fanout_steps(bench, sorted(late), scale.fanout_step_s),
        )
    return results


async def scenario_chain(bench: Bench, targets: Sequence[Target] = (GATEWAY, BASELINE)) -> dict[str, Any]:
    """The chain at its rate; the gateway publishes with REST batches first (issue 14), then one request per event
    (last, as it may overload the process)."""
    scale = bench.scale
    locations = bench.world.locations[: scale.chain_locations]
    step = StepSpec(
        f"chain-r{scale.chain_rate:g}", scale.chain_rate, scale.chain_step_s, lambda n: chain_events(locations, n)
    )
    batched = replace(step, label=f"chain-batch-r{scale.chain_rate:g}", via="batch")
    return {
        target.name: await measure_target(
            bench,
            "chain",
            target,
            chain_plans(bench, scale.chain_connections, scale.chain_locations),
            [batched, step] if target.kind == "gateway" else [step],
        )
        for target in targets
    }


async def scenario_idle(bench: Bench, targets: Sequence[Target] = (GATEWAY, BASELINE)) -> dict[str, Any]:
    scale = bench.scale
    return {
        target.name: await measure_target(
            bench, "idle", target, chain_plans(bench, scale.idle_connections, scale.chain_locations)
        )
        for target in targets
    }


def idle_from_chain(chain: dict[str, Any]) -> dict[str, Any]:
    """The idle scenario's figures, read off the chain's connect phase (same connections, before any event)."""
    return {
        name: {
            "target": name,
            "source": "chain connect phase",
            "connect": r["connect"],
            "idle_memory": r["idle_memory"],
            "steps": [],
        }
        for name, r in chain.items()
        if "connect" in r
    }


async def reference_steps(
    bench: Bench, scenario: str, reference: Target, specs: Sequence[StepSpec], connections: int
) -> dict[str, Any]:
    """Reuse the fan-out's gateway steps for comparison when this run has them; measure them otherwise."""
    fanout = bench.results.get("fanout", {}).get(reference.name)
    if fanout and fanout.get("connect", {}).get("requested") == connections:
        have = {step["rate"]: step for step in fanout["steps"]}
        if all(spec.rate in have for spec in specs if spec.via == "default"):
            reused = dict(fanout)
            reused["steps"] = [have[spec.rate] for spec in specs if spec.via == "default"]
            reused["source"] = "fanout scenario of this run"
            reused.pop("saturation", None)
            return reused
    return await measure_target(
        bench, scenario, reference, fanout_plans(bench, connections), [s for s in specs if s.via == "default"]
    )


async def scenario_redis(bench: Bench) -> dict[str, Any]:
    scale = bench.scale
    location = bench.world.locations[0]
    specs = fanout_steps(bench, scale.redis_rates, scale.redis_step_s, prefix="redis")
    specs.append(
        StepSpec(
            f"redis-python-r{scale.python_publish_rate:g}",
            scale.python_publish_rate,
            scale.python_publish_step_s,
            lambda n: fanout_events(location, n),
            via="python",
        )
    )
    redis = await measure_target(bench, "redis", GATEWAY_REDIS, fanout_plans(bench, scale.redis_connections), specs)
    core_specs = [s for s in specs if s.via == "default"]
    core = await measure_target(
        bench, "redis", GATEWAY_REDIS_CORE, fanout_plans(bench, scale.redis_connections), core_specs
    )
    reference_specs = [replace(s, label=s.label.replace("redis", "fanout")) for s in specs]
    memory = await reference_steps(bench, "redis", GATEWAY, reference_specs, scale.redis_connections)
    return {GATEWAY_REDIS.name: redis, GATEWAY_REDIS_CORE.name: core, GATEWAY.name: memory}


async def scenario_daphne(bench: Bench) -> dict[str, Any]:
    scale = bench.scale
    specs = fanout_steps(bench, scale.uvicorn_rates, scale.uvicorn_step_s, prefix="daphne")
    daphne = await measure_target(bench, "daphne", GATEWAY_DAPHNE, fanout_plans(bench, scale.fanout_connections), specs)
    default = await reference_steps(bench, "daphne", GATEWAY, specs, scale.fanout_connections)
    return {GATEWAY_DAPHNE.name: daphne, GATEWAY.name: default}


SCENARIOS: dict[str, Callable[[Bench], Any]] = {
    "fanout": scenario_fanout,
    "chain": scenario_chain,
    "idle": scenario_idle,
    "redis": scenario_redis,
    "daphne": scenario_daphne,
}
FULL_RUN_ORDER = ("chain", "fanout", "redis", "daphne")
"""Longest first, so a time budget cuts the short ones; redis and daphne reuse the fan-out's gateway steps.
idle is read off the chain's connect phase."""
