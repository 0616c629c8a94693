"""Loopback ports for the processes tests start."""

from __future__ import annotations

import socket
import time


def free_port() -> int:
    """Ask the kernel for a loopback port nobody listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_answers(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def wait_for_port(port: int, timeout: float = 10, what: str = "server") -> None:
    """Return once host:port accepts connections; raise when it does not in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_answers(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} on port {port} did not start")
