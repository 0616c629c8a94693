"""The wire protocol through the real ASGI application: every message type, every error code, delivery and isolation."""

from __future__ import annotations

import re
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from accounts.models import Membership, User
from realtime.publishing import apublish
from tests.support.asgi import Client, open_client

pytestmark = pytest.mark.django_db(transaction=True)

LOCATION = "loc-xyz789"
UPTOWN = "loc-abc456"
OTHER_ORG_LOCATION = "loc-other1"
SUB_ID = re.compile(r"^sub-[A-Za-z0-9_-]+$")
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture(autouse=True)
def fast_password_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


async def publish_order(location: str = LOCATION, event: str = "order.created", **data: Any) -> None:
    await apublish("orders", event, location_id=location, data=data)


async def subscribed(client: Client, channel: str, params: dict[str, Any], request_id: str = "req") -> str:
    reply = await client.subscribe(channel, params, request_id)
    assert reply["type"] == "response" and reply["success"] is True, reply
    return reply["subscription_id"]  # type: ignore[no-any-return]


async def assert_closed_with(client: Client, code: int) -> None:
    output = await client.ws.receive_output(timeout=1)
    assert output == {"type": "websocket.close", "code": code}


# --- subscribe / unsubscribe / list / ping ------------------------------------------------------------------------


async def test_subscribe_response_is_the_seeds_shape(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        reply = await client.request(
            {"type": "subscribe", "id": "req-001", "channel": "orders", "params": {"location_id": LOCATION}}
        )
    assert list(reply) == ["type", "id", "success", "subscription_id", "channel", "params"]
    assert reply["type"] == "response" and reply["id"] == "req-001" and reply["success"] is True
    assert SUB_ID.match(reply["subscription_id"])
    assert reply["channel"] == "orders"
    assert reply["params"] == {"location_id": LOCATION}


async def test_subscribe_echoes_normalized_params_and_integer_ids(token_for: Any) -> None:
    async with open_client(token_for("john")) as client:
        reply = await client.request(
            {
                "type": "subscribe",
                "id": 42,
                "channel": "orders",
                "params": {
                    "location_ids": [LOCATION, UPTOWN, LOCATION],
                    "statuses": ["open", "open"],
                    "types": ["takeout"],
                },
            }
        )
    assert reply["id"] == 42
    assert reply["params"] == {"location_ids": [LOCATION, UPTOWN], "statuses": ["open"], "types": ["takeout"]}


async def test_subscribe_without_id_answers_without_id(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        reply = await client.request({"type": "subscribe", "channel": "tables", "params": {"location_id": LOCATION}})
    assert "id" not in reply and reply["success"] is True


async def test_unsubscribe_is_the_seeds_shape_and_stops_delivery(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        sub = await subscribed(client, "orders", {"location_id": LOCATION})
        reply = await client.request({"type": "unsubscribe", "subscription_id": sub})
        assert reply == {
            "type": "response",
            "success": True,
            "subscription_id": sub,
            "message": "Unsubscribed successfully",
        }
        await publish_order()
        assert await client.nothing(0.05)


async def test_unsubscribe_echoes_the_request_id(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        sub = await subscribed(client, "orders", {"location_id": LOCATION})
        reply = await client.request({"type": "unsubscribe", "id": "u1", "subscription_id": sub})
    assert reply["id"] == "u1" and reply["message"] == "Unsubscribed successfully"


async def test_unsubscribe_unknown_subscription(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        reply = await client.request({"type": "unsubscribe", "id": "u1", "subscription_id": "sub-nope"})
        assert reply == {
            "type": "error",
            "id": "u1",
            "code": "subscription_not_found",
            "message": "Subscription 'sub-nope' does not exist",
            "subscription_id": "sub-nope",
        }
        sub = await subscribed(client, "orders", {"location_id": LOCATION})
        await client.request({"type": "unsubscribe", "subscription_id": sub})
        again = await client.request({"type": "unsubscribe", "subscription_id": sub})
        assert again["code"] == "subscription_not_found"


async def test_unsubscribing_one_of_two_subscriptions_on_a_stream_keeps_the_other(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        first = await subscribed(client, "orders", {"location_id": LOCATION})
        second = await subscribed(client, "orders", {"location_id": LOCATION, "statuses": ["open"]})
        await client.request({"type": "unsubscribe", "subscription_id": first})
        await publish_order(status="open")
        event = await client.recv()
        assert event["subscription_id"] == second
        assert await client.nothing(0.05)


async def test_unsubscribe_all(token_for: Any) -> None:
    async with open_client(token_for("john")) as client:
        await subscribed(client, "orders", {"location_id": LOCATION})
        await subscribed(client, "kds", {"location_id": LOCATION})
        await subscribed(client, "orders", {"location_ids": [LOCATION, UPTOWN]})
        reply = await client.request({"type": "unsubscribe_all", "id": "all"})
        assert reply == {"type": "response", "id": "all", "success": True, "unsubscribed": 3}
        listing = await client.request({"type": "list_subscriptions"})
        assert listing == {"type": "subscriptions_list", "subscriptions": []}
        await publish_order()
        await publish_order(UPTOWN)
        assert await client.nothing(0.05)
        empty = await client.request({"type": "unsubscribe_all"})
        assert empty == {"type": "response", "success": True, "unsubscribed": 0}


async def test_list_subscriptions_in_creation_order(token_for: Any) -> None:
    async with open_client(token_for("john")) as client:
        orders = await subscribed(client, "orders", {"location_id": LOCATION})
        kds = await subscribed(client, "kds", {"location_id": LOCATION, "station": "grill"})
        notes = await subscribed(client, "notifications", {})
        reply = await client.request({"type": "list_subscriptions", "id": "l1"})
    assert reply["type"] == "subscriptions_list" and reply["id"] == "l1"
    subs = reply["subscriptions"]
    assert [(s["id"], s["channel"], s["params"]) for s in subs] == [
        (orders, "orders", {"location_id": LOCATION}),
        (kds, "kds", {"location_id": LOCATION, "station": "grill"}),
        (notes, "notifications", {"user_id": "user-john"}),
    ]
    assert all(set(s) == {"id", "channel", "params", "created_at"} and ISO_Z.match(s["created_at"]) for s in subs)
    assert [s["created_at"] for s in subs] == sorted(s["created_at"] for s in subs)


async def test_ping_pong(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        reply = await client.request({"type": "ping", "id": "p1"})
        assert set(reply) == {"type", "id", "server_time"}
        assert reply["type"] == "pong" and reply["id"] == "p1" and ISO_Z.match(reply["server_time"])
        bare = await client.request({"type": "ping"})
        assert bare["type"] == "pong" and "id" not in bare


# --- subscribe errors ---------------------------------------------------------------------------------------------


async def test_channel_not_found(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        reply = await client.subscribe("invalid", {"location_id": LOCATION}, "req-001")
    assert reply == {
        "type": "error",
        "id": "req-001",
        "code": "channel_not_found",
        "message": "Channel 'invalid' does not exist",
    }


async def test_unauthorized_names_the_channel_and_permission(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        reply = await client.subscribe("kds", {"location_id": LOCATION}, "req-001")
    assert reply == {
        "type": "error",
        "id": "req-001",
        "code": "unauthorized",
        "message": "Not authorized to subscribe to this channel",
        "channel": "kds",
        "required_permission": "kds.read",
    }


async def test_missing_location_id(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        reply = await client.subscribe("orders", {}, "req-001")
    assert reply == {
        "type": "error",
        "id": "req-001",
        "code": "invalid_params",
        "message": "Missing required parameter: location_id",
        "channel": "orders",
    }


@pytest.mark.parametrize(
    ("channel", "params", "message"),
    [
        ("orders", {"location_id": LOCATION, "statues": ["open"]}, "Unknown parameter: statues"),
        ("orders", {"location_id": LOCATION, "statuses": ["opened"]}, "Invalid value for parameter statuses.0"),
        ("orders", {"location_id": LOCATION, "types": ["eat_in"]}, "Invalid value for parameter types.0"),
        (
            "orders",
            {"location_id": LOCATION, "events": ["table.seated"]},
            "Invalid value for parameter events: 'table.seated' is not an event of channel 'orders'",
        ),
        (
            "orders",
            {"location_id": LOCATION, "location_ids": [LOCATION]},
            "Give either location_id or location_ids, not both",
        ),
        ("orders", {"location_ids": []}, "Invalid parameter location_ids"),
        ("voice", {"location_id": LOCATION, "lane": 0}, "Invalid parameter lane"),
        ("voice", {"location_id": LOCATION, "lane": -3}, "Invalid parameter lane"),
        ("voice", {"location_id": LOCATION, "lane": True}, "Invalid parameter lane"),
        ("voice", {"location_id": LOCATION, "lane": "1"}, "Invalid parameter lane"),
        ("inventory", {"location_id": LOCATION, "alert_types": ["restock"]}, "Invalid value for parameter"),
        ("tables", {"location_id": "loc xyz"}, "Invalid parameter location_id"),
    ],
)
async def test_invalid_params(token_for: Any, channel: str, params: dict[str, Any], message: str) -> None:
    async with open_client(token_for("john")) as client:
        reply = await client.subscribe(channel, params, "req-001")
        assert reply["type"] == "error" and reply["id"] == "req-001", reply
        assert reply["code"] == "invalid_params" and reply["channel"] == channel
        assert reply["message"].startswith(message), reply["message"]
        assert (await client.request({"type": "list_subscriptions"}))["subscriptions"] == []


async def test_subscription_limit(token_for: Any, settings: Any) -> None:
    settings.REALTIME = {"MAX_SUBSCRIPTIONS": 2}
    async with open_client(token_for("john")) as client:
        assert client.connected is not None and client.connected["limits"]["max_subscriptions"] == 2
        await subscribed(client, "orders", {"location_id": LOCATION})
        kept = await subscribed(client, "tables", {"location_id": LOCATION})
        reply = await client.subscribe("kds", {"location_id": LOCATION}, "req-001")
        assert reply == {
            "type": "error",
            "id": "req-001",
            "code": "subscription_limit",
            "message": "Maximum subscriptions reached",
            "current": 2,
            "limit": 2,
        }
        # Room again after an unsubscribe.
        await client.request({"type": "unsubscribe", "subscription_id": kept})
        await subscribed(client, "kds", {"location_id": LOCATION})


async def test_subscription_limit_is_checked_before_authorization(token_for: Any, settings: Any) -> None:
    settings.REALTIME = {"MAX_SUBSCRIPTIONS": 1}
    async with open_client(token_for("sarah")) as client:
        await subscribed(client, "orders", {"location_id": LOCATION})
        reply = await client.subscribe("orders", {"location_id": UPTOWN})
    assert reply["code"] == "subscription_limit"


# --- malformed messages -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "code", "text"),
    [
        ("{not json", "invalid_message", "Message is not valid JSON"),
        ("[1, 2, 3]", "invalid_message", "Message must be a JSON object"),
        ('{"id": "r1"}', "invalid_message", "Missing required field: type"),
        (
            '{"type": "subscribe", "id": "r1", "channel": 5}',
            "invalid_message",
            "Invalid field channel: input should be a valid string",
        ),
        ('{"type": "ping", "id": "r1", "extra": true}', "invalid_message", "Unknown field: extra"),
        (
            '{"type": "subscribe", "id": "r1", "channel": "orders", "params": "loc-xyz789"}',
            "invalid_message",
            "Invalid field params: input should be a valid dictionary",
        ),
        ('{"type": "teleport", "id": "r1"}', "unknown_type", "Unknown message type 'teleport'"),
    ],
)
async def test_malformed_messages_are_answered(token_for: Any, message: str, code: str, text: str) -> None:
    async with open_client(token_for("sarah")) as client:
        reply = await client.request(message)
        expected: dict[str, Any] = {"type": "error", "code": code, "message": text}
        if '"id": "r1"' in message:
            expected["id"] = "r1"
        assert reply == expected


async def test_binary_frames_are_refused(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        await client.ws.send_to(bytes_data=b'{"type": "ping"}')
        reply = await client.recv()
        assert reply["code"] == "invalid_message" and "Binary frames" in reply["message"]
        assert (await client.request({"type": "ping"}))["type"] == "pong"


async def test_bad_messages_never_close_the_connection_or_break_subscriptions(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        sub = await subscribed(client, "orders", {"location_id": LOCATION})
        bad: list[dict[str, Any] | str] = [
            "garbage",
            "[]",
            "{}",
            '{"type": 7}',
            {"type": "nope"},
            {"type": "ping", "x": 1},
            {"type": "subscribe", "channel": "invalid"},
            {"type": "subscribe", "channel": "orders", "params": {}},
            {"type": "subscribe", "channel": "kds", "params": {"location_id": LOCATION}},
            {"type": "subscribe", "channel": "orders", "params": {"location_id": UPTOWN}},
            {"type": "unsubscribe", "subscription_id": "sub-nope"},
        ]
        for message in bad:
            reply = await client.request(message)
            assert reply["type"] == "error", (message, reply)
        await publish_order(status="open")
        event = await client.recv()
        assert event["type"] == "event" and event["subscription_id"] == sub
        assert (await client.request({"type": "ping"}))["type"] == "pong"


async def test_rate_limit(token_for: Any, settings: Any) -> None:
    settings.REALTIME = {"RATE_LIMIT_BURST": 2, "RATE_LIMIT_PER_SECOND": 0.001}
    async with open_client(token_for("sarah")) as client:
        assert (await client.request({"type": "ping"}))["type"] == "pong"
        assert (await client.request({"type": "ping"}))["type"] == "pong"
        reply = await client.request({"type": "ping", "id": "p3"})
        assert reply["type"] == "error" and reply["code"] == "rate_limited"
        assert reply["retry_after_ms"] > 0


async def test_oversized_message_closes_with_1009(token_for: Any, settings: Any) -> None:
    settings.REALTIME = {"MAX_MESSAGE_BYTES": 100}
    async with open_client(token_for("sarah")) as client:
        await client.send({"type": "ping", "id": "x" * 120})
        await assert_closed_with(client, 1009)


# --- delivery -----------------------------------------------------------------------------------------------------


async def test_event_frame_shape(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        sub = await subscribed(client, "orders", {"location_id": LOCATION})
        published = await apublish("orders", "order.created", location_id=LOCATION, data={"order_id": "ord-1"})
        event = await client.recv()
    assert event == {
        "type": "event",
        "subscription_id": sub,
        "channel": "orders",
        "event": "order.created",
        "event_id": published.event_id,
        "stream": f"orders:{LOCATION}",
        "epoch": published.epoch,
        "seq": published.seq,
        "location_id": LOCATION,
        "timestamp": event["timestamp"],
        "data": {"order_id": "ord-1"},
    }
    assert ISO_Z.match(event["timestamp"])


async def test_multi_location_subscription_receives_both_locations(token_for: Any) -> None:
    async with open_client(token_for("john")) as client:
        sub = await subscribed(client, "orders", {"location_ids": [LOCATION, UPTOWN]})
        await publish_order(LOCATION, n=1)
        await publish_order(UPTOWN, n=2)
        first, second = await client.recv(), await client.recv()
        assert {(first["location_id"], first["data"]["n"]), (second["location_id"], second["data"]["n"])} == {
            (LOCATION, 1),
            (UPTOWN, 2),
        }
        assert first["subscription_id"] == second["subscription_id"] == sub
        assert await client.nothing(0.05)


async def test_two_subscriptions_each_get_the_event_once(token_for: Any) -> None:
    async with open_client(token_for("john")) as client:
        wide = await subscribed(client, "orders", {"location_id": LOCATION})
        narrow = await subscribed(client, "orders", {"location_ids": [LOCATION, UPTOWN], "statuses": ["open"]})
        await publish_order(status="open")
        frames = [await client.recv(), await client.recv()]
        assert sorted(f["subscription_id"] for f in frames) == sorted([wide, narrow])
        assert frames[0]["event_id"] == frames[1]["event_id"]
        assert await client.nothing(0.05)
        await publish_order(status="paid")  # only the unfiltered one
        assert (await client.recv())["subscription_id"] == wide
        assert await client.nothing(0.05)


async def test_each_connection_receives_only_its_own_subscriptions(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as sarah, open_client(token_for("john")) as john:
        sarah_sub = await subscribed(sarah, "orders", {"location_id": LOCATION})
        john_sub = await subscribed(john, "orders", {"location_id": UPTOWN})
        await publish_order(LOCATION)
        await publish_order(UPTOWN)
        assert (await sarah.recv())["subscription_id"] == sarah_sub
        assert (await john.recv())["subscription_id"] == john_sub
        assert await sarah.nothing(0.05) and await john.nothing(0.01)


# --- notifications ------------------------------------------------------------------------------------------------


async def test_notifications_default_to_own_user(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        reply = await client.subscribe("notifications", {})
        assert reply["params"] == {"user_id": "user-sarah"}
        await apublish("notifications", "notification.alert", user_id="user-john", data={"to": "john"})
        await apublish("notifications", "notification.message", user_id="user-sarah", data={"to": "sarah"})
        event = await client.recv()
        assert event["event"] == "notification.message" and event["data"] == {"to": "sarah"}
        assert event["user_id"] == "user-sarah" and "location_id" not in event
        assert await client.nothing(0.05)


async def test_notifications_own_user_id_explicitly(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        reply = await client.subscribe("notifications", {"user_id": "user-sarah"})
    assert reply["success"] is True


async def test_notifications_of_another_user_are_refused(token_for: Any) -> None:
    async with open_client(token_for("john")) as client:
        reply = await client.subscribe("notifications", {"user_id": "user-sarah"}, "n1")
    assert reply == {
        "type": "error",
        "id": "n1",
        "code": "unauthorized",
        "message": "Not authorized to subscribe to this channel",
        "channel": "notifications",
        "required_permission": "notifications.read",
    }


async def test_notifications_need_the_permission_even_for_oneself(token_for: Any) -> None:
    async with open_client(token_for("kim")) as client:  # the kitchen role has no notifications.read
        reply = await client.subscribe("notifications", {})
    assert reply["code"] == "unauthorized"


async def test_superuser_may_read_anyones_notifications(token_for: Any) -> None:
    async with open_client(token_for("admin")) as client:
        sub = await subscribed(client, "notifications", {"user_id": "user-sarah"})
        await apublish("notifications", "notification.alert", user_id="user-sarah", data={})
        assert (await client.recv())["subscription_id"] == sub


# --- tenant isolation ---------------------------------------------------------------------------------------------


async def test_other_organization_never_receives_demo_events(token_for: Any) -> None:
    async with open_client(token_for("olga")) as olga:
        for channel in ("orders", "tables", "kds"):
            refused = await olga.subscribe(channel, {"location_id": LOCATION})
            assert refused["code"] == "unauthorized"
        refused = await olga.subscribe("orders", {"location_ids": [OTHER_ORG_LOCATION, UPTOWN]})
        assert refused["code"] == "unauthorized"
        own = await subscribed(olga, "orders", {"location_id": OTHER_ORG_LOCATION})
        await publish_order(LOCATION)
        await publish_order(UPTOWN)
        await publish_order(OTHER_ORG_LOCATION, n="mine")
        event = await olga.recv()
        assert event["subscription_id"] == own and event["data"] == {"n": "mine"}
        assert await olga.nothing(0.05)


async def test_location_member_never_receives_other_location_events(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as sarah:
        refused = await sarah.subscribe("orders", {"location_id": UPTOWN})
        assert refused["code"] == "unauthorized" and refused["required_permission"] == "orders.read"
        sub = await subscribed(sarah, "orders", {"location_id": LOCATION})
        await publish_order(UPTOWN, n="uptown")
        await publish_order(LOCATION, n="downtown")
        event = await sarah.recv()
        assert event["subscription_id"] == sub and event["data"] == {"n": "downtown"}
        assert await sarah.nothing(0.05)


async def test_mixing_allowed_and_forbidden_locations_refuses_the_whole_subscribe(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as sarah:
        reply = await sarah.subscribe("orders", {"location_ids": [LOCATION, UPTOWN]}, "mix")
        assert reply["type"] == "error" and reply["code"] == "unauthorized" and reply["id"] == "mix"
        assert (await sarah.request({"type": "list_subscriptions"}))["subscriptions"] == []
        await publish_order(LOCATION)
        assert await sarah.nothing(0.05)


async def test_nonexistent_location_looks_like_a_forbidden_one(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as sarah:
        forbidden = await sarah.subscribe("orders", {"location_id": UPTOWN}, "r")
        missing = await sarah.subscribe("orders", {"location_id": "loc-does-not-exist"}, "r")
        mixed = await sarah.subscribe("orders", {"location_ids": [LOCATION, "loc-does-not-exist"]}, "r")
    assert forbidden == missing == mixed


async def test_inactive_location_looks_like_a_nonexistent_one(token_for: Any) -> None:
    from locations.models import Location

    await Location.objects.filter(public_id=LOCATION).aupdate(is_active=False)
    async with open_client(token_for("sarah")) as sarah:
        reply = await sarah.subscribe("orders", {"location_id": LOCATION})
    assert reply["code"] == "unauthorized"


async def test_superuser_may_subscribe_anywhere(token_for: Any) -> None:
    async with open_client(token_for("admin")) as client:
        await subscribed(client, "orders", {"location_ids": [LOCATION, UPTOWN, OTHER_ORG_LOCATION]})
        await subscribed(client, "voice", {"location_id": OTHER_ORG_LOCATION, "lane": 2})


# --- access changes -----------------------------------------------------------------------------------------------


async def test_role_change_applies_to_the_next_subscribe(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        await subscribed(client, "orders", {"location_id": LOCATION})
        await Membership.objects.filter(user__username="sarah").adelete()
        reply = await client.subscribe("tables", {"location_id": LOCATION})
        assert reply["type"] in {"error", "subscription_revoked"}, reply
        if reply["type"] == "subscription_revoked":  # the live re-check may answer first
            reply = await client.recv()
        assert reply["code"] == "unauthorized"


async def test_removed_membership_revokes_live_subscriptions(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        sub = await subscribed(client, "orders", {"location_id": LOCATION})
        await sync_to_async(Membership.objects.filter(user__username="sarah").delete)()
        revoked = await client.recv()
        assert revoked == {
            "type": "subscription_revoked",
            "subscription_id": sub,
            "channel": "orders",
            "reason": "permission_removed",
        }
        await publish_order()
        assert await client.nothing(0.05)
        assert (await client.request({"type": "list_subscriptions"}))["subscriptions"] == []


async def test_deactivated_user_is_disconnected(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        await subscribed(client, "orders", {"location_id": LOCATION})

        def deactivate() -> None:
            user = User.objects.get(username="sarah")
            user.is_active = False
            user.save()

        await sync_to_async(deactivate)()
        error = await client.recv()
        assert error["type"] == "error" and error["code"] == "unauthenticated"
        await assert_closed_with(client, 4401)
