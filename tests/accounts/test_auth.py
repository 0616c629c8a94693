"""Authentication: the JWT endpoints, and the WebSocket handshake's three ways to carry a token."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta
from typing import Any

import jwt
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from locations.management.commands.seed_demo import DEMO_PASSWORD
from tests.support.asgi import Client, open_client

pytestmark = pytest.mark.django_db(transaction=True)

UNAUTHENTICATED_CLOSE = 4401


@pytest.fixture(autouse=True)
def fast_password_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# --- REST token endpoints -----------------------------------------------------------------------------------------


def test_token_obtain_with_good_password(world: Any) -> None:
    response = APIClient().post("/v1/auth/token", {"username": "sarah", "password": DEMO_PASSWORD}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access", "refresh"}
    access = AccessToken(body["access"])
    assert str(access["user_id"]) == str(world["sarah"].pk)
    assert access["token_type"] == "access"
    RefreshToken(body["refresh"])  # a valid refresh token


@pytest.mark.parametrize(
    "credentials",
    [{"username": "sarah", "password": "wrong"}, {"username": "nobody", "password": DEMO_PASSWORD}],
)
def test_token_obtain_refused(world: Any, credentials: dict[str, str]) -> None:
    response = APIClient().post("/v1/auth/token", credentials, format="json")
    assert response.status_code == 401
    assert response.json() == {
        "code": "unauthenticated",
        "message": "No active account found with the given credentials",
    }


def test_token_obtain_without_password_is_a_bad_request(world: Any) -> None:
    response = APIClient().post("/v1/auth/token", {"username": "sarah"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_message" and "password" in body["message"] and "access" not in body


def test_token_obtain_validation_message_is_a_sentence(world: Any) -> None:
    response = APIClient().post("/v1/auth/token", {"username": "sarah"}, format="json")
    message = response.json()["message"]
    assert "ErrorDetail" not in message and not message.startswith("{"), message


def test_token_obtain_refused_for_inactive_user(world: Any) -> None:
    sarah = world["sarah"]
    sarah.is_active = False
    sarah.save()
    response = APIClient().post("/v1/auth/token", {"username": "sarah", "password": DEMO_PASSWORD}, format="json")
    assert response.status_code == 401


def test_token_refresh(world: Any) -> None:
    refresh = RefreshToken.for_user(world["john"])
    response = APIClient().post("/v1/auth/token/refresh", {"refresh": str(refresh)}, format="json")
    assert response.status_code == 200
    assert AccessToken(response.json()["access"])["user_id"] == refresh["user_id"]


def test_token_refresh_refuses_an_access_token(world: Any) -> None:
    access = AccessToken.for_user(world["john"])
    response = APIClient().post("/v1/auth/token/refresh", {"refresh": str(access)}, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


async def test_token_from_the_endpoint_opens_a_websocket(world: Any) -> None:
    response = await sync_to_async(APIClient().post)(
        "/v1/auth/token", {"username": "kim", "password": DEMO_PASSWORD}, format="json"
    )
    async with open_client(response.json()["access"]) as client:
        assert client.connected is not None and client.connected["user_id"] == "user-kim"


# --- WebSocket handshake: where the token may be ------------------------------------------------------------------


async def test_connected_message_shape(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        connected = client.connected
    assert connected is not None
    assert set(connected) == {"type", "user_id", "connection_id", "server_time", "limits"}
    assert connected["type"] == "connected" and connected["user_id"] == "user-sarah"
    assert connected["connection_id"].startswith("conn-")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", connected["server_time"])
    assert connected["limits"] == {
        "max_subscriptions": 50,
        "max_message_bytes": 65536,
        "rate_limit_per_second": 20.0,
        "rate_limit_burst": 50,
        "max_connections_per_user": 20,
    }


async def test_token_in_query(token_for: Any) -> None:
    async with open_client(token_for("john")) as client:
        assert client.connected is not None and client.connected["user_id"] == "user-john"


async def test_token_in_authorization_header(token_for: Any) -> None:
    header = [(b"authorization", f"Bearer {token_for('sarah')}".encode())]
    async with open_client(query=False, headers=header) as client:
        assert client.connected is not None and client.connected["user_id"] == "user-sarah"
        assert (await client.subscribe("orders", {"location_id": "loc-xyz789"}))["success"] is True


async def test_authorization_header_wins_over_the_query(token_for: Any) -> None:
    from config.asgi import application

    communicator = WebsocketCommunicator(
        application,
        f"/v1/ws?access_token={token_for('john')}",
        headers=[(b"authorization", f"Bearer {token_for('sarah')}".encode())],
    )
    connected, _ = await communicator.connect()
    assert connected
    try:
        assert (await communicator.receive_json_from())["user_id"] == "user-sarah"
    finally:
        await communicator.disconnect()


async def test_token_in_subprotocol_pair_is_answered_with_bearer(token_for: Any) -> None:
    from config.asgi import application

    communicator = WebsocketCommunicator(application, "/v1/ws", subprotocols=["bearer", token_for("kim")])
    connected, subprotocol = await communicator.connect()
    try:
        assert connected and subprotocol == "bearer"
        message = await communicator.receive_json_from()
        assert message["type"] == "connected" and message["user_id"] == "user-kim"
    finally:
        await communicator.disconnect()


async def test_no_subprotocol_is_chosen_without_the_bearer_pair(token_for: Any) -> None:
    from config.asgi import application

    communicator = WebsocketCommunicator(application, f"/v1/ws?access_token={token_for('kim')}")
    connected, subprotocol = await communicator.connect()
    try:
        assert connected and subprotocol is None
    finally:
        await communicator.disconnect()


# --- WebSocket handshake: refusals --------------------------------------------------------------------------------


async def assert_refused(client: Client, message_contains: str = "") -> None:
    error = await client.recv()
    assert error["type"] == "error" and error["code"] == "unauthenticated", error
    assert set(error) == {"type", "code", "message"}
    assert message_contains in error["message"]
    assert await client.ws.receive_output(timeout=1) == {"type": "websocket.close", "code": UNAUTHENTICATED_CLOSE}


async def test_missing_token_is_refused(world: Any) -> None:
    async with open_client(None, expect_connected=False) as client:
        await assert_refused(client, "Missing access token")


async def test_bearer_subprotocol_without_a_token_is_refused(world: Any) -> None:
    async with open_client(None, subprotocols=["bearer"], expect_connected=False) as client:
        await assert_refused(client)


async def test_expired_token_is_refused(world: Any) -> None:
    token = AccessToken.for_user(world["sarah"])
    token.set_exp(lifetime=-timedelta(seconds=1))
    async with open_client(str(token), expect_connected=False) as client:
        await assert_refused(client, "Invalid or expired")


async def test_bad_signature_is_refused(world: Any) -> None:
    payload = AccessToken.for_user(world["sarah"]).payload
    forged = jwt.encode(payload, "not-the-signing-key-0123456789abcdef", algorithm="HS256")
    async with open_client(forged, expect_connected=False) as client:
        await assert_refused(client)


async def test_tampered_payload_is_refused(world: Any) -> None:
    token = str(AccessToken.for_user(world["sarah"]))
    header, _, signature = token.split(".")
    payload = AccessToken(token).payload
    payload["user_id"] = str(world["admin"].pk)
    async with open_client(f"{header}.{b64url(payload)}.{signature}", expect_connected=False) as client:
        await assert_refused(client)


async def test_refresh_token_is_refused(world: Any) -> None:
    refresh = RefreshToken.for_user(world["sarah"])
    async with open_client(str(refresh), expect_connected=False) as client:
        await assert_refused(client)


async def test_alg_none_is_refused(world: Any) -> None:
    payload = AccessToken.for_user(world["sarah"]).payload
    unsigned = f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(payload)}."
    async with open_client(unsigned, expect_connected=False) as client:
        await assert_refused(client)


async def test_garbage_token_is_refused(world: Any) -> None:
    async with open_client("not-a-jwt", expect_connected=False) as client:
        await assert_refused(client)


async def test_inactive_user_is_refused(world: Any) -> None:
    sarah = world["sarah"]
    token = str(AccessToken.for_user(sarah))
    sarah.is_active = False
    await sarah.asave()
    async with open_client(token, expect_connected=False) as client:
        await assert_refused(client, "inactive")


async def test_deleted_user_is_refused(world: Any) -> None:
    token = str(AccessToken.for_user(world["kim"]))
    await world["kim"].adelete()
    async with open_client(token, expect_connected=False) as client:
        await assert_refused(client)


async def test_bad_header_token_is_refused_even_with_a_good_query_token(token_for: Any) -> None:
    header = [(b"authorization", b"Bearer not-a-jwt")]
    async with open_client(token_for("sarah"), headers=header, expect_connected=False) as client:
        await assert_refused(client)


async def test_refused_connection_ignores_further_messages(world: Any) -> None:
    async with open_client(None, expect_connected=False) as client:
        await assert_refused(client)
        await client.send({"type": "ping"})
        assert await client.nothing(0.05)
