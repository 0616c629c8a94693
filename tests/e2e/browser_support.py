"""Real gateway processes and a real headless Chromium for end-to-end tests.

Nothing here is a pytest fixture, so any test module can use these helpers in its own fixtures without import
tricks: ``start_gateway(port, env)`` runs daphne on 127.0.0.1 and returns once ``/healthz`` answers,
``stop_gateway(proc)`` ends it, ``launch_chromium()`` opens Debian's Chromium through Playwright (never a
downloaded browser). Every process started here is bounded in time and ended by its own pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from realtime.serve import server_command

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent
CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HEALTH_TIMEOUT_SECONDS = 40.0
MANAGE_TIMEOUT_SECONDS = 180.0
STOP_TIMEOUT_SECONDS = 10.0
DEMO_PASSWORD = "demo-pass-123"
DEFAULT_APPLICATION = "config.asgi:application"

# Variables of the developer's shell that would point a test gateway at the wrong database or layer.
_ISOLATED_VARIABLES = ("DATABASE_URL", "REDIS_URL", "REDIS_SENTINELS", "DJANGO_SETTINGS_MODULE")


# ----- environment ----------------------------------------------------------------------------------------------


def free_port() -> int:
    """Ask the kernel for a loopback port nobody listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def gateway_env(
    database_url: str, *, redis_url: str | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Build the environment of a test gateway: DEBUG on, its own database, Redis only when asked for."""
    env = {name: value for name, value in os.environ.items() if name not in _ISOLATED_VARIABLES}
    env.update(
        {
            "DEBUG": "1",
            "DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(PROJECT_ROOT),
        }
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra or {})
    return env


def sqlite_url(path: Path) -> str:
    """The DATABASE_URL of an SQLite file at an absolute path (sqlite:////tmp/...)."""
    return f"sqlite:///{path.resolve()}"


def redis_reachable(url: str, timeout_seconds: float = 1.0) -> bool:
    """True when a Redis server answers PING at url."""
    try:
        import redis
    except ImportError:
        return False
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout_seconds, socket_timeout=timeout_seconds)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def flush_redis_db(url: str) -> None:
    """Empty the one Redis database a test owns, so stream history from earlier runs cannot leak in."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


# ----- manage.py and daphne -------------------------------------------------------------------------------------


def run_manage(args: list[str], env: Mapping[str, str], timeout_seconds: float = MANAGE_TIMEOUT_SECONDS) -> str:
    """Run ``manage.py <args>`` in the project with env; return stdout, raise with the output if it fails."""
    completed = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "manage.py"), *args],
        cwd=PROJECT_ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_seconds,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(args)} failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}"
        )
    return completed.stdout


def prepare_database(env: Mapping[str, str]) -> None:
    """Create the schema and the demo world (john, sarah, loc-xyz789, ...) in env's database."""
    run_manage(["migrate", "--noinput", "-v", "0"], env)
    run_manage(["seed_demo"], env)


def http_get(url: str, timeout_seconds: float = 2.0) -> tuple[int, bytes]:
    """GET url; return (status, body), also for error statuses."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_seconds) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_for_health(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout_seconds: float = HEALTH_TIMEOUT_SECONDS
) -> None:
    """Poll /healthz until it answers 200; fail early if the process died."""
    deadline = time.monotonic() + timeout_seconds
    last_error = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode} before it was healthy")
        try:
            status, body = http_get(f"http://127.0.0.1:{port}/healthz", timeout_seconds=1.0)
            if status == 200:
                return
            last_error = f"HTTP {status}: {body[:200]!r}"
        except OSError as error:
            last_error = str(error)
        time.sleep(0.2)
    raise TimeoutError(f"gateway on port {port} not healthy after {timeout_seconds:.0f}s ({last_error})")


def start_gateway(
    port: int,
    env: Mapping[str, str],
    *,
    log_path: Path | None = None,
    timeout_seconds: float = HEALTH_TIMEOUT_SECONDS,
    application: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start the gateway (realtime.serve) on 127.0.0.1:port and return once /healthz answers 200.

    Output goes to log_path (appended, so a restarted gateway's log follows the first one's) or is discarded.
    """
    log_file = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 -- lives with the process
    server = env.get("GATEWAY_SERVER", os.environ.get("GATEWAY_SERVER", "uvicorn"))
    command = server_command(server, "127.0.0.1", port, [], env)
    if application:
        command[-1] = application
    proc = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=dict(env),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C in the test terminal must not reach it before teardown does
    )
    if log_path:
        log_file.close()  # the child holds its own descriptor
    try:
        wait_for_health(port, proc, timeout_seconds)
    except BaseException as error:
        stop_gateway(proc)
        raise RuntimeError(f"{error}\n--- gateway log ---\n{read_log_tail(log_path)}") from error
    return proc


def stop_gateway(proc: subprocess.Popen[bytes], timeout_seconds: float = STOP_TIMEOUT_SECONDS) -> None:
    """End a gateway by its pid: SIGTERM, then SIGKILL if it does not go in time."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_seconds)


def kill_gateway(proc: subprocess.Popen[bytes]) -> None:
    """End a gateway abruptly (SIGKILL), as a crash would: no close frames reach the clients."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_SECONDS)


def read_log_tail(log_path: Path | None, max_chars: int = 6000) -> str:
    if not log_path or not log_path.exists():
        return "(no log)"
    return log_path.read_text(errors="replace")[-max_chars:]


@dataclass
class Gateway:
    """One test gateway: its port, environment and process; restart() keeps the port, as a deploy would."""

    port: int
    env: dict[str, str]
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def redis_url(self) -> str | None:
        return self.env.get("REDIS_URL")

    def start(self) -> Gateway:
        self.proc = start_gateway(self.port, self.env, log_path=self.log_path)
        return self

    def stop(self, *, abruptly: bool = False) -> None:
        if self.proc is not None:
            (kill_gateway if abruptly else stop_gateway)(self.proc)

    def restart(self, *, abruptly: bool = True) -> None:
        self.stop(abruptly=abruptly)
        self.start()

    def log_tail(self) -> str:
        return read_log_tail(self.log_path)


@contextlib.contextmanager
def running_gateway(
    tmp_dir: Path, *, redis_url: str | None = None, extra_env: Mapping[str, str] | None = None
) -> Iterator[Gateway]:
    """A migrated, seeded gateway on a free port with its own SQLite file in tmp_dir; stopped on exit."""
    env = gateway_env(sqlite_url(tmp_dir / "gateway.sqlite3"), redis_url=redis_url, extra=extra_env)
    prepare_database(env)
    gateway = Gateway(port=free_port(), env=env, log_path=tmp_dir / "gateway.log")
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


# ----- HTTP API -------------------------------------------------------------------------------------------------


def post_json(url: str, body: Mapping[str, Any], token: str | None = None) -> tuple[int, dict[str, Any]]:
    """POST JSON; return (status, decoded body) also for error statuses."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        payload = error.read()
        try:
            return error.code, json.loads(payload or b"{}")
        except ValueError:
            return error.code, {"raw": payload.decode(errors="replace")}


def access_token(base_url: str, username: str, password: str = DEMO_PASSWORD) -> str:
    status, payload = post_json(f"{base_url}/v1/auth/token", {"username": username, "password": password})
    if status != 200:
        raise RuntimeError(f"sign-in as {username} failed: {status} {payload}")
    return str(payload["access"])


# ----- browser --------------------------------------------------------------------------------------------------


def chromium_missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not os.access(CHROMIUM_PATH, os.X_OK):
        return f"{CHROMIUM_PATH} not found (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed"
    return None


def require_chromium() -> None:
    """Skip the test when there is no browser, or fail when REQUIRE_BROWSER=1 says there must be one."""
    reason = chromium_missing_reason()
    if reason is None:
        return
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def launch_chromium(**launch_options: Any) -> Iterator[Any]:
    """Debian's headless Chromium through Playwright; yields a playwright Browser."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS, headless=True, **launch_options
        )
        try:
            yield browser
        finally:
            browser.close()


# ----- the console page (/console/) -----------------------------------------------------------------------------

CONSOLE_TIMEOUT_MS = 15_000


def by_test_id(test_id: str, **attributes: str) -> str:
    """CSS selector for a data-testid, optionally narrowed by data-* attributes."""
    narrowing = "".join(f'[data-{name.replace("_", "-")}="{value}"]' for name, value in attributes.items())
    return f'[data-testid="{test_id}"]{narrowing}'


CONSOLE_ASSETS = ("realtime/client.js", "realtime/console.js", "realtime/console.css")


def assert_console_assets_served(base_url: str) -> None:
    """Fail with the cause, not with a dead page, when the gateway does not serve the console's static files."""
    missing = []
    for asset in CONSOLE_ASSETS:
        status, _ = http_get(f"{base_url}/static/{asset}")
        if status != 200:
            missing.append(f"/static/{asset} -> HTTP {status}")
    assert not missing, "the gateway does not serve the console's static files: " + ", ".join(missing)


def open_console_signed_in(page: Any, base_url: str, username: str, password: str = DEMO_PASSWORD) -> None:
    """Load /console/, sign in, and wait until the WebSocket is connected."""
    from playwright.sync_api import expect

    assert_console_assets_served(base_url)
    page.goto(f"{base_url}/console/")
    page.fill(by_test_id("login-username"), username)
    page.fill(by_test_id("login-password"), password)
    page.click(by_test_id("login-submit"))
    expect(page.locator(by_test_id("connection-state"))).to_have_text("connected", timeout=CONSOLE_TIMEOUT_MS)


def subscribe_on_console(
    page: Any,
    channel: str,
    location_ids: list[str] | None = None,
    choices: Mapping[str, list[str]] | None = None,
    inputs: Mapping[str, str] | None = None,
) -> str:
    """Fill the subscribe form and submit; return the new subscription's stable client-side key.

    choices ticks the checkboxes of list filters ({"statuses": ["open"]}); inputs types into the free-form ones
    ({"station": "grill", "lane": "2"}).
    """
    from playwright.sync_api import expect

    before = page.locator(by_test_id("subscription-item")).count()
    page.select_option(by_test_id("channel-select"), channel)
    if location_ids is not None:
        for box in page.locator(by_test_id("location-option")).all():
            box.set_checked(box.get_attribute("value") in location_ids)
    for param, values in (choices or {}).items():
        for value in values:
            page.locator(f'{by_test_id(f"filter-{param}")} input[value="{value}"]').check()
    for param, text in (inputs or {}).items():
        page.fill(f"{by_test_id(f'filter-{param}')} input", text)
    page.click(by_test_id("subscribe-submit"))
    items = page.locator(by_test_id("subscription-item"))
    expect(items).to_have_count(before + 1, timeout=CONSOLE_TIMEOUT_MS)
    newest = items.nth(before)
    expect(newest).to_have_attribute("data-status", "active", timeout=CONSOLE_TIMEOUT_MS)
    return str(newest.get_attribute("data-key"))


def join_presence_on_console(page: Any, channel: str, location_id: str, name: str, role: str) -> Any:
    """Join presence from the form; return the presence panel's locator once it lists this user."""
    from playwright.sync_api import expect

    page.select_option(by_test_id("presence-channel"), channel)
    page.select_option(by_test_id("presence-location"), location_id)
    page.fill(by_test_id("presence-name"), name)
    page.fill(by_test_id("presence-role"), role)
    page.click(by_test_id("presence-join"))
    panel = page.locator(by_test_id("presence-panel", channel=channel, location=location_id))
    expect(panel.locator(by_test_id("presence-user"))).not_to_have_count(0, timeout=CONSOLE_TIMEOUT_MS)
    return panel


# ----- events from the outside world ----------------------------------------------------------------------------

_CREATE_ORDER = """
from locations.models import Location, Order
order = Order.objects.create(location=Location.objects.get(public_id={location_id!r}), type={type!r},
                             status={status!r}, total={total!r}, table_label={table!r})
print(order.public_id)
"""

_SET_ORDER_STATUS = """
from locations.models import Order
order = Order.objects.get(public_id={order_id!r})
order.status = {status!r}
order.save()
print(order.public_id)
"""

_SET_TABLE_STATUS = """
from locations.models import Location, Table
table = Table.objects.get(location=Location.objects.get(public_id={location_id!r}), label={label!r})
table.status = {status!r}
table.save()
print(table.label)
"""


def run_in_django_shell(gateway: Gateway, code: str) -> str:
    """Run code in a separate process against the gateway's database and layer; return its last line of output."""
    return run_manage(["shell", "-c", code], gateway.env).strip().splitlines()[-1]


def create_order(
    gateway: Gateway,
    location_id: str,
    *,
    type: str = "dine_in",
    status: str = "open",
    total: str = "24.50",
    table: str = "T1",
) -> str:
    """Make an order appear at location_id and return its id.

    With Redis the order is saved through the ORM in another process, so its event takes the real path (model
    signal -> publish after commit -> Redis -> gateway). Without Redis the gateway's in-memory layer cannot be
    reached from outside, so the event is published through the REST API as john instead.
    """
    if gateway.redis_url:
        code = _CREATE_ORDER.format(location_id=location_id, type=type, status=status, total=total, table=table)
        return run_in_django_shell(gateway, code)
    order_id = f"ord-rest{time.monotonic_ns() % 10**9}"
    data = {
        "order_id": order_id,
        "location_id": location_id,
        "type": type,
        "status": status,
        "total": total,
        "table": table,
    }
    publish_over_rest(gateway, "orders", "order.created", location_id, data)
    return order_id


def set_order_status(gateway: Gateway, order_id: str, status: str, location_id: str = "loc-xyz789") -> None:
    """Change an order's status (order.updated + order.status_changed and maybe order.paid)."""
    if gateway.redis_url:
        run_in_django_shell(gateway, _SET_ORDER_STATUS.format(order_id=order_id, status=status))
        return
    data = {"order_id": order_id, "location_id": location_id, "status": status}
    publish_over_rest(gateway, "orders", "order.status_changed", location_id, data)


def set_table_status(gateway: Gateway, location_id: str, label: str, status: str) -> None:
    """Seat, reserve or clear a table (table.* events)."""
    if gateway.redis_url:
        run_in_django_shell(gateway, _SET_TABLE_STATUS.format(location_id=location_id, label=label, status=status))
        return
    event = {"seated": "table.seated", "reserved": "table.reserved", "available": "table.cleared"}[status]
    publish_over_rest(gateway, "tables", event, location_id, {"table_id": label, "label": label, "status": status})


def publish_over_rest(gateway: Gateway, channel: str, event: str, location_id: str, data: Mapping[str, Any]) -> None:
    token = access_token(gateway.base_url, "john")
    body = {"channel": channel, "event": event, "location_id": location_id, "data": dict(data)}
    status, payload = post_json(f"{gateway.base_url}/v1/events", body, token)
    if status != 202:
        raise RuntimeError(f"POST /v1/events failed: {status} {payload}")
