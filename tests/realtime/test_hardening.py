"""Hostile input, limits at their edges, token expiry with in-band refresh, and revocation, in one process."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from django.test import Client as DjangoClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import Membership, Role, User
from realtime.publishing import apublish
from tests.support.asgi import open_client

pytestmark = pytest.mark.django_db(transaction=True)
AT = {"location_id": "loc-xyz789"}


async def closed_with(client: Any, code: int, timeout: float = 3) -> bool:
    """Read frames until the close; True if it carries ``code``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        output = await client.ws.receive_output(timeout=max(0.01, deadline - loop.time()))
        if output["type"] == "websocket.close":
            return output.get("code") == code
    return False


async def test_a_message_over_the_size_limit_closes_with_1009(token_for, settings):
    settings.REALTIME = {"MAX_MESSAGE_BYTES": 1024}
    async with open_client(token_for("sarah")) as client:
        ok = await client.request({"type": "ping", "id": "x" * 100, "pad": ""})
        assert ok["code"] == "invalid_message"  # under the limit: an answer, not a close
        await client.send(json.dumps({"type": "ping", "pad": "é" * 600}))  # 1,200 bytes in UTF-8
        assert await closed_with(client, 1009)


async def test_rate_limit_answers_then_closes_sustained_abuse(token_for, settings):
    settings.REALTIME = {"RATE_LIMIT_PER_SECOND": 1, "RATE_LIMIT_BURST": 5, "RATE_LIMIT_MAX_VIOLATIONS": 3}
    async with open_client(token_for("sarah")) as client:
        for n in range(5):
            assert (await client.request({"type": "ping", "id": n}))["type"] == "pong"
        limited = await client.request({"type": "ping", "id": "over"})
        assert limited["code"] == "rate_limited" and 0 < limited["retry_after_ms"] <= 1000
        for _ in range(3):
            await client.send({"type": "ping"})
        assert await closed_with(client, 1008)


async def test_connections_per_user_are_limited(token_for, settings):
    settings.REALTIME = {"MAX_CONNECTIONS_PER_USER": 2}
    token = token_for("sarah")
    async with open_client(token), open_client(token), open_client(token, expect_connected=False) as third:
        error = await third.recv()
        assert error["code"] == "connection_limit" and error["limit"] == 2
        assert await closed_with(third, 4429)
    async with open_client(token) as again:  # closed connections stop counting
        assert again.connected is not None


async def test_origin_allowlist_applies_to_browsers_only(token_for, settings):
    settings.REALTIME = {"ALLOWED_ORIGINS": ["https://pos.example.com"]}
    token = token_for("sarah")
    async with open_client(token, headers=[(b"origin", b"https://pos.example.com")]) as allowed:
        assert allowed.connected is not None
    async with open_client(token):  # no Origin header: a server or mobile client, judged by its token
        pass
    async with open_client(token, headers=[(b"origin", b"https://evil.example")], expect_connected=False) as bad:
        assert (await bad.recv())["code"] == "forbidden"
        assert await closed_with(bad, 4403)


def short_lived_token(user: User, seconds: float) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=seconds))
    return str(token)


async def test_expired_token_warns_then_closes_with_4401(world, settings):
    settings.REALTIME = {"TOKEN_EXPIRY_GRACE_SECONDS": 0.3}
    async with open_client(short_lived_token(world["sarah"], 1)) as client:
        await client.subscribe("orders", AT)
        warning = await client.recv(timeout=3)
        assert warning == {"type": "error", "code": "token_expired", "message": warning["message"]}
        assert await closed_with(client, 4401)


async def test_in_band_refresh_keeps_the_connection(world, settings):
    settings.REALTIME = {"TOKEN_EXPIRY_GRACE_SECONDS": 0.3}
    async with open_client(short_lived_token(world["sarah"], 1)) as client:
        sub = (await client.subscribe("orders", AT))["subscription_id"]
        reply = await client.request(
            {"type": "authenticate", "id": "a", "token": short_lived_token(world["sarah"], 60)}
        )
        assert reply["success"] is True and reply["user_id"] == "user-sarah"
        assert await client.nothing(timeout=1.5)  # no expiry warning, no close
        await apublish("orders", "order.created", location_id="loc-xyz789", data={})
        assert (await client.recv())["subscription_id"] == sub


async def test_in_band_token_of_another_user_is_refused_and_closes(world):
    async with open_client(short_lived_token(world["sarah"], 60)) as client:
        reply = await client.request({"type": "authenticate", "token": short_lived_token(world["john"], 60)})
        assert reply["code"] == "unauthenticated"
        assert await closed_with(client, 4401)


async def revoked_or_event(client: Any) -> dict[str, Any]:
    return await client.recv(timeout=3)


async def test_removing_a_membership_revokes_live_subscriptions(world, token_for):
    async with open_client(token_for("sarah")) as client:
        sub = (await client.subscribe("orders", AT))["subscription_id"]
        await sync_to_async(Membership.objects.filter(user=world["sarah"]).delete)()
        revoked = await revoked_or_event(client)
        assert revoked == {
            "type": "subscription_revoked",
            "subscription_id": sub,
            "channel": "orders",
            "reason": "permission_removed",
        }
        await apublish("orders", "order.created", location_id="loc-xyz789", data={})
        assert await client.nothing()
        listing = await client.request({"type": "list_subscriptions"})
        assert listing["subscriptions"] == []


async def test_a_role_losing_a_permission_revokes_only_what_it_covered(world, token_for):
    async with open_client(token_for("sarah")) as client:
        orders = (await client.subscribe("orders", AT))["subscription_id"]
        tables = (await client.subscribe("tables", AT))["subscription_id"]
        server = await Role.objects.aget(name="server")
        perm = await server.permissions.aget(codename="orders.read")
        await sync_to_async(server.permissions.remove)(perm)
        revoked = await revoked_or_event(client)
        assert revoked["subscription_id"] == orders
        listing = await client.request({"type": "list_subscriptions"})
        assert [s["id"] for s in listing["subscriptions"]] == [tables]


async def test_deactivating_a_user_in_the_admin_closes_their_connections(world, token_for):
    admin_client = DjangoClient()
    await sync_to_async(admin_client.force_login)(world["admin"])
    async with open_client(token_for("sarah")) as client:
        await client.subscribe("orders", AT)
        sarah = world["sarah"]
        form = {
            "username": sarah.username,
            "public_id": sarah.public_id,
            "display_name": sarah.display_name,
            "is_active": "",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        }
        response = await sync_to_async(admin_client.post)(f"/admin/accounts/user/{sarah.pk}/change/", form)
        assert response.status_code == 302, response.content[:2000]
        error = await client.recv(timeout=3)
        assert error["code"] == "unauthenticated"
        assert await closed_with(client, 4401)


async def test_deleting_a_membership_in_the_admin_revokes(world, token_for):
    admin_client = DjangoClient()
    await sync_to_async(admin_client.force_login)(world["admin"])
    membership = await Membership.objects.aget(user=world["sarah"])
    async with open_client(token_for("sarah")) as client:
        sub = (await client.subscribe("tables", AT))["subscription_id"]
        response = await sync_to_async(admin_client.post)(
            f"/admin/accounts/membership/{membership.pk}/delete/", {"post": "yes"}
        )
        assert response.status_code == 302
        revoked = await revoked_or_event(client)
        assert revoked["type"] == "subscription_revoked" and revoked["subscription_id"] == sub


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
MESSAGE_TYPES = [
    "subscribe",
    "unsubscribe",
    "unsubscribe_all",
    "list_subscriptions",
    "ping",
    "presence_join",
    "presence_leave",
    "presence_list",
    "authenticate",
    "nope",
]
hostile_messages = st.one_of(
    json_values.map(json.dumps),
    st.text(max_size=200),
    st.fixed_dictionaries(
        {"type": st.sampled_from(MESSAGE_TYPES)},
        optional={
            "id": json_values,
            "channel": st.sampled_from(["orders", "kds", "x", ""]) | json_values,
            "params": json_values,
            "subscription_id": json_values,
            "user_info": json_values,
            "resume": json_values,
            "token": json_values,
        },
    ).map(json.dumps),
    st.integers(min_value=1, max_value=200).map(lambda depth: "[" * depth + "]" * depth),
)
DOCUMENTED_CODES = {
    "channel_not_found",
    "unauthorized",
    "invalid_params",
    "subscription_limit",
    "subscription_not_found",
    "invalid_message",
    "unknown_type",
    "unauthenticated",
}


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(messages=st.lists(hostile_messages, min_size=1, max_size=8))
def test_hostile_messages_get_documented_answers_and_never_break_delivery(world, messages):
    token = str(AccessToken.for_user(world["john"]))

    async def exercise() -> None:
        channel_layers.backends.clear()
        async with open_client(token) as client:
            sub = (await client.subscribe("orders", AT))["subscription_id"]
            for message in messages:
                await client.send(message)
                answer = await client.recv()
                assert answer["type"] in {
                    "error",
                    "response",
                    "pong",
                    "subscriptions_list",
                    "presence_list_response",
                    "presence",
                    "event",
                }, answer
                if answer["type"] == "error":
                    assert answer["code"] in DOCUMENTED_CODES, answer
                    assert answer["code"] != "unauthenticated" or json.loads(message).get("type") == "authenticate"
                    if answer["code"] == "unauthenticated":
                        return  # a bad in-band token ends the connection, by design
                while not await client.nothing(timeout=0.02):
                    await client.recv()  # e.g. presence events that follow a join
            listing = await client.request({"type": "list_subscriptions"})
            if any(s["id"] == sub for s in listing["subscriptions"]):
                await apublish("orders", "order.created", location_id="loc-xyz789", data={"probe": True})
                while True:
                    frame = await client.recv()
                    if frame["type"] == "event" and frame["subscription_id"] == sub:
                        assert frame["data"] == {"probe": True}
                        break

    asyncio.run(exercise())
