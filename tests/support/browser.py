"""Real gateway processes and a real headless Chromium for end-to-end tests.

Nothing here is a pytest fixture: ``running_gateway(tmp_dir, redis_url=...)`` starts a seeded gateway
(``tests.support.processes.Gateway``), ``launch_chromium()`` opens Debian's Chromium through Playwright (never a
downloaded browser), and the rest drives the console page.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.support.ports import free_port
from tests.support.processes import Gateway, base_env, http_status, manage, prepare_database
from tests.support.rest import DEMO_PASSWORD
from tests.support.services import REQUIRE_BROWSER, missing

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


# ----- a gateway for the browser --------------------------------------------------------------------------------


@contextlib.contextmanager
def running_gateway(tmp_dir: Path, *, redis_url: str, extra_env: Mapping[str, str] | None = None) -> Iterator[Gateway]:
    """A migrated, seeded gateway (DEBUG on) on a free port with its own SQLite file in tmp_dir; stopped on exit."""
    env = base_env(sqlite_url(tmp_dir / "gateway.sqlite3"), DEBUG="1", REDIS_URL=redis_url, **(extra_env or {}))
    prepare_database(env)
    gateway = Gateway(port=free_port(), env=env, log_path=tmp_dir / "gateway.log").start()
    try:
        yield gateway
    finally:
        gateway.stop()


def sqlite_url(path: Path) -> str:
    """The DATABASE_URL of an SQLite file at an absolute path (sqlite:////tmp/...)."""
    return f"sqlite:///{path.resolve()}"


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
    missing(reason, REQUIRE_BROWSER, "REQUIRE_BROWSER=1")


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
        status = http_status(f"{base_url}/static/{asset}")
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
    return manage(gateway.env, "shell", "-c", code).strip().splitlines()[-1]


def create_order(
    gateway: Gateway,
    location_id: str,
    *,
    type: str = "dine_in",
    status: str = "open",
    total: str = "24.50",
    table: str = "T1",
) -> str:
    """Save an order at location_id in another process and return its id: its event takes the real path
    (model signal -> publish after commit -> Redis -> gateway)."""
    code = _CREATE_ORDER.format(location_id=location_id, type=type, status=status, total=total, table=table)
    return run_in_django_shell(gateway, code)


def set_order_status(gateway: Gateway, order_id: str, status: str) -> None:
    """Change an order's status (order.updated + order.status_changed and maybe order.paid)."""
    run_in_django_shell(gateway, _SET_ORDER_STATUS.format(order_id=order_id, status=status))


def set_table_status(gateway: Gateway, location_id: str, label: str, status: str) -> None:
    """Seat, reserve or clear a table (table.* events)."""
    run_in_django_shell(gateway, _SET_TABLE_STATUS.format(location_id=location_id, label=label, status=status))
