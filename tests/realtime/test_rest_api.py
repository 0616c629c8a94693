"""REST: POST /v1/events and the Python publish API behind it, plus the read-only endpoints."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from realtime.errors import ChannelNotFound, InvalidParams
from realtime.publishing import MAX_EVENT_DATA_BYTES, PublishedEvent, apublish, publish, publish_on_commit
from tests.support.asgi import open_client

DOWNTOWN, UPTOWN, MAIN_STREET = "loc-xyz789", "loc-abc456", "loc-other1"
ORDER_CREATED = {"channel": "orders", "event": "order.created", "location_id": DOWNTOWN}


def api_as(user: Any | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    return client


def post_event(user: Any | None, body: Any) -> Any:
    return api_as(user).post("/v1/events", body, format="json")


# --- POST /v1/events ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_publish_as_manager(world: Any) -> None:
    response = post_event(world["john"], {**ORDER_CREATED, "data": {"order_id": "ord-1", "status": "open"}})
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"event_id", "stream", "seq", "epoch"}
    assert body["event_id"].startswith("evt-") and body["stream"] == f"orders:{DOWNTOWN}" and body["seq"] == 1
    again = post_event(world["john"], ORDER_CREATED).json()
    assert again["seq"] == 2 and again["epoch"] == body["epoch"] and again["event_id"] != body["event_id"]
    other_stream = post_event(world["john"], {**ORDER_CREATED, "location_id": UPTOWN}).json()
    assert other_stream["stream"] == f"orders:{UPTOWN}" and other_stream["seq"] == 1


@pytest.mark.django_db
def test_published_event_is_in_the_stream_history(world: Any) -> None:
    post_event(world["john"], {**ORDER_CREATED, "data": {"n": 1}})
    response = api_as(world["sarah"]).get(f"/v1/streams/orders:{DOWNTOWN}/events", {"after": 0})
    assert response.status_code == 200
    body = response.json()
    assert body["last_seq"] == 1 and body["complete"] is True
    assert [(e["seq"], e["event"], e["data"]) for e in body["events"]] == [(1, "order.created", {"n": 1})]
    assert api_as(world["sarah"]).get(f"/v1/streams/orders:{UPTOWN}/events").status_code == 403


@pytest.mark.django_db(transaction=True)
async def test_rest_publish_reaches_websocket_subscribers(world: Any, token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        reply = await client.subscribe("orders", {"location_id": DOWNTOWN, "statuses": ["open"]})
        response = await sync_to_async(post_event)(world["john"], {**ORDER_CREATED, "data": {"status": "open"}})
        assert response.status_code == 202
        event = await client.recv()
        assert event["subscription_id"] == reply["subscription_id"]
        assert (event["event_id"], event["seq"]) == (response.json()["event_id"], response.json()["seq"])
        assert event["data"] == {"status": "open"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({**ORDER_CREATED, "channel": "invalid"}, "channel_not_found", "Channel 'invalid' does not exist"),
        ({**ORDER_CREATED, "event": "table.seated"}, "invalid_params", "Invalid event 'table.seated' for channel"),
        ({"channel": "orders", "event": "order.created"}, "invalid_params", "Missing required parameter: location_id"),
        (
            {"channel": "orders", "event": "order.created", "user_id": "user-sarah"},
            "invalid_params",
            "Channel 'orders' events take location_id, not user_id",
        ),
        (
            {"channel": "notifications", "event": "notification.alert", "location_id": DOWNTOWN},
            "invalid_params",
            "Channel 'notifications' events take user_id, not location_id",
        ),
        ({**ORDER_CREATED, "location_id": "loc-xyz789\n"}, "invalid_params", "Invalid parameter location_id"),
        ({**ORDER_CREATED, "location_id": "loc xyz"}, "invalid_params", "Invalid parameter location_id"),
        ({**ORDER_CREATED, "data": [1, 2]}, "invalid_params", "Invalid parameter data"),
        ({**ORDER_CREATED, "extra": 1}, "invalid_params", "Unknown parameter: extra"),
        ({"event": "order.created", "location_id": DOWNTOWN}, "invalid_params", "Missing required parameter: channel"),
        ([ORDER_CREATED], "invalid_params", ""),
    ],
)
def test_publish_bad_requests(world: Any, body: Any, code: str, message: str) -> None:
    response = post_event(world["john"], body)
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == code
    assert response.json()["message"].startswith(message), response.json()


@pytest.mark.django_db
def test_publish_body_that_is_not_json(world: Any) -> None:
    response = api_as(world["john"]).post("/v1/events", "{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_message"


@pytest.mark.django_db
@pytest.mark.parametrize("username", ["sarah", "kim"])
def test_publish_without_events_publish_is_forbidden(world: Any, username: str) -> None:
    response = post_event(world[username], ORDER_CREATED)
    assert response.status_code == 403
    assert response.json() == {
        "code": "forbidden",
        "message": f"Not allowed to publish to orders:{DOWNTOWN}",
        "required_permission": "events.publish",
    }


@pytest.mark.django_db
def test_publish_to_another_organization_or_unknown_location_is_forbidden(world: Any) -> None:
    other = post_event(world["john"], {**ORDER_CREATED, "location_id": MAIN_STREET})
    missing = post_event(world["john"], {**ORDER_CREATED, "location_id": "loc-nowhere"})
    assert other.status_code == missing.status_code == 403
    assert other.json()["code"] == missing.json()["code"] == "forbidden"
    assert post_event(world["olga"], ORDER_CREATED).status_code == 403
    assert post_event(world["olga"], {**ORDER_CREATED, "location_id": MAIN_STREET}).status_code == 202


@pytest.mark.django_db
def test_superuser_may_publish_anywhere(world: Any) -> None:
    for location in (DOWNTOWN, MAIN_STREET):
        assert post_event(world["admin"], {**ORDER_CREATED, "location_id": location}).status_code == 202


@pytest.mark.django_db
def test_publish_unauthenticated(world: Any) -> None:
    for client in (
        api_as(None),
        APIClient(HTTP_AUTHORIZATION="Bearer not-a-jwt"),
        APIClient(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(world['john'])}"),
    ):
        response = client.post("/v1/events", ORDER_CREATED, format="json")
        assert response.status_code == 401
        assert response.json()["code"] == "unauthenticated"


@pytest.mark.django_db
def test_publish_as_inactive_user_is_unauthenticated(world: Any) -> None:
    john = world["john"]
    client = api_as(john)
    john.is_active = False
    john.save()
    response = client.post("/v1/events", ORDER_CREATED, format="json")
    assert response.status_code == 401 and response.json()["code"] == "unauthenticated"


# --- Notification publish rules -----------------------------------------------------------------------------------


def notify(user_id: str) -> dict[str, Any]:
    return {"channel": "notifications", "event": "notification.alert", "user_id": user_id, "data": {"text": "hi"}}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("publisher", "target", "status"),
    [
        ("john", "user-sarah", 202),  # a member of a location where john may publish
        ("john", "user-kim", 202),
        ("john", "user-john", 202),
        ("john", "user-olga", 403),  # another organization's user
        ("olga", "user-sarah", 403),
        ("john", "user-nobody", 403),  # an unknown user looks like a forbidden one
        ("sarah", "user-sarah", 403),  # no events.publish anywhere
        ("admin", "user-olga", 202),
    ],
)
def test_notification_publish_rules(world: Any, publisher: str, target: str, status: int) -> None:
    response = post_event(world[publisher], notify(target))
    assert response.status_code == status, response.json()
    if status == 202:
        assert response.json()["stream"] == f"notifications:{target}"
    else:
        assert response.json()["code"] == "forbidden"


@pytest.mark.django_db
def test_notification_to_an_inactive_user_is_forbidden(world: Any) -> None:
    sarah = world["sarah"]
    sarah.is_active = False
    sarah.save()
    assert post_event(world["john"], notify("user-sarah")).status_code == 403


@pytest.mark.django_db(transaction=True)
async def test_rest_notification_reaches_only_its_user(world: Any, token_for: Any) -> None:
    async with open_client(token_for("sarah")) as sarah, open_client(token_for("john")) as john:
        sarah_sub = (await sarah.subscribe("notifications", {}))["subscription_id"]
        await john.subscribe("notifications", {})
        response = await sync_to_async(post_event)(world["john"], notify("user-sarah"))
        assert response.status_code == 202
        event = await sarah.recv()
        assert event["subscription_id"] == sarah_sub and event["user_id"] == "user-sarah"
        assert event["data"] == {"text": "hi"}
        assert await john.nothing(0.05)


# --- The Python publish API ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (("invalid", "order.created"), {"location_id": DOWNTOWN}, ChannelNotFound, "Channel 'invalid' does not exist"),
        (("orders", "order.teleported"), {"location_id": DOWNTOWN}, InvalidParams, "Invalid event 'order.teleported'"),
        (("orders", "kds.ticket.created"), {"location_id": DOWNTOWN}, InvalidParams, "Invalid event"),
        (("orders", "order.created"), {}, InvalidParams, "Missing required parameter: location_id"),
        (
            ("orders", "order.created"),
            {"location_id": DOWNTOWN, "user_id": "user-x"},
            InvalidParams,
            "Channel 'orders' events take location_id, not user_id",
        ),
        (("notifications", "notification.alert"), {}, InvalidParams, "Missing required parameter: user_id"),
        (("notifications", "notification.alert"), {"location_id": DOWNTOWN}, InvalidParams, "Channel"),
        (("orders", "order.created"), {"location_id": "loc-1\n"}, InvalidParams, "Invalid parameter location_id"),
        (("orders", "order.created"), {"location_id": "../x"}, InvalidParams, "Invalid parameter location_id"),
        (("orders", "order.created"), {"location_id": 5}, InvalidParams, "Invalid parameter location_id"),
        (
            ("orders", "order.created"),
            {"location_id": DOWNTOWN, "data": [1]},
            InvalidParams,
            "Invalid parameter data: must be a JSON object",
        ),
        (
            ("orders", "order.created"),
            {"location_id": DOWNTOWN, "data": {"x": float("nan")}},
            InvalidParams,
            "Invalid parameter data: not JSON-serializable",
        ),
        (
            ("orders", "order.created"),
            {"location_id": DOWNTOWN, "data": {"x": object()}},
            InvalidParams,
            "Invalid parameter data: not JSON-serializable",
        ),
        (
            ("orders", "order.created"),
            {"location_id": DOWNTOWN, "data": {"x": "y" * MAX_EVENT_DATA_BYTES}},
            InvalidParams,
            "Invalid parameter data: larger than",
        ),
    ],
)
async def test_apublish_validates(args: tuple[str, str], kwargs: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error) as caught:
        await apublish(*args, **kwargs)
    assert caught.value.message.startswith(message), caught.value.message


async def test_apublish_returns_its_position() -> None:
    first = await apublish("voice", "voice.session_started", location_id=DOWNTOWN, data={"lane": 1})
    second = await apublish("voice", "voice.order_completed", location_id=DOWNTOWN)
    assert isinstance(first, PublishedEvent)
    assert (first.stream, first.seq, second.seq) == (f"voice:{DOWNTOWN}", 1, 2)
    assert first.epoch == second.epoch and first.event_id != second.event_id


def test_sync_publish_from_sync_code() -> None:
    published = publish("tables", "table.seated", location_id=DOWNTOWN, data={"status": "seated"})
    assert published.stream == f"tables:{DOWNTOWN}" and published.seq == 1


async def test_sync_publish_from_async_code_is_refused() -> None:
    with pytest.raises(RuntimeError, match="apublish"):
        publish("tables", "table.seated", location_id=DOWNTOWN)


@pytest.mark.django_db
def test_publish_on_commit_validates_at_the_call_site() -> None:
    with transaction.atomic():
        with pytest.raises(ChannelNotFound):
            publish_on_commit("invalid", "order.created", location_id=DOWNTOWN)
        with pytest.raises(InvalidParams):
            publish_on_commit("orders", "order.teleported", location_id=DOWNTOWN)
        assert transaction.get_connection().run_on_commit == []


# --- Read-only endpoints ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_channels_endpoint_lists_the_registry(world: Any) -> None:
    from realtime.registry import CHANNELS

    response = api_as(world["sarah"]).get("/v1/channels")
    assert response.status_code == 200
    channels = response.json()["channels"]
    assert [c["name"] for c in channels] == [spec.name for spec in CHANNELS]
    orders = channels[0]
    assert orders["permission"] == "orders.read" and orders["scope"] == "location"
    assert orders["events"][0] == "order.created" and "statuses" in orders["params"]["properties"]
    assert api_as(None).get("/v1/channels").status_code == 401


@pytest.mark.django_db
def test_locations_endpoint_shows_what_the_user_may_see(world: Any) -> None:
    sarah = api_as(world["sarah"]).get("/v1/locations").json()["locations"]
    assert sarah == [
        {
            "id": DOWNTOWN,
            "name": "Downtown",
            "organization": "Demo Bistro Group",
            "time_zone": "America/New_York",
            "permissions": ["notifications.read", "orders.read", "tables.read"],
        }
    ]
    john = api_as(world["john"]).get("/v1/locations").json()["locations"]
    assert sorted(loc["id"] for loc in john) == [UPTOWN, DOWNTOWN]
    olga = api_as(world["olga"]).get("/v1/locations").json()["locations"]
    assert [loc["id"] for loc in olga] == [MAIN_STREET]


@pytest.mark.django_db
def test_healthz(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "channel_layer": "ok"}
