"""Run N gateway processes on one Redis on this machine, for a local look at scale-out (``make run-cluster``)::

    python -m tools.run_cluster --processes 2 --base-port 8001 [--redis-url URL | --use-local-redis] [--duration S]

A demo launcher for a developer's machine, not part of the gateway package, nor a supervisor (production runs
one systemd unit per port, see docs/deploy.md). It uses
``--redis-url``, else ``REDIS_URL``, else 127.0.0.1:6379 with ``--use-local-redis``, else a private ``redis-server``
on a free loopback port with persistence off. It migrates and seeds the database once, starts one gateway process
per port (``realtime.serve``: uvicorn, or ``GATEWAY_SERVER=daphne``), prints where to connect, and waits. Ctrl-C,
SIGTERM or the end of ``--duration`` stops everything it started: the gateways first, with SIGTERM so each
closes its WebSockets with 1012, then the private Redis. Each child runs in its own session (a terminal's Ctrl-C
reaches only this launcher, which then stops the children in order) and, on Linux, is told by the kernel to stop if
the launcher itself dies, so no run leaves orphans behind.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import redis

from realtime.serve import server_command

ROOT = Path(__file__).resolve().parent.parent  # the checkout: tools/ is not installed with the gateway
LOOPBACK = "127.0.0.1"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
DEMO_PASSWORD = "demo-pass-123"
DEMO_LOGINS = (
    ("john", "manager of Downtown and Uptown; may publish"),
    ("sarah", "server at Downtown"),
    ("kim", "kitchen at Downtown"),
    ("olga", "manager of another organization"),
    ("admin", "superuser, for /admin/"),
)
REDIS_START_TIMEOUT_SECONDS = 10.0
MANAGE_TIMEOUT_SECONDS = 300.0
HEALTHY_TIMEOUT_SECONDS = 60.0
# Above the 5 s the gateway gives itself to close its connections with 1012 (realtime/lifecycle.py).
GATEWAY_STOP_TIMEOUT_SECONDS = 15.0
REDIS_STOP_TIMEOUT_SECONDS = 5.0
POLL_INTERVAL_SECONDS = 0.2
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class StopRequested(Exception):
    """SIGTERM arrived; raised in the main thread so a stop during start-up cleans up like one while serving."""


class ClusterError(Exception):
    """The cluster could not start or a process died; the message says which and why."""


@dataclass
class Child:
    """One process the launcher started and must stop."""

    name: str
    process: subprocess.Popen[bytes]
    stop_timeout_seconds: float

    def exited(self) -> bool:
        return self.process.poll() is not None


@dataclass
class Cluster:
    """What is running: the Redis the gateways share and the gateway processes, in start order."""

    redis_url: str
    redis_is_private: bool
    ports: list[int]
    redis: Child | None = None
    gateways: list[Child] = field(default_factory=list)

    @property
    def children(self) -> list[Child]:
        return [*self.gateways, *([self.redis] if self.redis else [])]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.run_cluster",
        description="Run N gateway processes sharing one Redis, for a local look at scale-out.",
    )
    parser.add_argument("--processes", type=int, default=2, help="how many gateway processes (default 2)")
    parser.add_argument("--base-port", type=int, default=8001, help="port of the first process; the rest follow")
    redis = parser.add_mutually_exclusive_group()
    redis.add_argument("--redis-url", default="", help="an existing Redis (default: REDIS_URL, else a private one)")
    redis.add_argument("--use-local-redis", action="store_true", help=f"use {LOCAL_REDIS_URL} instead of a private one")
    parser.add_argument("--duration", type=float, default=0, help="stop by itself after SECONDS from launch")
    args = parser.parse_args(argv)
    if not 1 <= args.processes <= 64:
        parser.error("--processes must be between 1 and 64")
    if args.base_port < 1024 or args.base_port + args.processes - 1 > 65535:
        parser.error("--base-port must leave room for every process between 1024 and 65535")
    if args.duration < 0:
        parser.error("--duration must not be negative")
    return args


def stop_with_parent() -> None:
    """In the child before exec: have the kernel send SIGTERM if the launcher dies, even by SIGKILL (Linux only)."""
    with suppress(AttributeError, OSError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(name: str, command: list[str], env: dict[str, str], stop_timeout_seconds: float) -> Child:
    """Start a child in a session of its own; its output goes to the launcher's terminal."""
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        start_new_session=True,
        preexec_fn=stop_with_parent if sys.platform.startswith("linux") else None,
    )
    return Child(name, process, stop_timeout_seconds)


def port_is_free(port: int) -> bool:
    """Whether daphne could listen there; SO_REUSEADDR as it sets, so a just-stopped run's TIME_WAIT is no clash."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def pick_free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def redis_answers(url: str) -> bool:
    """True when a Redis at the URL answers PING (refusing our credentials still proves a Redis is there)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except (redis.AuthenticationError, redis.ResponseError):
        return True
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def wait_until(ready: Callable[[], bool], timeout_seconds: float, children: Sequence[Child], what: str) -> None:
    """Poll until ready; fail early when a child we depend on has already exited."""
    deadline = time.monotonic() + timeout_seconds
    while not ready():
        for child in children:
            if child.exited():
                raise ClusterError(f"{child.name} exited with {child.process.returncode} before {what}")
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout_seconds:.0f}s waiting for {what}")
        time.sleep(POLL_INTERVAL_SECONDS)


def start_private_redis(cluster_dir: str, cluster: Cluster) -> str:
    """A throwaway redis-server on a free loopback port; nothing is saved, as recommended for the gateway."""
    port = pick_free_port()
    command = [
        "redis-server",
        *("--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no"),
        *("--dir", cluster_dir, "--logfile", "", "--loglevel", "warning"),
    ]
    try:
        child = spawn(f"redis-server :{port}", command, dict(os.environ), REDIS_STOP_TIMEOUT_SECONDS)
    except FileNotFoundError:
        raise ClusterError("redis-server is not installed; pass --redis-url or --use-local-redis") from None
    cluster.redis = child
    url = f"redis://{LOOPBACK}:{port}/0"
    wait_until(lambda: redis_answers(url), REDIS_START_TIMEOUT_SECONDS, [child], f"Redis on port {port}")
    return url


def gateway_env(redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["REDIS_URL"] = redis_url
    env.setdefault("DEBUG", "1")
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def prepare_database(env: dict[str, str]) -> None:
    """Migrate and seed once, before any gateway starts, so the processes do not race each other to do it."""
    for args in (["migrate", "--noinput"], ["seed_demo"]):
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, timeout=MANAGE_TIMEOUT_SECONDS, check=False
        )
        if result.returncode != 0:
            raise ClusterError(f"manage.py {' '.join(args)} failed with exit status {result.returncode}")


def gateway_command(port: int) -> list[str]:
    return server_command(os.environ.get("GATEWAY_SERVER", "uvicorn"), LOOPBACK, port, [])


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def start_gateways(cluster: Cluster, env: dict[str, str]) -> None:
    for port in cluster.ports:
        cluster.gateways.append(spawn(f"gateway :{port}", gateway_command(port), env, GATEWAY_STOP_TIMEOUT_SECONDS))
    wait_until(
        lambda: all(healthy(port) for port in cluster.ports),
        HEALTHY_TIMEOUT_SECONDS,
        cluster.children,
        "every gateway's /healthz to answer 200",
    )


def stop_children(children: Sequence[Child]) -> None:
    """SIGTERM every child at once, wait for the slowest, then SIGKILL any that did not finish in time."""
    for child in children:
        if not child.exited():
            signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + max((child.stop_timeout_seconds for child in children), default=0)
    for child in children:
        try:
            child.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"cluster: {child.name} did not stop in time; killing it", file=sys.stderr, flush=True)
            signal_group(child, signal.SIGKILL)
            child.process.wait()
        signal_group(child, signal.SIGKILL)  # anything the child itself left behind in its session


def signal_group(child: Child, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(child.process.pid, signum)


def stop_cluster(cluster: Cluster) -> None:
    """Stop gateways before Redis, so they close their clients (1012) while the layer still answers."""
    stop_children(cluster.gateways)
    if cluster.redis is not None:
        stop_children([cluster.redis])


def announce(cluster: Cluster) -> None:
    where = "private, no persistence; gone when the cluster stops" if cluster.redis_is_private else "shared"
    lines = [
        "",
        f"Gateway cluster: {len(cluster.ports)} gateway processes sharing Redis at {cluster.redis_url} ({where})",
    ]
    for number, port in enumerate(cluster.ports, start=1):
        lines.append(
            f"  process {number}: http://{LOOPBACK}:{port}  ws://{LOOPBACK}:{port}/v1/ws  "
            f"console http://{LOOPBACK}:{port}/console/"
        )
    lines.append(f"Demo logins (password {DEMO_PASSWORD}):")
    lines.extend(f"  {username:<6} {role}" for username, role in DEMO_LOGINS)
    lines.append("Subscribe through one process and publish (POST /v1/events) through another: Redis carries it.")
    lines.append("Ctrl-C stops every process (clients are closed with 1012 and may reconnect elsewhere).")
    print("\n".join(lines) + "\n", flush=True)


def serve_until_stopped(cluster: Cluster, deadline: float | None) -> None:
    """Wait for Ctrl-C, SIGTERM or the deadline; a child that dies on its own stops the whole cluster."""
    while deadline is None or time.monotonic() < deadline:
        for child in cluster.children:
            if child.exited():
                raise ClusterError(f"{child.name} exited unexpectedly with {child.process.returncode}")
        time.sleep(POLL_INTERVAL_SECONDS)


def raise_stop_requested(signum: int, frame: FrameType | None) -> None:
    raise StopRequested(signal.Signals(signum).name)


def run(args: argparse.Namespace) -> int:
    started_at = time.monotonic()
    deadline = started_at + args.duration if args.duration else None
    ports = [args.base_port + offset for offset in range(args.processes)]
    taken = [port for port in ports if not port_is_free(port)]
    if taken:
        print(f"cluster: port(s) {', '.join(map(str, taken))} in use; pick another --base-port", file=sys.stderr)
        return 2
    redis_url = args.redis_url or os.environ.get("REDIS_URL", "") or (LOCAL_REDIS_URL if args.use_local_redis else "")
    cluster = Cluster(redis_url=redis_url, redis_is_private=not redis_url, ports=ports)
    signal.signal(signal.SIGTERM, raise_stop_requested)
    code = 0
    with ExitStack() as cleanup:
        try:
            if cluster.redis_is_private:
                work_dir = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="rtgw-cluster-"))
                cluster.redis_url = start_private_redis(work_dir, cluster)
            elif not redis_answers(cluster.redis_url):
                raise ClusterError(f"no Redis answers at {cluster.redis_url}")
            env = gateway_env(cluster.redis_url)
            prepare_database(env)
            start_gateways(cluster, env)
            announce(cluster)
            serve_until_stopped(cluster, deadline)
            print("cluster: --duration reached; stopping", flush=True)
        except (KeyboardInterrupt, StopRequested):
            print("\ncluster: stopping", flush=True)
        except (ClusterError, subprocess.TimeoutExpired) as exc:
            print(f"cluster: {exc}", file=sys.stderr, flush=True)
            code = 1
        finally:
            # A second Ctrl-C must not cut the clean-up short; every wait below is bounded.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            stop_cluster(cluster)
    print("cluster: every process stopped", flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
