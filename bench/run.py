"""Run the gateway benchmark: ``python -m bench.run [--quick] [--scenario NAME ...]`` from the project root.

Starts and stops every server itself (fresh SQLite database in a temporary directory, migrated, populated by
``bench.setup_db``), pins the servers to core 0 and itself (the generator) to core 1, prints one JSON line per
measured step and, at the end, the comparison tables and PASS/MISS per target, and writes
``bench/results/<date>.json`` and ``<date>.png``. Every child process is killed on exit, error or Ctrl-C.

For tests: ``run_small_scenario(connections=20)`` runs one small fan-out step and returns its result dict.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

from bench import metrics_cost, outbox, publish_cost, report, scenarios, servers, storm
from bench.presence import scenario_presence
from bench.scenarios import BASELINE, FULL, GATEWAY, QUICK, Bench, Scale, World

scenarios.SCENARIOS["metrics"] = metrics_cost.scenario_metrics  # issue 15: metrics on vs off (not in the full run)
scenarios.SCENARIOS["presence"] = scenario_presence  # issue 12: presence at rest (bench/presence.py)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SECRET_KEY = "bench-secret-key-not-for-production-0123456789abcdef"
RAISED_LIMITS = {"REALTIME_MAX_CONNECTIONS_PER_USER": "10000"}
"""Gateway limits the benchmark raises, printed at start: fan-out puts 1,000 screens on one manager's token."""
SETUP_TIMEOUT_S = 180
DEFAULT_REDIS_DB = 12
DEFAULT_BUDGET_S = 270.0
"""Steps starting later than this are skipped, so a full run stays under 5 minutes even on a busy machine."""
QUICK_BUDGET_S = 85.0


scenarios.SCENARIOS["storm"] = storm.scenario_storm  # issue 13: restart storm (bench/storm.py), run on request
scenarios.SCENARIOS["outbox"] = outbox.scenario_outbox  # issue 14: commit to socket through the outbox (PostgreSQL)
scenarios.SCENARIOS["publish_cost"] = publish_cost.scenario_publish_cost  # issue 14: CPU per REST publish


class GatewayUnavailable(Exception):
    """The gateway's code is not there yet or ``manage.py check`` fails."""


def raise_fd_limit() -> int:
    """Raise the open-file limit for this process and its children (5,000 sockets on each side)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in (65536, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(wanted, hard)))
            return wanted
        except (ValueError, OSError):
            continue
    return soft


def pin_generator() -> str:
    """Run the generator on core 1 (servers get core 0); on a one-core machine say so and share."""
    if (os.cpu_count() or 1) < 2:
        return "not pinned: fewer than 2 cores"
    os.sched_setaffinity(0, servers.GENERATOR_CPUS)
    return f"generator on cores {sorted(servers.GENERATOR_CPUS)}, servers on core {servers.SERVER_CPUS}"


def gateway_env(workdir: Path) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": SECRET_KEY,
        "DEBUG": "0",
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
        "JWT_ACCESS_TOKEN_LIFETIME_SECONDS": "3600",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **RAISED_LIMITS,
    }


def run_checked(argv: Sequence[str], env: dict[str, str], what: str) -> None:
    completed = subprocess.run(
        argv,
        cwd=servers.PROJECT_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=SETUP_TIMEOUT_S,
        check=False,
    )
    if completed.returncode != 0:
        raise GatewayUnavailable(
            f"{what} failed ({completed.returncode}):\n{(completed.stdout + completed.stderr)[-2000:]}"
        )


def prepare_gateway(workdir: Path, locations: int) -> tuple[dict[str, str], World]:
    """Check, migrate a fresh SQLite database and create the world; raise GatewayUnavailable if it cannot."""
    project = servers.PROJECT_DIR
    if not (project / "manage.py").exists() or not (project / "config" / "asgi.py").exists():
        raise GatewayUnavailable("manage.py or config/asgi.py is missing")
    env = gateway_env(workdir)
    run_checked([sys.executable, "manage.py", "check"], env, "manage.py check")
    run_checked([sys.executable, "manage.py", "migrate", "--noinput"], env, "manage.py migrate")
    world_path = workdir / "world.json"
    run_checked(
        [sys.executable, "-m", "bench.setup_db", "--locations", str(locations), "--out", str(world_path)],
        env,
        "bench.setup_db",
    )
    world = json.loads(world_path.read_text())
    return env, World(world["locations"], world["tokens"], world["publisher"])


def baseline_world(locations: int) -> World:
    ids = [f"loc-bench-{n:03d}" for n in range(locations)]
    return World(ids, {loc: f"baseline-token-{loc}" for loc in ids})


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (uvicorn[standard] brings it): a cheaper generator; asyncio's own loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def versions() -> dict[str, str]:
    found = {}
    for package in ("django", "channels", "channels-redis", "daphne", "uvicorn", "websockets", "twisted"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "-"
    return found


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=servers.PROJECT_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except OSError:
        return ""


async def run_scenarios(bench: Bench, names: Sequence[str], gateway_available: bool) -> None:
    """Run each scenario; a failing one is recorded loudly and the run goes on with the next."""
    for name in names:
        started = time.perf_counter()
        bench.emit(f"=== scenario {name} ===")
        try:
            if bench.out_of_time(f"scenario {name}"):
                continue
            if not gateway_available and name in ("redis", "daphne"):
                bench.notes.append(f"{name}: skipped, the gateway is not available")
                continue
            if gateway_available:
                result = await scenarios.SCENARIOS[name](bench)
            else:
                result = await scenarios.SCENARIOS[name](bench, (BASELINE,))  # type: ignore[call-arg]
            bench.results[name] = result
        except Exception as exc:
            bench.notes.append(f"{name}: FAILED: {type(exc).__name__}: {exc}")
            bench.emit(f"!!! scenario {name} failed:\n{traceback.format_exc()}")
        bench.emit(f"=== scenario {name} took {time.perf_counter() - started:.1f}s ===")
    if "chain" in bench.results and "idle" not in bench.results:
        bench.results["idle"] = scenarios.idle_from_chain(bench.results["chain"])


def build_bench(workdir: Path, scale: Scale, redis_db: int, emit: Any = print) -> tuple[Bench, bool, str]:
    supervisor = servers.Supervisor(workdir)
    locations = max(scale.chain_locations, 1)
    try:
        env, world = prepare_gateway(workdir, locations)
        available, reason = True, ""
    except (GatewayUnavailable, subprocess.TimeoutExpired) as exc:
        env, world = None, baseline_world(locations)
        available, reason = False, str(exc)
    bench = Bench(supervisor, scale, world, env, f"redis://127.0.0.1:6379/{redis_db}", emit=emit)
    return bench, available, reason


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the WebSocket gateway against a websockets baseline.")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about a minute in total")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=sorted(scenarios.SCENARIOS),
        help="run only this scenario (repeatable); default: all",
    )
    parser.add_argument(
        "--redis-db",
        type=int,
        default=DEFAULT_REDIS_DB,
        help="Redis database the Redis scenario owns and flushes (default %(default)s)",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help=f"skip (loudly) the steps that would start after this many seconds (default {DEFAULT_BUDGET_S:g}, "
        f"{QUICK_BUDGET_S:g} with --quick; 0 = no budget)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record a py-spy flame graph of the gateway during each of its steps into DIR",
    )
    arguments = parser.parse_args(argv)
    storm.PLOT_DIR = arguments.results_dir

    started_at = time.strftime("%Y-%m-%dT%H:%M:%S")
    wall_start = time.perf_counter()
    scale = QUICK if arguments.quick else FULL
    names = arguments.scenario or [*scenarios.FULL_RUN_ORDER, "presence", "outbox"]  # outbox: with PostgreSQL
    fd_limit = raise_fd_limit()
    pinning = pin_generator()
    print(f"bench: open-file limit {fd_limit}; {pinning}", flush=True)
    print("bench: raised gateway limits: " + ", ".join(f"{k}={v}" for k, v in RAISED_LIMITS.items()), flush=True)

    def on_terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_terminate)
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    bench, available, reason = build_bench(
        workdir, scale, arguments.redis_db, emit=lambda line: print(line, flush=True)
    )
    atexit.register(bench.supervisor.stop_all)
    budget_s = arguments.budget_s
    if budget_s is None:
        budget_s = QUICK_BUDGET_S if arguments.quick else DEFAULT_BUDGET_S
    if budget_s:
        bench.deadline = wall_start + budget_s
    if arguments.profile is not None:
        arguments.profile.mkdir(parents=True, exist_ok=True)
        bench.profile_dir = arguments.profile
    if not available:
        print(f"!!! gateway not available, running the baseline only: {reason}", flush=True)
    interrupted = False
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(run_scenarios(bench, names, available))
    except KeyboardInterrupt:
        interrupted = True
        print("!!! interrupted: stopping every server started by this run", flush=True)
    finally:
        bench.supervisor.stop_all()

    results: dict[str, Any] = {
        "meta": {
            "started": started_at,
            "seconds": round(time.perf_counter() - wall_start, 1),
            "quick": arguments.quick,
            "scenarios": names,
            "interrupted": interrupted,
            "gateway_available": available,
            "gateway_unavailable_reason": reason[:500],
            "raised_limits": RAISED_LIMITS,
            "pinning": pinning,
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "versions": versions(),
            "commit": git_commit(),
            "scale": asdict(scale),
            "notes": bench.notes,
            "publish_paths": {
                "gateway": "POST /v1/events (8 keep-alive connections); redis scenario also "
                "realtime.publishing.publish from a separate process",
                "baseline": "publisher WebSocket /v1/publish",
            },
        },
        "scenarios": bench.results,
    }
    results["targets"] = report.evaluate_targets(results)
    arguments.results_dir.mkdir(parents=True, exist_ok=True)
    stem = arguments.results_dir / started_at.replace(":", "")
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1))
    plotted = report.plot_latency(results, stem.with_suffix(".png"))

    print()
    print(report.tables(results))
    print()
    print(report.targets_table(results["targets"]))
    for note in bench.notes:
        print(f"!!! {note}")
    print(f"\nresults: {stem.with_suffix('.json')}" + (f", plot: {stem.with_suffix('.png')}" if plotted else ""))
    print(f"total {results['meta']['seconds']}s")
    print(
        json.dumps(
            {
                "summary": {v["target"]: [v["status"], v["value"]] for v in results["targets"]},
                "seconds": results["meta"]["seconds"],
                "results": str(stem.with_suffix(".json")),
            }
        )
    )
    _remove_workdir(workdir)
    return 130 if interrupted else 0


def _remove_workdir(workdir: Path) -> None:
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)


def run_small_scenario(
    connections: int = 20, target: str = "gateway", rate: float = 10.0, duration_s: float = 1.0
) -> dict[str, Any]:
    """Run one small fan-out step against ``target`` ("gateway" or "baseline") and return its result dict.

    Meant for the harness' smoke test: same code path as the full run (fresh database, real server process,
    real connections and publish path), a few seconds long. Raises ``GatewayUnavailable`` for "gateway" when the
    gateway cannot start.
    """
    scale = replace_scale(fanout_connections=connections, chain_locations=1)
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-smoke-"))
    try:
        bench, available, reason = build_bench(workdir, scale, DEFAULT_REDIS_DB, emit=lambda line: None)
        if target == "gateway" and not available:
            raise GatewayUnavailable(reason)
        chosen = GATEWAY if target == "gateway" else BASELINE

        async def measure() -> dict[str, Any]:
            return await scenarios.measure_target(
                bench,
                "smoke",
                chosen,
                scenarios.fanout_plans(bench, connections),
                scenarios.fanout_steps(bench, [rate], duration_s, prefix="smoke"),
            )

        try:
            with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
                return runner.run(measure())
        finally:
            bench.supervisor.stop_all()
    finally:
        _remove_workdir(workdir)


def replace_scale(**changes: Any) -> Scale:
    from dataclasses import replace

    return replace(FULL, **changes)


if __name__ == "__main__":
    sys.exit(main())
