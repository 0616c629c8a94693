"""Real gateway processes for end-to-end tests: uvicorn or daphne on loopback ports, a real database, a real Redis.

Every process started here is stopped by the fixture that started it, also when the test fails.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from realtime.serve import server_command

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
STARTUP_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(database_url: str, **extra: str) -> dict[str, str]:
    """A production-like environment: DEBUG off, an explicit secret, the given database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REALTIME_", "PYTEST"))}
    env.pop("REDIS_URL", None)
    env.update(
        DEBUG="0",
        SECRET_KEY="e2e-secret-key-" + "x" * 40,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


@dataclass
class Gateway:
    """One gateway process, started the way production starts it (``realtime.serve``)."""

    port: int
    env: dict[str, str]
    log_path: Path
    server_args: tuple[str, ...] = ()
    server: str = field(default_factory=lambda: os.environ.get("GATEWAY_SERVER", "uvicorn"))
    process: subprocess.Popen[bytes] | None = None
    log_file: Any = field(default=None, repr=False)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    def start(self) -> Gateway:
        self.log_file = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            server_command(self.server, "127.0.0.1", self.port, list(self.server_args), self.env),
            cwd=ROOT,
            env=self.env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.server} exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.http}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.server} on port {self.port} did not become healthy:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
        code = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                code = self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait(5)
        elif self.process is not None:
            code = self.process.returncode
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None
        return code

    def kill(self) -> None:
        """Die without any clean-up, as a crashed host would."""
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


def http_json(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def login(gateway: Gateway, username: str, password: str = "demo-pass-123") -> str:
    status, body = http_json("POST", f"{gateway.http}/v1/auth/token", {"username": username, "password": password})
    assert status == 200, body
    return str(body["access"])


@dataclass
class Database:
    url: str
    drop: Any = None


def provision_database(tmp_dir: Path) -> Iterator[Database]:
    """A database of its own for the gateway processes: PostgreSQL when DATABASE_URL names one, else SQLite."""
    configured = os.environ.get("DATABASE_URL", "")
    if configured.startswith(("postgres://", "postgresql://")):
        import psycopg

        name = f"rtgw_e2e_{secrets.token_hex(4)}"
        admin_url = configured
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        parsed = urlparse(configured)
        url = parsed._replace(path=f"/{name}").geturl()
        try:
            yield Database(url)
        finally:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        yield Database(f"sqlite:///{tmp_dir / 'gateway.sqlite3'}")


class RedisServer:
    """A private redis-server on a free port, so a test may stop and restart it without touching anyone else's."""

    def __init__(self, tmp_dir: Path) -> None:
        self.port = free_port()
        self.dir = tmp_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def faketime_env(offset: str) -> dict[str, str] | None:
    """Environment that runs a process with its clock ``offset`` off (libfaketime, e.g. "+10s"); None if missing.

    Only the wall clock moves: monotonic time stays true, so sleeps and timeouts behave as on a host whose
    clock is wrong. Debian: ``apt-get install faketime``.
    """
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")) + sorted(
        glob.glob("/usr/lib/faketime/libfaketime.so.1")
    )
    if not found:
        return None
    return {"LD_PRELOAD": found[0], "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
