"""An operations manager changes a membership in the admin, in a real Chromium against a real gateway process.

The admin page's effective-access table changes, and the live console of the user whose membership changed loses
the subscription that no longer holds (``subscription_revoked`` on the wire), while the one still covered stays.
The gateway has its own SQLite file and uses Redis (REDIS_TEST_URL), so the access change travels as it does in
production.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import browser as support
from tests.support.processes import Gateway
from tests.support.services import REDIS_TEST_URL, flush_redis_db, require_service

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

LOCATION = "loc-xyz789"
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    require_service(REDIS_TEST_URL, 6379, "Redis")
    flush_redis_db(REDIS_TEST_URL)
    with support.running_gateway(tmp_path_factory.mktemp("admin-browser"), redis_url=REDIS_TEST_URL) as running:
        yield running
    flush_redis_db(REDIS_TEST_URL)


def sign_in_to_admin(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", support.DEMO_PASSWORD)
    page.click('input[type="submit"]')
    page.wait_for_url(f"{base_url}/admin/", timeout=TIMEOUT_MS)


def access_row(page: Any, permission: str) -> Any:
    return page.locator(
        f'[data-testid="effective-access"] tr[data-location="{LOCATION}"][data-permission="{permission}"]'
    )


def test_changing_a_membership_in_the_admin_updates_the_table_and_revokes_live(browser: Any, gateway: Gateway) -> None:
    from playwright.sync_api import expect

    contexts = [browser.new_context(viewport={"width": 1440, "height": 900}) for _ in range(2)]
    errors: list[str] = []
    frames: list[dict[str, Any]] = []
    try:
        sarah = contexts[0].new_page()
        sarah.on("pageerror", lambda error: errors.append(str(error)))

        def watch(ws: Any) -> None:
            ws.on("framereceived", lambda payload: frames.append(json.loads(payload)))

        sarah.on("websocket", watch)
        support.open_console_signed_in(sarah, gateway.http, "sarah")
        support.subscribe_on_console(sarah, "orders", [LOCATION])
        support.subscribe_on_console(sarah, "tables", [LOCATION])

        admin = contexts[1].new_page()
        admin.on("pageerror", lambda error: errors.append(str(error)))
        sign_in_to_admin(admin, gateway.http)
        admin.goto(f"{gateway.http}/admin/accounts/user/?q=sarah")
        admin.click('#result_list a:text-is("sarah")')
        expect(access_row(admin, "tables.read")).to_contain_text("server at this location")
        expect(access_row(admin, "orders.read")).to_be_visible()
        expect(access_row(admin, "kds.read")).to_have_count(0)

        # Sarah moves to the kitchen: her membership's role becomes "kitchen" (orders and kds, no tables).
        admin.click("#memberships-0 .field-role .select2-selection")
        admin.fill(".select2-container--open .select2-search__field", "kitchen")
        admin.click('.select2-results__option:text-is("kitchen")')
        admin.click('input[name="_continue"]')

        expect(admin.locator(".messagelist .success")).to_be_visible(timeout=TIMEOUT_MS)
        expect(access_row(admin, "kds.read")).to_contain_text("kitchen at this location")
        expect(access_row(admin, "orders.read")).to_contain_text("kitchen at this location")
        expect(access_row(admin, "tables.read")).to_have_count(0)

        tables_log = sarah.locator(support.by_test_id("event-log", channel="tables"))
        revoked_note = tables_log.locator(support.by_test_id("event-note"), has_text="Revoked by the server")
        expect(revoked_note).to_contain_text("permission_removed", timeout=TIMEOUT_MS)
        items = sarah.locator(support.by_test_id("subscription-item"))
        expect(items).to_have_count(1)
        expect(items.first).to_have_attribute("data-channel", "orders")
        expect(items.first).to_have_attribute("data-status", "active")
        revoked = [f for f in frames if f.get("type") == "subscription_revoked"]
        assert [(f["channel"], f["reason"]) for f in revoked] == [("tables", "permission_removed")]

        # The location's page says the same from the other side, and its history says who changed what.
        access_row(admin, "orders.read").locator("a").first.click()
        holders = admin.locator('[data-testid="location-holders"] tr[data-permission="kds.read"]')
        expect(holders).to_contain_text("sarah (user-sarah): kitchen at this location")
        admin.goto(admin.url.split("/change/")[0] + "/history/")
        expect(admin.locator("#change-history")).to_contain_text(
            "Changed membership “Sarah Server as server at location Downtown (loc-xyz789)” "
            "to “Sarah Server as kitchen at location Downtown (loc-xyz789)”."
        )
        expect(admin.locator("#change-history")).to_contain_text("admin")
    finally:
        for context in contexts:
            context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
