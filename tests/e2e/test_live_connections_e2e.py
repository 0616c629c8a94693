"""The admin's "Live connections" page and its disconnect actions across two gateway processes on one Redis."""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import pytest
import websockets

from tests.support.processes import Gateway, manage
from tests.support.rest import login
from tests.support.wsclient import WsClient

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
AT = {"location_id": "loc-xyz789"}
FAST_BEAT = {"REALTIME_PRESENCE_TTL_SECONDS": "3", "REALTIME_PRESENCE_HEARTBEAT_SECONDS": "1"}
ROW = re.compile(
    r'data-testid="connection-row" data-connection-id="([^"]+)" data-user-id="([^"]+)" data-process="([^"]+)"'
)
LOCATION_ROW = re.compile(r'data-testid="location-row" data-location="([^"]+)" data-screens="(\d+)"')
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class Row:
    connection_id: str
    user_id: str
    process: str


class AdminSession:
    """A signed-in admin over plain HTTP: a cookie jar, the CSRF token of the last page, no redirects followed."""

    def __init__(self, gateway: Gateway) -> None:
        self.base = gateway.http
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)
        self.csrf = ""

    def request(self, path: str, form: dict[str, str] | None = None) -> tuple[int, str, str]:
        data = None
        if form is not None:
            data = urllib.parse.urlencode({"csrfmiddlewaretoken": self.csrf, **form}).encode()
        request = urllib.request.Request(self.base + path, data=data)
        try:
            with self.opener.open(request, timeout=10) as response:
                status, body, location = response.status, response.read().decode(), ""
        except urllib.error.HTTPError as exc:
            status, body, location = exc.code, exc.read().decode(), exc.headers.get("Location", "")
        found = CSRF_INPUT.search(body)
        if found:
            self.csrf = found.group(1)
        return status, body, location

    def sign_in(self, username: str = "admin", password: str = "demo-pass-123") -> None:
        self.request("/admin/login/")
        status, _, location = self.request(
            "/admin/login/?next=/admin/", {"username": username, "password": password, "next": "/admin/"}
        )
        assert status == 302 and location == "/admin/", (status, location)

    def live_page(self, query: str = "") -> str:
        status, body, _ = self.request(f"/admin/live-connections/{query}")
        assert status == 200, body[:500]
        return body


def rows(page: str) -> dict[str, Row]:
    return {cid: Row(cid, user, process) for cid, user, process in ROW.findall(page)}


async def page_until(admin: AdminSession, wanted, query: str = "", timeout: float = 20) -> str:  # type: ignore[no-untyped-def]
    """Reload the page until ``wanted(page)`` holds (the directory is written a moment after each change)."""
    deadline = time.monotonic() + timeout
    while True:
        page = await asyncio.to_thread(admin.live_page, query)
        if wanted(page) or time.monotonic() > deadline:
            return page
        await asyncio.sleep(0.2)


async def expect_disconnected(client: WsClient, reason: str) -> None:
    frame = await client.next_of("error", timeout=15)
    assert frame == {"type": "error", "code": "disconnected", "message": reason}
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await client.recv(timeout=15)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000


async def test_the_page_lists_connections_of_both_processes_and_disconnects_wherever_they_live(gateways, shared_redis):
    a = gateways(shared_redis, **FAST_BEAT)
    b = gateways(shared_redis, **FAST_BEAT)
    sarah_a = await WsClient.open(a.ws, login(a, "sarah"))
    await sarah_a.subscribe("orders", AT)
    sarah_b = await WsClient.open(b.ws, login(b, "sarah"))
    await sarah_b.subscribe("tables", AT)
    kds = await websockets.connect(
        f"{b.ws}?access_token={login(b, 'john')}", open_timeout=10, user_agent_header="KDS screen 7"
    )
    john_b = WsClient(kds)
    john_b.connected = await john_b.recv()
    await john_b.request({"type": "presence_join", "channel": "orders", "params": AT, "user_info": {"name": "KDS"}})
    ids = {
        "sarah_a": sarah_a.connected["connection_id"],
        "sarah_b": sarah_b.connected["connection_id"],
        "john_b": john_b.connected["connection_id"],
    }

    admin = AdminSession(a)
    anonymous = admin.request("/admin/live-connections/")
    assert anonymous[0] == 302 and anonymous[2].startswith("/admin/login/")  # staff only
    admin.sign_in()
    assert 'href="/admin/live-connections/"' in admin.request("/admin/")[1]  # linked from the admin index

    page = await page_until(admin, lambda p: set(ids.values()) <= set(rows(p)) and "orders:loc-xyz789</li>" in p)
    listed = rows(page)
    assert set(ids.values()) <= set(listed)
    assert listed[ids["sarah_a"]].process != listed[ids["john_b"]].process  # two processes, one page
    assert listed[ids["sarah_b"]].process == listed[ids["john_b"]].process
    assert listed[ids["john_b"]].user_id == "user-john"
    assert "KDS screen 7" in page and "127.0.0.1" in page
    assert 'data-testid="process-count">2<' in page
    # loc-xyz789: sarah's two screens (orders, tables) and john's presence (orders); other locations show zero.
    screens = dict(LOCATION_ROW.findall(page))
    assert screens["loc-xyz789"] == "3"
    assert set(screens.values()) - {"3"} == {"0"}
    only_here = await asyncio.to_thread(admin.live_page, "?location=loc-xyz789")
    assert set(dict(LOCATION_ROW.findall(only_here))) == {"loc-xyz789"}

    # One connection, on the other process than the page's.
    status, _, _ = admin.request(
        "/admin/live-connections/",
        {"action": "disconnect_connection", "connection_id": ids["john_b"], "reason": "Tablet replaced"},
    )
    assert status == 302
    await expect_disconnected(john_b, "Tablet replaced")
    # Every connection of a user, on both processes.
    everywhere = {"action": "disconnect_user", "user_id": "user-sarah", "reason": "Shift over"}
    admin.request("/admin/live-connections/", everywhere)
    await asyncio.gather(expect_disconnected(sarah_a, "Shift over"), expect_disconnected(sarah_b, "Shift over"))

    page = await page_until(admin, lambda p: not set(ids.values()) & set(rows(p)))
    assert not set(ids.values()) & set(rows(page))
    assert 'data-testid="no-connections"' in page
    # The user was not deactivated: the client may come back.
    again = await WsClient.open(a.ws, login(a, "sarah"))
    await again.close()


async def test_deactivating_with_the_disconnect_keeps_the_user_out_and_a_dead_process_drops_off(gateways, shared_redis):
    a = gateways(shared_redis, **FAST_BEAT)
    b = gateways(shared_redis, **FAST_BEAT)
    sarah_token = login(a, "sarah")
    sarah = await WsClient.open(a.ws, sarah_token)
    kim = await WsClient.open(b.ws, login(b, "kim"))
    admin = AdminSession(a)
    admin.sign_in()
    page = await page_until(admin, lambda p: kim.connected["connection_id"] in rows(p))
    assert sarah.connected["connection_id"] in rows(page)

    try:
        admin.request(
            "/admin/live-connections/",
            {"action": "disconnect_user", "user_id": "user-sarah", "reason": "Left the company", "deactivate": "on"},
        )
        await expect_disconnected(sarah, "Left the company")
        async with websockets.connect(f"{a.ws}?access_token={sarah_token}") as retry:  # the client's reconnect
            assert json.loads(await asyncio.wait_for(retry.recv(), 10))["code"] == "unauthenticated"
            with pytest.raises(websockets.ConnectionClosed) as refused:
                await asyncio.wait_for(retry.recv(), 10)
        assert refused.value.rcvd is not None and refused.value.rcvd.code == 4401
    finally:  # the seeded database is shared by the session's e2e tests
        reactivate = "from accounts.models import User; User.objects.filter(username='sarah').update(is_active=True)"
        manage(a.env, "shell", "-c", reactivate)

    b.kill()  # no clean-up: kim's entry goes with b's key when its TTL (3 s) runs out
    page = await page_until(admin, lambda p: not rows(p), timeout=30)
    assert rows(page) == {}
