"""Real processes for tests: gateways (uvicorn or daphne, as ``realtime.serve`` starts them), a private
``redis-server``, ``manage.py``, and the e2e database.

Every process started here is bounded in time and stopped by its own pid by whoever started it, also when the
test fails.
"""

from __future__ import annotations

import glob
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

from realtime.serve import server_command
from tests.support.ports import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
STARTUP_TIMEOUT_SECONDS = 40.0
STOP_TIMEOUT_SECONDS = 10.0
MANAGE_TIMEOUT_SECONDS = 180.0


def base_env(database_url: str, **extra: str) -> dict[str, str]:
    """A production-like environment: DEBUG off, an explicit secret, the given database, no Redis unless asked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REALTIME_", "PYTEST"))}
    for name in ("REDIS_URL", "REDIS_SENTINELS"):
        env.pop(name, None)
    env.update(
        DEBUG="0",
        SECRET_KEY="e2e-secret-key-" + "x" * 40,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def manage(env: Mapping[str, str], *args: str, timeout: float = MANAGE_TIMEOUT_SECONDS) -> str:
    """Run ``manage.py <args>`` with env; return stdout, raise with the output if it fails."""
    result = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=dict(env), capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def prepare_database(env: Mapping[str, str]) -> None:
    """Create the schema and the demo world (john, sarah, loc-xyz789, ...) in env's database."""
    manage(env, "migrate", "--noinput", "-v", "0")
    manage(env, "seed_demo")


def http_status(url: str, timeout: float = 2.0) -> int:
    """The status of a GET, also for error statuses."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def wait_for_health(
    base_url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = STARTUP_TIMEOUT_SECONDS
) -> None:
    """Poll ``/healthz`` until it answers 200; fail early if the process died."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before it was healthy")
        try:
            status = http_status(f"{base_url}/healthz", timeout=1.0)
            if status == 200:
                return
            last_error = f"HTTP {status}"
        except (OSError, urllib.error.URLError) as error:
            last_error = str(error)
        time.sleep(0.1)
    raise TimeoutError(f"{base_url} not healthy after {timeout:.0f}s ({last_error})")


def stop_process(process: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
    """Signal a process by its pid and wait; SIGKILL if it does not go in time. Its exit code, None if none."""
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(sig)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(5)
    return process.returncode


@dataclass
class Gateway:
    """One gateway process, started the way production starts it (``realtime.serve``); start() after stop()
    keeps the port, as a deploy would, and appends to the same log."""

    port: int
    env: dict[str, str]
    log_path: Path
    server_args: tuple[str, ...] = ()
    server: str = field(default_factory=lambda: os.environ.get("GATEWAY_SERVER", "uvicorn"))
    process: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = field(default=None, repr=False)

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
            start_new_session=True,  # a Ctrl-C in the test terminal must not reach it before teardown does
        )
        try:
            wait_for_health(self.http, self.process)
        except BaseException as error:
            self.stop()
            raise RuntimeError(f"{self.server} on port {self.port}: {error}\n{self.log()}") from error
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_SECONDS) -> int | None:
        code = stop_process(self.process, sig, timeout)
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None
        return code

    def kill(self) -> None:
        """Die without any clean-up, as a crashed host would: no close frames reach the clients."""
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


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
        yield Database(f"sqlite:///{(tmp_dir / 'gateway.sqlite3').resolve()}")


class RedisServer:
    """A private redis-server on a free port, so a test may stop and restart it without touching anyone else's.

    ``arguments`` go before the options (a sentinel passes its config file and ``--sentinel``)."""

    def __init__(self, tmp_dir: Path, *arguments: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = tmp_dir
        self.arguments = arguments
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        options = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        if "--sentinel" not in self.arguments:
            options += ["--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            ["redis-server", *self.arguments, *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, what="redis-server")
        return self

    def stop(self) -> None:
        stop_process(self.process)


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
