"""Hostile input at the REST door: every /v1/ answer is JSON in the protocol's error shape (issue 20).

Requests go through the real ASGI application (``tests.support.asgi``), middleware and all.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from realtime.errors import ErrorCode, InvalidMessage
from realtime.jsondecode import MAX_JSON_DEPTH, decode_json, nesting_depth
from realtime.protocol import parse_message
from tests.support.asgi import Answer, access_token_for, asgi_request, open_client

DEEP = "[" * 5000 + "]" * 5000  # about 10 KB; json.loads alone raises RecursionError on it
JUST_TOO_DEEP = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
ORDER = {"channel": "orders", "event": "order.created", "location_id": "loc-xyz789"}


def nested_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def assert_error(answer: Answer, status: int, code: ErrorCode) -> dict[str, Any]:
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.content_type.startswith("application/json"), answer.content_type
    body = answer.json()
    assert body["code"] == code.value and isinstance(body["message"], str) and body["message"], body
    return body


@pytest.fixture
async def john_headers(world: Any) -> dict[str, str]:
    return {"authorization": f"Bearer {await sync_to_async(access_token_for)(world['john'])}"}


# --- One bounded decoder --------------------------------------------------------------------------------------------


def test_the_decoder_bounds_depth_and_survives_recursion() -> None:
    assert decode_json(nested_object(MAX_JSON_DEPTH)) is not None
    for text in (DEEP, JUST_TOO_DEEP, nested_object(MAX_JSON_DEPTH + 1), "[" * 100_000):
        with pytest.raises(InvalidMessage):
            decode_json(text)
        with pytest.raises(InvalidMessage):
            decode_json(text.encode())
    assert nesting_depth([{"a": [1]}, 2]) == 3 and nesting_depth(7) == 0 and nesting_depth({}) == 1
    wide = "[" + ",".join(["[]"] * 500) + "]"  # many brackets, shallow: past the cheap pre-check, still accepted
    assert len(decode_json(wide)) == 500


def test_the_websocket_parser_uses_the_same_limit() -> None:
    for text in (DEEP, '{"type":"ping","id":' + JUST_TOO_DEEP + "}"):
        with pytest.raises(InvalidMessage):
            parse_message(text)


@pytest.mark.django_db(transaction=True)
async def test_too_deep_json_is_invalid_message_on_websocket_and_rest(world: Any, john_headers: Any) -> None:
    async with open_client(await sync_to_async(access_token_for)(world["john"])) as client:
        for text in (DEEP, '{"type":"ping","id":"p","x":' + JUST_TOO_DEEP + "}"):
            reply = await client.request(text)
            assert reply["type"] == "error" and reply["code"] == "invalid_message", reply
        assert (await client.request({"type": "ping", "id": "after"}))["type"] == "pong"  # still connected
    for body in (DEEP, JUST_TOO_DEEP):
        assert_error(
            await asgi_request("POST", "/v1/events", body, headers=john_headers), 400, ErrorCode.INVALID_MESSAGE
        )
        assert_error(await asgi_request("POST", "/v1/auth/token", body), 400, ErrorCode.INVALID_MESSAGE)
        assert_error(await asgi_request("POST", "/v1/auth/token/refresh", body), 400, ErrorCode.INVALID_MESSAGE)
    deep_data = {**ORDER, "data": {"a": [[[[{"b": 1}]]]]}}  # a few levels are fine
    assert (await asgi_request("POST", "/v1/events", deep_data, headers=john_headers)).status == 202


@pytest.mark.django_db(transaction=True)
async def test_undecodable_json_is_invalid_message(john_headers: Any) -> None:
    for body in (b"{not json", b"\xff\xfe{", b'{"channel": "orders",'):
        answer = await asgi_request("POST", "/v1/events", body, headers=john_headers)
        assert_error(answer, 400, ErrorCode.INVALID_MESSAGE)
        assert_error(await asgi_request("POST", "/v1/auth/token", body), 400, ErrorCode.INVALID_MESSAGE)


# --- Size, type, path, method ---------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_body_over_the_limit_is_413_with_the_limit(settings: Any, john_headers: Any) -> None:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    ten_mb = b'{"channel":"' + b"x" * (10 * 1024 * 1024) + b'"}'
    for path in ("/v1/events", "/v1/auth/token", "/v1/locations"):
        body = assert_error(
            await asgi_request("POST", path, ten_mb, headers=john_headers), 413, ErrorCode.PAYLOAD_TOO_LARGE
        )
        assert body["limit"] == limit == 1024 * 1024
    # No Content-Length (chunked): Django finds out only when the view reads the body, lazily.
    answer = await asgi_request("POST", "/v1/events", ten_mb, headers=john_headers, send_length=False)
    assert assert_error(answer, 413, ErrorCode.PAYLOAD_TOO_LARGE)["limit"] == limit
    answer = await asgi_request("POST", "/v1/auth/token", ten_mb, send_length=False)
    assert assert_error(answer, 413, ErrorCode.PAYLOAD_TOO_LARGE)["limit"] == limit


@pytest.mark.django_db(transaction=True)
async def test_a_wrong_content_type_is_415(john_headers: Any) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        for path in ("/v1/events", "/v1/auth/token", "/v1/auth/token/refresh"):
            answer = await asgi_request("POST", path, "username=john", content_type=content_type, headers=john_headers)
            assert_error(answer, 415, ErrorCode.UNSUPPORTED_MEDIA_TYPE)
    ok = await asgi_request(
        "POST", "/v1/events", ORDER, content_type="application/json; charset=utf-8", headers=john_headers
    )
    assert ok.status == 202


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("debug", [False, True])
async def test_an_unknown_path_under_v1_is_json_404(settings: Any, debug: bool, john_headers: Any) -> None:
    settings.DEBUG = debug
    for path in ("/v1/nope", "/v1/", "/v1/streams/orders:loc-xyz789", "/v1/events/extra/segments", "/v1/%00"):
        assert_error(await asgi_request("GET", path, headers=john_headers), 404, ErrorCode.NOT_FOUND)
    # HTML stays outside the API: the admin, the console, Django's own 404 page
    outside_404 = await asgi_request("GET", "/nope")
    assert outside_404.status == 404 and outside_404.content_type.startswith("text/html")
    admin_login = await asgi_request("GET", "/admin/login/")
    assert admin_login.status == 200 and admin_login.content_type.startswith("text/html")
    console = await asgi_request("GET", "/console/")
    assert console.status == 200 and console.content_type.startswith("text/html")


@pytest.mark.django_db(transaction=True)
async def test_a_wrong_method_is_405_with_allow(john_headers: Any) -> None:
    cases = [
        ("GET", "/v1/events", ["POST"]),
        ("PUT", "/v1/events", ["POST"]),
        ("DELETE", "/v1/locations", ["GET", "HEAD", "OPTIONS"]),
        ("POST", "/v1/channels", ["GET", "HEAD", "OPTIONS"]),
        ("GET", "/v1/auth/token", ["POST", "OPTIONS"]),
        ("PATCH", "/v1/streams/orders:loc-xyz789/events", ["GET", "HEAD", "OPTIONS"]),
    ]
    for method, path, allowed in cases:
        body = assert_error(await asgi_request(method, path, headers=john_headers), 405, ErrorCode.METHOD_NOT_ALLOWED)
        assert body["allowed"] == allowed, (method, path, body)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("debug", [False, True])
async def test_an_unexpected_error_is_json_500_and_logged_with_context(
    settings: Any, debug: bool, john_headers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.DEBUG = debug

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("kaboom in the view")

    import config.asgi  # noqa: F401  (set up before listening: its django.setup() reconfigures logging)

    monkeypatch.setattr("realtime.api.views.ChannelListView.get", explode)
    monkeypatch.setattr("realtime.api.publish.resolve_target", explode)
    records: list[logging.LogRecord] = []
    collector = logging.Handler(logging.ERROR)
    collector.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("django.request").addHandler(collector)
    try:
        for path, body in (("/v1/channels", b""), ("/v1/events", ORDER)):
            method = "POST" if body else "GET"
            answer = await asgi_request(method, path, body, headers=john_headers)
            assert_error(answer, 500, ErrorCode.INTERNAL_ERROR)
            assert b"kaboom" not in answer.body and b"Traceback" not in answer.body
    finally:
        logging.getLogger("django.request").removeHandler(collector)
    logged = [r for r in records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in logged] == [  # once each, with the request and the traceback
        "Internal Server Error: /v1/channels",
        "Internal Server Error: /v1/events",
    ]
    assert all(r.exc_info and "kaboom" in str(r.exc_info[1]) for r in logged)
    assert all(getattr(r, "request", None) is not None and r.status_code == 500 for r in logged)  # type: ignore[attr-defined]
