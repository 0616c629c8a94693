"""Start, watch and always stop the servers under test (gateway under daphne or uvicorn, and the baseline).

Every child runs in its own session (process group) and is registered with the ``Supervisor`` before anything can
fail, so ``stop_all`` -- called from ``finally`` and from the SIGINT/SIGTERM handlers -- kills exactly the
processes this run started, never anything found by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.httpclient import request_once
from bench.loadgen import Endpoint
from realtime.serve import server_command

PROJECT_DIR = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SERVER_CPUS = "0"
GENERATOR_CPUS = {1}
STOP_GRACE_S = 5.0
READY_TIMEOUT_S = 30.0


class Supervisor:
    """Owns every child process of the run."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[subprocess.Popen[bytes]] = []
        self.adopted: list[asyncio.subprocess.Process] = []

    def start(
        self, name: str, argv: Sequence[str], env: dict[str, str], cpus: str | None = SERVER_CPUS
    ) -> subprocess.Popen[bytes]:
        command = ["taskset", "-c", cpus, *argv] if cpus is not None else list(argv)
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed when the child is stopped
        child = subprocess.Popen(
            command,
            cwd=PROJECT_DIR,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()  # the child holds its own descriptor
        self.children.append(child)
        return child

    def adopt(self, process: asyncio.subprocess.Process) -> None:
        """Register a child started elsewhere (the Python publisher) so it is killed with the rest."""
        self.adopted.append(process)

    def stop(self, child: subprocess.Popen[bytes]) -> None:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait(STOP_GRACE_S)
        if child in self.children:
            self.children.remove(child)

    def stop_all(self) -> None:
        for process in self.adopted:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        self.adopted.clear()
        for child in list(self.children):
            self.stop(child)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_for_http(port: int, path: str, child: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``path`` until it answers 200; fail with the log's tail if the server exits or never answers."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"server exited with {child.returncode}:\n{tail(log)}")
        try:
            response = await request_once("127.0.0.1", port, "GET", path)
            if response.status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"server on port {port} not ready after {READY_TIMEOUT_S}s:\n{tail(log)}")


async def wait_for_port(port: int, child: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"server exited with {child.returncode}:\n{tail(log)}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"port {port} not open after {READY_TIMEOUT_S}s:\n{tail(log)}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Deployment:
    """The running server processes of one benchmark target."""

    name: str
    endpoints: list[Endpoint]
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [child.pid for child in self.children]


async def start_baseline(supervisor: Supervisor) -> Deployment:
    port = free_port()
    child = supervisor.start("baseline", [sys.executable, "-m", "bench.baseline_server", "--port", str(port)], {})
    await wait_for_port(port, child, supervisor.log_dir / "baseline.log")
    return Deployment("baseline", [Endpoint("127.0.0.1", port)], [child])


async def start_gateway(
    supervisor: Supervisor, env: dict[str, str], server: str = "uvicorn", processes: int = 1, name: str = "gateway"
) -> Deployment:
    """Start ``processes`` gateway servers (daphne or uvicorn) on core 0 and wait until /healthz answers."""
    deployment = Deployment(name, [])
    for number in range(processes):
        port = free_port()
        # The gateway starts exactly as in production: realtime.serve's command line for that server.
        argv = server_command(server, "127.0.0.1", port, [], {**os.environ, **env})
        log_name = f"{name}-{number}"
        child = supervisor.start(log_name, argv, env)
        deployment.children.append(child)
        deployment.endpoints.append(Endpoint("127.0.0.1", port))
        await wait_for_http(port, "/healthz", child, supervisor.log_dir / f"{log_name}.log")
    return deployment


def stop_deployment(supervisor: Supervisor, deployment: Deployment) -> None:
    for child in deployment.children:
        supervisor.stop(child)
