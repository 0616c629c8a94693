"""Login throttling: failures counted per username and per client address, 429 past a limit (issue 20).

Through the real ASGI application, so the client address is decided by ``realtime.proxy`` as in production.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.urls import reverse

from accounts.models import LoginLockout
from locations.management.commands.seed_demo import DEMO_PASSWORD
from realtime.api.login import LoginFailures
from realtime.conf import DEFAULTS
from realtime.errors import ErrorCode
from realtime.proxy import client_address, parse_networks
from tests.support.asgi import Answer, asgi_request

pytestmark = pytest.mark.django_db(transaction=True)


async def login(username: str, password: str, peer: str = "127.0.0.1", **headers: str) -> Answer:
    body = {"username": username, "password": password}
    return await asgi_request("POST", "/v1/auth/token", body, peer=peer, headers=headers)


def assert_rate_limited(answer: Answer) -> int:
    assert answer.status == 429, (answer.status, answer.body)
    body = answer.json()
    assert body["code"] == ErrorCode.RATE_LIMITED.value and body["message"]
    retry_after_ms = body["retry_after_ms"]
    assert 0 < retry_after_ms <= DEFAULTS["LOGIN_FAILURE_WINDOW_SECONDS"] * 1000
    assert answer.headers["retry-after"] == str(math.ceil(retry_after_ms / 1000))
    return int(retry_after_ms)


def lockouts() -> list[tuple[str, str, int]]:
    return [(lock.kind, lock.identity, lock.failures) for lock in LoginLockout.objects.order_by("kind", "identity")]


def test_the_limits_are_settings_with_the_issue_s_defaults() -> None:
    assert DEFAULTS["LOGIN_FAILURES_PER_USERNAME"] == 10
    assert DEFAULTS["LOGIN_FAILURES_PER_ADDRESS"] == 50
    assert DEFAULTS["LOGIN_FAILURE_WINDOW_SECONDS"] == 15 * 60


async def test_ten_failures_lock_the_username_even_for_the_right_password(world: Any) -> None:
    for _ in range(10):
        answer = await login("john", "wrong")
        assert answer.status == 401 and answer.json()["code"] == "unauthenticated"
    retry_after_ms = assert_rate_limited(await login("john", DEMO_PASSWORD))
    assert retry_after_ms > 14 * 60 * 1000  # the ten failures are seconds old; the window is 15 minutes
    assert await database_sync_to_async(lockouts)() == [("username", "john", 10)]
    # Other users, even from the same address, are not affected by john's attacker.
    assert (await login("sarah", DEMO_PASSWORD)).status == 200
    assert (await login("sarah", "wrong")).status == 401


async def test_a_success_resets_the_username_count(world: Any) -> None:
    for _ in range(9):
        assert (await login("john", "wrong")).status == 401
    assert (await login("john", DEMO_PASSWORD)).status == 200
    for _ in range(10):
        assert (await login("john", "wrong")).status == 401
    assert_rate_limited(await login("john", "wrong"))


async def test_spellings_the_serializer_reads_alike_share_a_count(world: Any) -> None:
    for spelling in ("john", " john", "john ", "\tjohn\n", "  john  ") * 2:
        answer = await asgi_request("POST", "/v1/auth/token", {"username": spelling, "password": "wrong"})
        assert answer.status == 401
    assert_rate_limited(await login("john", DEMO_PASSWORD))


async def test_requests_that_check_no_credential_do_not_count(world: Any) -> None:
    for _ in range(12):
        answer = await asgi_request("POST", "/v1/auth/token", {"username": "john"})
        assert answer.status == 400 and answer.json()["code"] == "invalid_message"
    for _ in range(10):
        assert (await login("john", "wrong")).status == 401
    for _ in range(3):  # refused attempts are not failures either: the lockout does not grow
        assert_rate_limited(await login("john", "wrong"))
    assert await database_sync_to_async(lockouts)() == [("username", "john", 10)]


async def test_fifty_failures_lock_the_address_not_others(world: Any) -> None:
    for n in range(50):
        assert (await login(f"nobody-{n}", "wrong", peer="198.51.100.20")).status == 401
    assert_rate_limited(await login("sarah", DEMO_PASSWORD, peer="198.51.100.20"))
    assert (await login("sarah", DEMO_PASSWORD, peer="198.51.100.21")).status == 200
    assert ("address", "198.51.100.20", 50) in await database_sync_to_async(lockouts)()


async def test_a_forged_forwarded_for_from_an_untrusted_peer_is_ignored(world: Any, settings: Any) -> None:
    settings.REALTIME = {"LOGIN_FAILURES_PER_ADDRESS": 5}
    for n in range(5):
        answer = await login(f"guess-{n}", "wrong", peer="203.0.113.7", **{"X-Forwarded-For": f"10.9.8.{n}"})
        assert answer.status == 401
    assert_rate_limited(await login("guess-x", "wrong", peer="203.0.113.7", **{"X-Forwarded-For": "10.9.8.200"}))
    assert await database_sync_to_async(lockouts)() == [("address", "203.0.113.7", 5)]


async def test_behind_a_trusted_proxy_each_client_address_counts_apart(world: Any, settings: Any) -> None:
    settings.REALTIME = {"LOGIN_FAILURES_PER_ADDRESS": 3}
    nginx = "127.0.0.1"  # a TRUSTED_PROXIES default; nginx appends the peer it saw to what the client sent
    for n in range(3):
        xff = f"6.6.6.{n}, 192.0.2.10"  # the client's own claim (6.6.6.n) is left of what nginx saw
        assert (await login(f"guess-{n}", "wrong", peer=nginx, **{"X-Forwarded-For": xff})).status == 401
    assert_rate_limited(await login("sarah", DEMO_PASSWORD, peer=nginx, **{"X-Forwarded-For": "192.0.2.10"}))
    assert (await login("sarah", DEMO_PASSWORD, peer=nginx, **{"X-Forwarded-For": "192.0.2.11"})).status == 200
    assert await database_sync_to_async(lockouts)() == [("address", "192.0.2.10", 3)]


async def test_refresh_failures_count_against_the_address(world: Any, settings: Any) -> None:
    settings.REALTIME = {"LOGIN_FAILURES_PER_ADDRESS": 3}
    for n in range(3):
        answer = await asgi_request("POST", "/v1/auth/token/refresh", {"refresh": f"forged.{n}.token"})
        assert answer.status == 401, answer.body
    assert_rate_limited(await asgi_request("POST", "/v1/auth/token/refresh", {"refresh": "forged.x.token"}))
    assert_rate_limited(await login("sarah", DEMO_PASSWORD))  # the same address, the same count


async def test_failures_leave_the_window(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(10):
        assert (await login("john", "wrong")).status == 401
    assert_rate_limited(await login("john", DEMO_PASSWORD))
    window = DEFAULTS["LOGIN_FAILURE_WINDOW_SECONDS"]
    monkeypatch.setattr(LoginFailures, "timer", staticmethod(lambda: time.time() + window + 1))
    assert (await login("john", DEMO_PASSWORD)).status == 200


async def test_the_admin_shows_lockouts_and_deleting_one_clears_it(world: Any) -> None:
    for _ in range(10):
        assert (await login("john", "wrong")).status == 401
    assert_rate_limited(await login("john", DEMO_PASSWORD))

    def clear_in_admin() -> None:
        client = Client()
        client.force_login(world["admin"])
        changelist = client.get(reverse("admin:accounts_loginlockout_changelist"))
        assert changelist.status_code == 200 and "john" in changelist.content.decode()
        lockout = LoginLockout.objects.get(kind="username", identity="john")
        response = client.post(
            reverse("admin:accounts_loginlockout_changelist"),
            {"action": "delete_selected", "_selected_action": [lockout.pk], "post": "yes"},
        )
        assert response.status_code == 302
        assert not LoginLockout.objects.exists()

    await database_sync_to_async(clear_in_admin)()
    assert (await login("john", DEMO_PASSWORD)).status == 200


def test_client_address_believes_forwarded_for_only_from_trusted_proxies() -> None:
    trusted = parse_networks(["127.0.0.1", "::1", "10.0.0.0/8"])
    assert client_address("203.0.113.7", "1.2.3.4", trusted) == "203.0.113.7"  # untrusted peer: header ignored
    assert client_address("127.0.0.1", "1.2.3.4", trusted) == "1.2.3.4"
    assert client_address("127.0.0.1", "6.6.6.6, 1.2.3.4", trusted) == "1.2.3.4"  # rightmost untrusted hop
    assert client_address("127.0.0.1", "1.2.3.4, 10.1.1.1", trusted) == "1.2.3.4"  # through two proxies
    assert client_address("127.0.0.1", "not-an-ip", trusted) == "127.0.0.1"
    assert client_address("127.0.0.1", None, trusted) == "127.0.0.1"
    assert client_address("::1", "2001:db8::1", trusted) == "2001:db8::1"
    assert client_address("10.0.0.5", "", trusted) == "10.0.0.5"
