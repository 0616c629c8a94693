"""The console page and client.js in a real headless Chromium against a real daphne gateway.

One gateway serves the module (its own SQLite file, migrated and seeded; Redis at BROWSER_TEST_REDIS_URL, by
default REDIS_TEST_URL, which it requires, so orders saved in another process reach it the way production events
do). Each test opens its own browser contexts,
so each signs in afresh. SAVE_SCREENSHOT=1 writes docs/console.png from the screenshot test.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import browser as support
from tests.support.processes import ROOT, Gateway
from tests.support.services import REDIS_TEST_URL, flush_redis_db, require_service

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

LOCATION = "loc-xyz789"
REDIS_URL = os.environ.get("BROWSER_TEST_REDIS_URL", REDIS_TEST_URL)
SCREENSHOT_PATH = ROOT / "docs" / "console.png"
EVENT_TIMEOUT_MS = 15_000
VIEWPORT = {"width": 1440, "height": 900}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    require_service(REDIS_URL, 6379, "Redis")  # orders are saved in another process: only Redis carries them here
    flush_redis_db(REDIS_URL)
    with support.running_gateway(tmp_path_factory.mktemp("browser-gateway"), redis_url=REDIS_URL) as running:
        yield running
    flush_redis_db(REDIS_URL)


@pytest.fixture
def open_page(browser: Any, gateway: Gateway) -> Iterator[Callable[..., Any]]:
    """Open a page in a fresh browser context; JavaScript errors on any page fail the test."""
    contexts: list[Any] = []
    page_errors: list[str] = []

    def open_new(viewport: dict[str, int] | None = None) -> Any:
        context = browser.new_context(viewport=viewport or VIEWPORT)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        return page

    yield open_new
    for context in contexts:
        context.close()
    assert not page_errors, f"JavaScript errors on the page: {page_errors}"


def signed_in_page(open_page: Callable[..., Any], gateway: Gateway, username: str) -> Any:
    page = open_page()
    support.open_console_signed_in(page, gateway.http, username)
    return page


def event_line(page: Any, event: str, containing: str) -> Any:
    return page.locator(support.by_test_id("event-line", event=event), has_text=containing)


def test_order_saved_elsewhere_appears_live_on_the_console(open_page: Callable[..., Any], gateway: Gateway) -> None:
    from playwright.sync_api import expect

    page = signed_in_page(open_page, gateway, "sarah")
    expect(page.locator(support.by_test_id("location-option"))).to_have_count(1)  # sarah sees only her location
    support.subscribe_on_console(page, "orders", [LOCATION])

    order_id = support.create_order(gateway, LOCATION, table="T3", total="31.20")

    expect(event_line(page, "order.created", order_id)).to_be_visible(timeout=EVENT_TIMEOUT_MS)
    log = page.locator(support.by_test_id("event-log", channel="orders"))
    expect(log.locator(support.by_test_id("event-count"))).to_have_text("1 event")


def test_presence_shows_people_joining_and_leaving(open_page: Callable[..., Any], gateway: Gateway) -> None:
    from playwright.sync_api import expect

    sarah = signed_in_page(open_page, gateway, "sarah")
    panel = support.join_presence_on_console(sarah, "orders", LOCATION, "Sarah Server", "server")
    expect(panel.locator(support.by_test_id("presence-user", user_id="user-sarah"))).to_be_visible()

    john = signed_in_page(open_page, gateway, "john")
    support.join_presence_on_console(john, "orders", LOCATION, "John Manager", "manager")

    john_on_sarahs_page = panel.locator(support.by_test_id("presence-user", user_id="user-john"))
    expect(john_on_sarahs_page).to_be_visible(timeout=EVENT_TIMEOUT_MS)
    expect(john_on_sarahs_page).to_contain_text("John Manager")
    expect(john_on_sarahs_page).to_contain_text("manager")

    john.context.close()  # the tab goes away: its WebSocket closes and the gateway announces user_left

    expect(john_on_sarahs_page).to_have_count(0, timeout=EVENT_TIMEOUT_MS)
    expect(panel.locator(support.by_test_id("presence-user", user_id="user-sarah"))).to_be_visible()
    expect(panel.locator(support.by_test_id("presence-activity"))).to_contain_text("left")


@pytest.mark.parametrize("abruptly", [True, False], ids=["killed", "terminated"])
def test_page_reconnects_and_resumes_after_a_gateway_restart(
    open_page: Callable[..., Any], gateway: Gateway, abruptly: bool
) -> None:
    from playwright.sync_api import expect

    page = signed_in_page(open_page, gateway, "sarah")
    key = support.subscribe_on_console(page, "orders", [LOCATION])
    item = page.locator(support.by_test_id("subscription-item", key=key))
    first = support.create_order(gateway, LOCATION)
    expect(event_line(page, "order.created", first)).to_be_visible(timeout=EVENT_TIMEOUT_MS)
    server_id_before = item.locator(support.by_test_id("subscription-server-id")).inner_text()
    connection_before = page.locator(support.by_test_id("connection-detail")).inner_text()
    page.evaluate("window.__sameDocument = true")

    if abruptly:
        gateway.kill()
    else:
        gateway.stop()
    expect(page.locator(support.by_test_id("connection-state"))).not_to_have_text("connected", timeout=EVENT_TIMEOUT_MS)
    missed = support.create_order(gateway, LOCATION, table="T2")
    gateway.start()

    state = page.locator(support.by_test_id("connection-state"))
    expect(state).to_have_text("connected", timeout=30_000)
    expect(page.locator(support.by_test_id("connection-detail"))).not_to_have_text(connection_before)
    # Same subscription object (stable key), new server-side id, active again.
    expect(item).to_have_attribute("data-status", "active", timeout=EVENT_TIMEOUT_MS)
    expect(item.locator(support.by_test_id("subscription-server-id"))).not_to_have_text(server_id_before)
    expect(page.locator(support.by_test_id("subscription-item"))).to_have_count(1)

    gap_notes = page.locator(support.by_test_id("event-note"), has_text="Gap in orders:loc-xyz789")
    # The order saved while the gateway was down comes back through resume, from the Redis stream history.
    expect(event_line(page, "order.created", missed)).to_be_visible(timeout=EVENT_TIMEOUT_MS)
    expect(gap_notes).to_have_count(0)
    live = support.create_order(gateway, LOCATION, table="T1")
    expect(event_line(page, "order.created", live)).to_be_visible(timeout=EVENT_TIMEOUT_MS)
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    expect(event_line(page, "order.created", first)).to_have_count(1)  # the replay did not repeat what we had


def test_refused_subscription_shows_the_servers_reason_and_unsubscribe_cleans_up(
    open_page: Callable[..., Any], gateway: Gateway
) -> None:
    from playwright.sync_api import expect

    page = signed_in_page(open_page, gateway, "sarah")
    page.select_option(support.by_test_id("channel-select"), "analytics")
    page.click(support.by_test_id("subscribe-submit"))
    expect(page.locator(support.by_test_id("subscribe-error"))).to_contain_text("analytics.read")
    expect(page.locator(support.by_test_id("subscription-item"))).to_have_count(0)

    support.subscribe_on_console(page, "orders", [LOCATION], {"statuses": ["open"]})
    page.click(support.by_test_id("unsubscribe-button"))
    expect(page.locator(support.by_test_id("subscription-item"))).to_have_count(0)
    remaining = page.evaluate("window.realtimeConsole.client.listSubscriptions().then((list) => list.length)")
    assert remaining == 0


def test_client_typed_errors_and_fresh_token_after_4401(open_page: Callable[..., Any], gateway: Gateway) -> None:
    page = signed_in_page(open_page, gateway, "sarah")
    result = page.evaluate(
        """async () => {
          const { RealtimeClient, ChannelNotFoundError } = await import("/static/realtime/client.js");
          const token = await fetch("/v1/auth/token", {method: "POST", headers: {"Content-Type": "application/json"},
            body: JSON.stringify({username: "sarah", password: "demo-pass-123"})}).then((r) => r.json());
          let asked = 0;
          const client = new RealtimeClient({ token: "not-a-jwt", authMethod: "query",
            getToken: async () => { asked += 1; return token.access; } });
          const states = [];
          client.on("state", (s) => states.push(s));
          const session = await client.connect();
          const error = await client.subscribe("no-such-channel", {}).catch((e) => e);
          const pingMs = await client.ping();
          client.close();

          const refused = new RealtimeClient({ token: "not-a-jwt" });
          const refusal = await refused.connect().catch((e) => e);
          return { asked, userId: session.user_id, states,
                   errorIsTyped: error instanceof ChannelNotFoundError, errorCode: error.code,
                   frameType: error.frame && error.frame.type, pingMs,
                   refusalCode: refusal.code, refusalClose: refusal.closeCode, refusedState: refused.state };
        }"""
    )
    assert result["asked"] == 1
    assert result["userId"] == "user-sarah"
    assert result["errorIsTyped"] and result["errorCode"] == "channel_not_found" and result["frameType"] == "error"
    assert (result["refusalCode"], result["refusalClose"], result["refusedState"]) == (
        "unauthenticated",
        4401,
        "closed",
    )


def test_console_screenshot_with_live_events(open_page: Callable[..., Any], gateway: Gateway) -> None:
    """A busy console: two subscriptions, two people present, a few orders moving. SAVE_SCREENSHOT=1 keeps it."""
    from playwright.sync_api import expect

    sarah = signed_in_page(open_page, gateway, "sarah")
    support.subscribe_on_console(sarah, "tables", [LOCATION])
    support.subscribe_on_console(sarah, "orders", [LOCATION])
    panel = support.join_presence_on_console(sarah, "orders", LOCATION, "Sarah Server", "server")
    john = signed_in_page(open_page, gateway, "john")
    support.join_presence_on_console(john, "orders", LOCATION, "John Manager", "manager")
    expect(panel.locator(support.by_test_id("presence-user"))).to_have_count(2, timeout=EVENT_TIMEOUT_MS)

    takeout = support.create_order(gateway, LOCATION, type="takeout", total="18.75", table="")
    dine_in = support.create_order(gateway, LOCATION, type="dine_in", total="64.20", table="T2")
    support.set_table_status(gateway, LOCATION, "T2", "seated")
    support.set_order_status(gateway, dine_in, "preparing")
    support.set_order_status(gateway, takeout, "paid")
    support.create_order(gateway, LOCATION, type="delivery", total="42.00", table="")

    expect(event_line(sarah, "order.status_changed", takeout)).to_be_visible(timeout=EVENT_TIMEOUT_MS)
    expect(sarah.locator(support.by_test_id("event-line", event="table.seated"))).to_be_visible(
        timeout=EVENT_TIMEOUT_MS
    )
    if os.environ.get("SAVE_SCREENSHOT") == "1":
        SCREENSHOT_PATH.parent.mkdir(parents=True, exist_ok=True)
        sarah.wait_for_timeout(1_500)  # let the arrival highlight fade
        sarah.screenshot(path=str(SCREENSHOT_PATH))
        assert Path(SCREENSHOT_PATH).stat().st_size > 10_000


def test_admin_live_connections_shows_the_console_and_disconnects_it(
    open_page: Callable[..., Any], gateway: Gateway
) -> None:
    """The operator's page in the browser: the console's connection is listed, disconnected, and comes back."""
    from playwright.sync_api import expect

    console = signed_in_page(open_page, gateway, "sarah")
    support.subscribe_on_console(console, "orders", [LOCATION])
    connection_before = console.locator(support.by_test_id("connection-detail")).inner_text()

    admin = open_page()
    admin.goto(f"{gateway.http}/admin/login/?next=/admin/")
    admin.fill("#id_username", "admin")
    admin.fill("#id_password", support.DEMO_PASSWORD)
    admin.click("input[type=submit]")
    admin.click(support.by_test_id("live-connections-link"))
    expect(admin).to_have_title(re.compile("Live connections"))
    rows = admin.locator(support.by_test_id("connection-row", user_id="user-sarah"))
    expect(rows.locator(support.by_test_id("subscription", channel="orders"))).to_have_count(
        1, timeout=EVENT_TIMEOUT_MS
    )
    row = rows.filter(has=admin.locator(support.by_test_id("subscription", channel="orders"))).first
    screens = admin.locator(support.by_test_id("location-row", location=LOCATION))
    expect(screens.locator(support.by_test_id("location-screens"))).not_to_have_text("0")

    row.locator(support.by_test_id("reason")).fill("Moving this screen")
    row.locator(support.by_test_id("disconnect-connection")).click()
    expect(admin.locator(".messagelist")).to_contain_text("Moving this screen")

    # The console hears the reason, reconnects after backoff with a new connection, and its subscription resumes.
    state = console.locator(support.by_test_id("connection-state"))
    expect(console.locator(support.by_test_id("connection-detail"))).not_to_have_text(connection_before, timeout=30_000)
    expect(state).to_have_text("connected", timeout=30_000)
    item = console.locator(support.by_test_id("subscription-item"))
    expect(item).to_have_attribute("data-status", "active", timeout=EVENT_TIMEOUT_MS)
