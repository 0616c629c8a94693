"""``python -m tools.run_cluster`` (``make run-cluster``): two processes that really share a Redis, and a clean stop."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import websockets

from tests.support.ports import free_port, port_answers
from tests.support.processes import PYTHON, ROOT, Gateway, base_env, wait_for_health
from tests.support.rest import http_json, login
from tests.support.services import require_redis_server
from tests.support.wsclient import WsClient

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

DURATION_SECONDS = 60  # the cluster's own bound, should this test die before it stops the cluster
READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 30.0


@dataclass
class RunningCluster:
    process: subprocess.Popen[bytes]
    gateways: list[Gateway]  # handles for the processes the launcher started; only their addresses are used
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def adjacent_free_ports() -> int:
    """A base port whose successor is free too (the cluster takes base and base + 1)."""
    for _ in range(50):
        base = free_port()
        if base < 65535:
            try:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + 1))
                return base
            except OSError:
                continue
    raise RuntimeError("no two adjacent free ports")


def child_pids(parent: int) -> set[int]:
    """The direct children of a process, from /proc (Linux)."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent:
            pids.add(int(stat.parent.name))
    return pids


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RunningCluster]:
    require_redis_server()  # the cluster starts a private one
    base_port = adjacent_free_ports()
    env = base_env(f"sqlite:///{tmp_path / 'cluster.sqlite3'}")  # no REDIS_URL: the launcher's private Redis
    log_path = tmp_path / "cluster.log"
    command = [PYTHON, "-m", "tools.run_cluster", "--processes", "2", "--base-port", str(base_port)]
    command += ["--duration", str(DURATION_SECONDS)]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    gateways = [Gateway(port, env, log_path) for port in (base_port, base_port + 1)]
    running = RunningCluster(process, gateways, log_path)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()  # its children follow: the launcher asks the kernel to stop them with it
                process.wait(5)


def wait_until_ready(running: RunningCluster) -> int:
    """Wait until both /healthz answer 200 and the launcher has announced itself; return its Redis port."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    try:
        for gateway in running.gateways:
            wait_for_health(gateway.http, running.process, READY_TIMEOUT_SECONDS)
    except (RuntimeError, TimeoutError) as error:
        pytest.fail(f"the cluster did not become healthy ({error}):\n{running.log()}")
    while not (announced := re.search(r"sharing Redis at redis://127\.0\.0\.1:(\d+)", running.log())):
        if running.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the cluster did not announce itself:\n{running.log()}")
        time.sleep(0.2)
    return int(announced.group(1))


async def test_run_cluster_carries_events_across_processes_and_stops_every_child(cluster: RunningCluster) -> None:
    redis_port = wait_until_ready(cluster)
    first, second = cluster.gateways
    children = child_pids(cluster.process.pid)
    assert len(children) == 3, children  # redis-server and two daphne

    kim = await WsClient.open(first.ws, login(first, "kim"))
    reply = await kim.subscribe("orders", {"location_id": "loc-xyz789"})
    assert reply["success"] is True, reply
    code, body = http_json(
        "POST",
        f"{second.http}/v1/events",
        {"channel": "orders", "event": "order.created", "location_id": "loc-xyz789", "data": {"via": "process 2"}},
        token=login(second, "john"),
    )
    assert code == 202, body
    event = await kim.next_of("event", timeout=10)
    assert event["event_id"] == body["event_id"] and event["data"] == {"via": "process 2"}

    cluster.process.send_signal(signal.SIGTERM)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await kim.recv(timeout=STOP_TIMEOUT_SECONDS)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012  # daphne got SIGTERM, not SIGKILL

    assert cluster.process.wait(STOP_TIMEOUT_SECONDS) == 0, cluster.log()
    assert "every process stopped" in cluster.log()
    assert not [pid for pid in children if alive(pid)], f"orphans left behind:\n{cluster.log()}"
    for port in (first.port, second.port, redis_port):
        assert not port_answers(port), f"port {port} still answers"
