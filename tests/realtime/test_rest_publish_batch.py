"""REST idempotent and batch publishing (issue 14), through the real ASGI application (its publish fast path) and,
for the Django views behind it, Django's test client; on the memory history and on real Redis.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from realtime.errors import ErrorCode
from realtime.stores import history
from tests.support.asgi import Answer, access_token_for, asgi_request, open_client

pytestmark = pytest.mark.django_db(transaction=True)
DOWNTOWN, UPTOWN, MAIN_STREET = "loc-xyz789", "loc-abc456", "loc-other1"


def order(location: str = DOWNTOWN, **extra: Any) -> dict[str, Any]:
    return {"channel": "orders", "event": "order.created", "location_id": location, "data": {}, **extra}


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, settings: Any) -> Iterator[str]:
    if request.param == "redis":
        settings.REDIS_URL = request.getfixturevalue("redis_url")
        settings.REDIS_PREFIX = f"rtgw-batch-{uuid.uuid4().hex[:8]}"
    else:
        settings.REDIS_URL = ""
    history.reset_history()
    yield request.param
    history.reset_history()


@pytest.fixture
async def john(world: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {await sync_to_async(access_token_for)(world['john'])}"}


async def post(path: str, body: Any, headers: dict[str, str], **kwargs: Any) -> Answer:
    return await asgi_request("POST", path, body, headers=headers, **kwargs)


async def stream_seqs(stream: str) -> list[int]:
    return [seq for seq, _ in (await history.get_history().replay(stream, 0, None)).events]


def error_of(answer: Answer, status: int, code: ErrorCode) -> dict[str, Any]:
    assert answer.status == status, (answer.status, answer.body[:400])
    assert answer.content_type.startswith("application/json")
    body = answer.json()
    assert body["code"] == code.value, body
    return body  # type: ignore[no-any-return]


# --- POST /v1/events with idempotency_key ---------------------------------------------------------------------------


async def test_a_repeated_key_answers_200_with_the_first_body(store: str, john: dict[str, str]) -> None:
    first = await post("/v1/events", order(idempotency_key="ord-1-created", data={"n": 1}), john)
    assert first.status == 202
    again = await post("/v1/events", order(idempotency_key="ord-1-created", data={"n": 1}), john)
    assert again.status == 200
    assert again.json() == first.json()
    assert set(first.json()) == {"event_id", "stream", "seq", "epoch"}
    assert await stream_seqs(f"orders:{DOWNTOWN}") == [1]


async def test_a_repeated_key_with_other_content_is_409(store: str, john: dict[str, str]) -> None:
    assert (await post("/v1/events", order(idempotency_key="k", data={"n": 1}), john)).status == 202
    body = error_of(
        await post("/v1/events", order(idempotency_key="k", data={"n": 2}), john), 409, ErrorCode.IDEMPOTENCY_CONFLICT
    )
    assert body == {
        "code": "idempotency_conflict",
        "message": "This idempotency key was already used for a different event",
        "idempotency_key": "k",
        "stream": f"orders:{DOWNTOWN}",
    }
    assert await stream_seqs(f"orders:{DOWNTOWN}") == [1]


@pytest.mark.parametrize("key", ["", "x" * 129, 12, None])
async def test_a_bad_key_is_400(store: str, john: dict[str, str], key: Any) -> None:
    answer = await post("/v1/events", order(idempotency_key=key), john)
    if key is None:  # null: no key
        assert answer.status == 202
        return
    assert "idempotency_key" in error_of(answer, 400, ErrorCode.INVALID_PARAMS)["message"]


async def test_the_django_view_answers_the_same(store: str, john: dict[str, str]) -> None:
    """The Django views behind the fast path (Django's test client skips ASGI) keep the same contract."""
    client = AsyncClient()
    kwargs: dict[str, Any] = {"content_type": "application/json", "headers": john}
    first = await client.post("/v1/events", order(idempotency_key="dj"), **kwargs)
    again = await client.post("/v1/events", order(idempotency_key="dj"), **kwargs)
    assert (first.status_code, again.status_code) == (202, 200) and first.json() == again.json()
    conflict = await client.post("/v1/events", order(idempotency_key="dj", data={"x": 1}), **kwargs)
    assert conflict.status_code == 409 and conflict.json()["code"] == "idempotency_conflict"
    batch = await client.post("/v1/events/batch", {"events": [order(), order(UPTOWN)]}, **kwargs)
    assert batch.status_code == 202 and [r["seq"] for r in batch.json()["results"]] == [2, 1]
    refused = await client.post("/v1/events/batch", {"events": [order(MAIN_STREET)]}, **kwargs)
    assert refused.status_code == 403


# --- POST /v1/events/batch ------------------------------------------------------------------------------------------


async def test_a_batch_is_published_in_item_order_and_reaches_subscribers(
    store: str, world: Any, john: dict[str, str]
) -> None:
    token = await sync_to_async(access_token_for)(world["sarah"])
    async with open_client(token) as client:
        await client.subscribe("orders", {"location_id": DOWNTOWN})
        events = [order(data={"i": i}) if i % 3 else order(UPTOWN, data={"i": i}) for i in range(9)]
        events.append(order(data={"i": 1}, idempotency_key="dup"))
        events.append(order(data={"i": 1}, idempotency_key="dup"))
        answer = await post("/v1/events/batch", {"events": events}, john)
        assert answer.status == 202, answer.body
        results = answer.json()["results"]
        assert [r["stream"] for r in results] == [f"orders:{e['location_id']}" for e in events]
        assert [(r["seq"], r["duplicate"]) for r in results if r["stream"] == f"orders:{DOWNTOWN}"] == [
            (1, False),
            (2, False),
            (3, False),
            (4, False),
            (5, False),
            (6, False),
            (7, False),
            (7, True),
        ]
        assert results[-1]["event_id"] == results[-2]["event_id"]
        delivered = [await client.recv() for _ in range(7)]
        assert [e["seq"] for e in delivered] == [1, 2, 3, 4, 5, 6, 7]
        assert [e["data"]["i"] for e in delivered] == [1, 2, 4, 5, 7, 8, 1]
        assert await client.nothing()


async def test_a_batch_with_bad_items_is_400_naming_each_and_publishes_nothing(
    store: str, john: dict[str, str]
) -> None:
    events = [order(), order(channel="nope"), order(), {"channel": "orders"}, order(idempotency_key="")]
    body = error_of(await post("/v1/events/batch", {"events": events}, john), 400, ErrorCode.INVALID_PARAMS)
    assert [e["index"] for e in body["errors"]] == [1, 3, 4]
    assert all(isinstance(e["message"], str) and e["message"] for e in body["errors"])
    assert await stream_seqs(f"orders:{DOWNTOWN}") == []


async def test_a_batch_with_one_forbidden_location_is_403_and_publishes_nothing(
    store: str, john: dict[str, str]
) -> None:
    events = [order(), order(UPTOWN), order(MAIN_STREET)]
    body = error_of(await post("/v1/events/batch", {"events": events}, john), 403, ErrorCode.FORBIDDEN)
    assert body["required_permission"] == "events.publish" and MAIN_STREET in body["message"]
    assert await stream_seqs(f"orders:{DOWNTOWN}") == [] and await stream_seqs(f"orders:{UPTOWN}") == []


async def test_a_batch_whose_key_clashes_is_409_and_publishes_nothing(store: str, john: dict[str, str]) -> None:
    assert (await post("/v1/events", order(UPTOWN, idempotency_key="c", data={"v": 1}), john)).status == 202
    events = [order(), order(UPTOWN, idempotency_key="c", data={"v": 2})]
    body = error_of(await post("/v1/events/batch", {"events": events}, john), 409, ErrorCode.IDEMPOTENCY_CONFLICT)
    assert body["index"] == 1 and body["stream"] == f"orders:{UPTOWN}"
    assert await stream_seqs(f"orders:{DOWNTOWN}") == []


async def test_batch_size_body_method_and_type_limits(store: str, settings: Any, john: dict[str, str]) -> None:
    settings.REALTIME = {"PUBLISH_BATCH_MAX": 3, "PUBLISH_MAX_BODY_BYTES": 2000}
    too_many = await post("/v1/events/batch", {"events": [order()] * 4}, john)
    assert (
        "at most" in error_of(too_many, 400, ErrorCode.INVALID_PARAMS)["message"]
        or "1 to 3" in too_many.json()["message"]
    )
    error_of(await post("/v1/events/batch", {"events": []}, john), 400, ErrorCode.INVALID_PARAMS)
    big = {"events": [order(data={"pad": "x" * 2000})]}
    assert error_of(await post("/v1/events/batch", big, john), 413, ErrorCode.PAYLOAD_TOO_LARGE)["limit"] == 2000
    chunked = await post("/v1/events/batch", big, john, send_length=False)
    assert error_of(chunked, 413, ErrorCode.PAYLOAD_TOO_LARGE)["limit"] == 2000
    single_big = await post("/v1/events", order(data={"pad": "x" * 2000}), john)
    error_of(single_big, 413, ErrorCode.PAYLOAD_TOO_LARGE)
    wrong_method = await asgi_request("GET", "/v1/events/batch", headers=john)
    assert error_of(wrong_method, 405, ErrorCode.METHOD_NOT_ALLOWED)["allowed"] == ["POST"]
    assert wrong_method.headers["allow"] == "POST"
    text = await post("/v1/events/batch", "events", john, content_type="text/plain")
    error_of(text, 415, ErrorCode.UNSUPPORTED_MEDIA_TYPE)
    error_of(await post("/v1/events/batch", {"events": [order()]}, {}), 401, ErrorCode.UNAUTHENTICATED)
    error_of(await post("/v1/events/batch", [order()], john), 400, ErrorCode.INVALID_PARAMS)
    error_of(await post("/v1/events/batch", b"{nope", john), 400, ErrorCode.INVALID_MESSAGE)
    assert await stream_seqs(f"orders:{DOWNTOWN}") == []


async def test_the_fast_path_keeps_the_django_paths_headers_and_host_check(store: str, john: dict[str, str]) -> None:
    answer = await post("/v1/events", order(), john)
    assert answer.headers["x-content-type-options"] == "nosniff" and answer.headers["x-frame-options"] == "DENY"
    from asgiref.testing import ApplicationCommunicator

    from config.asgi import application  # a Host outside ALLOWED_HOSTS goes to Django, which refuses it

    body = json.dumps(order()).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/events",
        "raw_path": b"/v1/events",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"evil.example"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", john["Authorization"].encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
    start = await communicator.receive_output(10)
    await communicator.receive_output(10)
    assert start["status"] == 400
    assert await stream_seqs(f"orders:{DOWNTOWN}") == [1]


# --- One round trip per stream, watched with Redis MONITOR ----------------------------------------------------------


class Monitor:
    """Every command Redis runs on our database while the block runs (MONITOR, from a thread of its own)."""

    def __init__(self, redis_url: str) -> None:
        import redis

        self.url = redis_url
        self.db = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs.get("db", 0)
        self.commands: list[dict[str, Any]] = []
        self.marker = f"end-of-monitor-{uuid.uuid4().hex}"
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        with client.monitor() as monitor:
            self._ready.set()
            for command in monitor.listen():
                if self.marker in command["command"]:
                    break
                if command["db"] == self.db:
                    self.commands.append(command)
        client.close()

    def __enter__(self) -> Monitor:
        self._thread.start()
        assert self._ready.wait(5)
        import time

        time.sleep(0.2)  # MONITOR is on before the first command we watch
        return self

    def __exit__(self, *exc: Any) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        client.echo(self.marker)
        client.close()
        self._thread.join(10)


def use_redis_everywhere(settings: Any, redis_url: str) -> str:
    """History and the default pub/sub channel layer on the test Redis, under a prefix of this test's own."""
    prefix = f"rtgw-rt-{uuid.uuid4().hex[:8]}"
    settings.REDIS_URL = redis_url
    settings.REDIS_PREFIX = prefix
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": redis_url}], "prefix": prefix},
        }
    }
    history.reset_history()
    return prefix


def split(commands: list[dict[str, Any]], prefix: str) -> tuple[list[str], list[str]]:
    """Our commands as sent by the gateway, and as run inside its scripts (command names)."""
    ours = [c for c in commands if prefix in c["command"]]
    sent = [c["command"].split(" ", 1)[0].upper() for c in ours if c["client_type"] != "lua"]
    scripted = [c["command"].split(" ", 1)[0].upper() for c in ours if c["client_type"] == "lua"]
    return sent, scripted


async def test_a_batch_takes_one_round_trip_per_stream_and_is_delivered_in_order(
    redis_url: str, settings: Any, world: Any, john: dict[str, str]
) -> None:
    prefix = use_redis_everywhere(settings, redis_url)
    locations = [DOWNTOWN, UPTOWN]
    token = await sync_to_async(access_token_for)(world["sarah"])
    async with open_client(token) as client:
        await client.subscribe("orders", {"location_id": DOWNTOWN})
        for location in locations:  # warm up: scripts loaded, hub subscribed, grants remembered
            assert (await post("/v1/events", order(location), john)).status == 202
        assert (await client.recv())["seq"] == 1
        events = [order(locations[i % 2], data={"i": i}) for i in range(40)]
        with Monitor(redis_url) as watched:
            answer = await post("/v1/events/batch", {"events": events}, john)
        assert answer.status == 202, answer.body
        assert len(answer.json()["results"]) == 40
        sent, scripted = split(watched.commands, prefix)
        # one script per stream: it appends the stream's 20 events and publishes them in one channel-layer message
        assert sent == ["EVALSHA", "EVALSHA"], sent
        assert scripted.count("PUBLISH") == 2 and scripted.count("XADD") == 40, scripted
        delivered = [await client.recv() for _ in range(20)]
        assert [e["seq"] for e in delivered] == list(range(2, 22))
        assert [e["data"]["i"] for e in delivered] == list(range(0, 40, 2))
        assert {e["stream"] for e in delivered} == {f"orders:{DOWNTOWN}"}
        first = answer.json()["results"][0]
        assert (delivered[0]["event_id"], delivered[0]["epoch"]) == (first["event_id"], first["epoch"])
        assert await client.nothing()
    assert await stream_seqs(f"orders:{DOWNTOWN}") == list(range(1, 22))


async def test_keyed_items_over_streams_add_one_read_of_their_keys(
    redis_url: str, settings: Any, john: dict[str, str]
) -> None:
    prefix = use_redis_everywhere(settings, redis_url)
    for location in (DOWNTOWN, UPTOWN):
        assert (await post("/v1/events", order(location), john)).status == 202
    events = [order((DOWNTOWN, UPTOWN)[i % 2], data={"i": i}, idempotency_key=f"rt-{i}") for i in range(10)]
    with Monitor(redis_url) as watched:
        assert (await post("/v1/events/batch", {"events": events}, john)).status == 202
    sent, scripted = split(watched.commands, prefix)
    assert sorted(sent) == ["EVALSHA", "EVALSHA", "MGET"], sent  # the clash pre-check, then a script per stream
    assert scripted.count("SET") == 10 and scripted.count("PUBLISH") == 2, scripted


async def test_a_single_publish_takes_one_round_trip(redis_url: str, settings: Any, john: dict[str, str]) -> None:
    prefix = use_redis_everywhere(settings, redis_url)
    assert (await post("/v1/events", order(), john)).status == 202
    with Monitor(redis_url) as watched:
        assert (await post("/v1/events", order(idempotency_key="one"), john)).status == 202
        assert (await post("/v1/events", order(idempotency_key="one"), john)).status == 200
    sent, scripted = split(watched.commands, prefix)
    assert sent == ["EVALSHA", "EVALSHA"], sent
    assert scripted.count("PUBLISH") == 1, scripted  # the repeat published nothing
