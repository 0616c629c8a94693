"""The REST door against real gateway processes (issue 20): login failure counts shared through Redis by a uvicorn
and a daphne process, client addresses from trusted proxies only, and JSON answers to hostile input with DEBUG off.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.processes import Gateway

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.postgres]


def post(
    gateway: Gateway, path: str, body: bytes | Any, headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[int, dict[str, str], Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{gateway.http}{path}", data=data or None, method=method)
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw_headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, raw_headers, raw = exc.code, exc.headers, exc.read()
    answer_headers = {name.lower(): value for name, value in raw_headers.items()}
    assert answer_headers.get("content-type", "").startswith("application/json"), (status, answer_headers, raw[:200])
    return status, answer_headers, json.loads(raw)


def login(gateway: Gateway, username: str, password: str, **headers: str) -> tuple[int, dict[str, str], Any]:
    return post(gateway, "/v1/auth/token", {"username": username, "password": password}, headers)


def test_login_failure_counts_are_shared_by_processes_through_redis(
    gateways: Callable[..., Gateway], shared_redis: str
) -> None:
    first = gateways(redis_url=shared_redis, server="uvicorn")
    second = gateways(redis_url=shared_redis, server="daphne")
    for gateway in (first, second) * 5:  # ten failures for john, half on each process
        status, _, body = login(gateway, "john", "wrong")
        assert status == 401 and body["code"] == "unauthenticated"
    for gateway in (first, second):
        status, headers, body = login(gateway, "john", "demo-pass-123")
        assert status == 429 and body["code"] == "rate_limited" and body["retry_after_ms"] > 0, body
        assert int(headers["retry-after"]) == -(-body["retry_after_ms"] // 1000)
    assert login(second, "sarah", "demo-pass-123")[0] == 200  # other users are unaffected
    assert login(first, "sarah", "demo-pass-123")[0] == 200


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
def test_forwarded_for_is_believed_only_from_trusted_proxies(
    gateways: Callable[..., Gateway], shared_redis: str, server: str
) -> None:
    # The test reaches the processes from 127.0.0.1: trusted by default, untrusted when TRUSTED_PROXIES says so.
    limits = {"REALTIME_LOGIN_FAILURES_PER_ADDRESS": "3"}
    untrusting = gateways(redis_url=shared_redis, server=server, TRUSTED_PROXIES="192.0.2.1", **limits)
    for n in range(3):
        forged = {"X-Forwarded-For": f"10.0.{n}.{secrets.randbelow(250)}"}
        assert login(untrusting, f"u-{server}-{n}", "wrong", **forged)[0] == 401
    status, _, body = login(untrusting, f"u-{server}-x", "wrong", **{"X-Forwarded-For": "10.1.2.3"})
    assert status == 429 and body["code"] == "rate_limited"  # every forged address counted as 127.0.0.1

    trusting = gateways(server=server, **limits)  # its own in-process counts; loopback (nginx) trusted
    for n in range(3):
        assert login(trusting, f"t-{server}-{n}", "wrong", **{"X-Forwarded-For": "198.51.100.1"})[0] == 401
    assert login(trusting, "sarah", "demo-pass-123", **{"X-Forwarded-For": "198.51.100.1"})[0] == 429
    assert login(trusting, "sarah", "demo-pass-123", **{"X-Forwarded-For": "198.51.100.2"})[0] == 200


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
def test_hostile_requests_get_json_answers_with_debug_off(gateways: Callable[..., Gateway], server: str) -> None:
    gateway = gateways(server=server)
    _, _, tokens = login(gateway, "john", "demo-pass-123")
    bearer = {"Authorization": f"Bearer {tokens['access']}"}
    deep = ("[" * 5000 + "]" * 5000).encode()
    for path in ("/v1/events", "/v1/auth/token"):
        status, _, body = post(gateway, path, deep, bearer)
        assert status == 400 and body["code"] == "invalid_message", body
    status, _, body = post(gateway, "/v1/events", b'{"a":"' + b"x" * (10 * 1024 * 1024) + b'"}', bearer)
    assert status == 413 and body == {
        "code": "payload_too_large",
        "message": "Request body is larger than 1048576 bytes",
        "limit": 1048576,
    }
    status, _, body = post(gateway, "/v1/events", b"x=1", {**bearer, "Content-Type": "text/plain"})
    assert status == 415 and body["code"] == "unsupported_media_type"
    status, _, body = post(gateway, "/v1/no/such/thing", b"", bearer, method="GET")
    assert status == 404 and body["code"] == "not_found"
    status, headers, body = post(gateway, "/v1/events", b"", bearer, method="GET")
    assert status == 405 and body["code"] == "method_not_allowed" and headers["allow"] == "POST"
    assert "Traceback" not in gateway.log()
