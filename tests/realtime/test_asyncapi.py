"""The AsyncAPI document: valid AsyncAPI 3.0, complete (every message type, error code and channel), equal to the
committed docs/asyncapi.json and to what /v1/asyncapi.json serves, and true to the wire: real frames from the live
consumer, and every error of realtime.errors, validate against the messages it declares."""

from __future__ import annotations

import copy
import inspect
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from jsonschema import Draft7Validator, Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7
from rest_framework_simplejwt.tokens import AccessToken

from realtime import protocol
from realtime.asyncapi import CHANNEL_ID, asyncapi_document, render
from realtime.consumer import GatewayConsumer
from realtime.errors import REST_ONLY_CODES, ErrorCode, error_classes
from realtime.publishing import apublish
from realtime.registry import CHANNELS, Scope
from tests.support.asgi import open_client

ROOT = Path(__file__).resolve().parents[2]
# From the npm package @asyncapi/specs 6.11.1 (schemas/3.0.0.json, Apache-2.0): see schemas/README.md.
SPEC_SCHEMA = Path(__file__).parent / "schemas" / "asyncapi-3.0.0.json"


def spec_validator() -> Draft7Validator:
    """The official schema bundles its definitions under their $id; register them so nothing is fetched."""
    schema = json.loads(SPEC_SCHEMA.read_text())
    registry: Registry = Registry()
    for definition in schema["definitions"].values():
        registry = registry.with_resource(definition["$id"], Resource(definition, DRAFT7))
    return Draft7Validator(schema, registry=registry)


def payload_validator(key: str) -> Draft202012Validator:
    document = asyncapi_document()
    return Draft202012Validator({**document, "$ref": f"#/components/messages/{key}/payload"})


def matching_messages(frame: dict[str, Any]) -> list[str]:
    keys = asyncapi_document()["channels"][CHANNEL_ID]["messages"]
    return [key for key in keys if payload_validator(key).is_valid(frame)]


def test_the_document_is_valid_asyncapi_3() -> None:
    validator = spec_validator()
    document = asyncapi_document()
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []
    broken = copy.deepcopy(document)
    broken["operations"]["send_event"]["action"] = "publish"  # AsyncAPI 2's verb: not valid in 3.0
    assert not validator.is_valid(broken), "the vendored schema must be able to refuse a document"


def test_every_client_message_type_the_consumer_handles_is_a_receive_operation() -> None:
    document = asyncapi_document()
    assert set(GatewayConsumer.handlers) == set(protocol.MESSAGE_TYPES.values())
    for message_type in protocol.MESSAGE_TYPES:
        operation = document["operations"][f"receive_{message_type}"]
        assert operation["action"] == "receive"
        assert operation["messages"], message_type
        assert operation["reply"]["messages"], message_type
        for ref in operation["messages"] + operation["reply"]["messages"]:
            key = ref["$ref"].rsplit("/", 1)[1]
            assert key in document["channels"][CHANNEL_ID]["messages"], key


def test_every_error_code_is_a_message_with_its_code() -> None:
    document = asyncapi_document()
    channel_messages = document["channels"][CHANNEL_ID]["messages"]
    for code in ErrorCode:
        message = document["components"]["messages"][f"error.{code.value}"]
        assert payload_validator(f"error.{code.value}").is_valid(
            {"type": "error", "code": code.value, "message": "m", **_sample_details(code)}
        )
        assert (f"error.{code.value}" in channel_messages) == (code not in REST_ONLY_CODES)
        assert message["summary"].startswith("REST only") == (code in REST_ONLY_CODES)


def test_every_registry_channel_has_its_subscribe_and_event_messages() -> None:
    document = asyncapi_document()
    schemas = document["components"]["schemas"]
    for spec in CHANNELS:
        subscribe = document["components"]["messages"][f"subscribe.{spec.name}"]["payload"]
        subscribe_schema = schemas[subscribe["$ref"].rsplit("/", 1)[1]]
        assert subscribe_schema["properties"]["channel"]["const"] == spec.name
        params_ref = json.dumps(subscribe_schema["properties"]["params"])
        assert f"#/components/schemas/{spec.params.__name__}" in params_ref
        assert set(schemas[spec.params.__name__]["properties"]) == set(spec.params.model_fields)
        event = document["components"]["messages"][f"event.{spec.name}"]["payload"]
        event_schema = schemas[event["$ref"].rsplit("/", 1)[1]]
        assert event_schema["properties"]["event"]["enum"] == list(spec.events)
        scope_field = "user_id" if spec.scope is Scope.USER else "location_id"
        assert scope_field in event_schema["required"]


def _sample_details(code: ErrorCode) -> dict[str, Any]:
    return {
        ErrorCode.UNAUTHORIZED: {"channel": "orders", "required_permission": "orders.read"},
        ErrorCode.SUBSCRIPTION_LIMIT: {"current": 50, "limit": 50},
        ErrorCode.SUBSCRIPTION_NOT_FOUND: {"subscription_id": "sub-x"},
        ErrorCode.RATE_LIMITED: {"retry_after_ms": 120},
        ErrorCode.CONNECTION_LIMIT: {"limit": 20},
        ErrorCode.METHOD_NOT_ALLOWED: {"allowed": ["POST"]},
        ErrorCode.PAYLOAD_TOO_LARGE: {"limit": 1024},
        ErrorCode.IDEMPOTENCY_CONFLICT: {"idempotency_key": "k-1", "stream": "orders:loc-abc123"},
        ErrorCode.ACK_NOT_ENABLED: {"subscription_id": "sub-x"},
        ErrorCode.EVENT_NOT_FOUND: {"event_id": "evt-x"},
        ErrorCode.EVENT_NOT_IN_SUBSCRIPTION: {"event_id": "evt-x", "subscription_id": "sub-x"},
        ErrorCode.STATELESS_CHANNEL: {"channel": "analytics"},
    }.get(code, {})


SAMPLE_ARGUMENTS: dict[str, Any] = {
    "channel": "orders",
    "permission": "orders.read",
    "message": "Something precise",
    "current": 3,
    "limit": 3,
    "subscription_id": "sub-abc",
    "message_type": "subscribe_all",
    "retry_after_ms": 250,
    "method": "DELETE",
    "allowed": ["GET", "POST"],
    "idempotency_key": "order-1234-created",
    "stream": "orders:loc-abc123",
    "event_id": "evt-abc",
    "snapshot_channels": ("orders", "kds", "tables"),
}


@pytest.mark.parametrize("error_class", error_classes(), ids=lambda cls: cls.__name__)
def test_each_error_of_realtime_errors_validates_against_its_declared_message(error_class: Any) -> None:
    """Build each error as the code does and check its frame, detail fields included, against the document."""
    parameters = list(inspect.signature(error_class.__init__).parameters.values())[1:]
    arguments = {p.name: SAMPLE_ARGUMENTS[p.name] for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD}
    error = error_class(**arguments)
    frame = error.as_frame("req-9")
    validator = payload_validator(f"error.{error.code.value}")
    assert list(validator.iter_errors(frame)) == [], frame
    assert not validator.is_valid({**frame, "undeclared_detail": 1}), "unknown fields must be refused"


def test_the_committed_document_is_the_generated_one() -> None:
    committed = (ROOT / "docs" / "asyncapi.json").read_text()
    assert committed == render(), "run `python manage.py asyncapi` to rewrite docs/asyncapi.json"


def test_the_management_command_writes_the_document(tmp_path: Path) -> None:
    target = tmp_path / "asyncapi.json"
    call_command("asyncapi", "--output", str(target), stdout=io.StringIO())
    assert json.loads(target.read_text()) == asyncapi_document()


@pytest.mark.django_db
def test_the_document_is_served_without_authentication(client: Any) -> None:
    response = client.get("/v1/asyncapi.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == json.loads(render())
    # A body in JSON, so the REST door (realtime/api/middleware.py) lets it reach the view: 415 comes before 405 there.
    assert client.post("/v1/asyncapi.json", data={}, content_type="application/json").status_code == 405


async def _exchange(client: Any, message: dict[str, Any], frames: list[dict[str, Any]]) -> dict[str, Any]:
    """Send a request and collect every frame up to (and including) the one that answers it."""
    await client.send(message)
    while True:
        frame = await client.recv()
        frames.append(frame)
        if frame.get("id") == message.get("id"):
            return frame


@pytest.mark.django_db(transaction=True)
async def test_real_frames_from_the_consumer_match_the_declared_messages(world: dict[str, Any]) -> None:
    sarah = world["sarah"]
    token = str(AccessToken.for_user(sarah))
    frames: list[dict[str, Any]] = []
    sent: list[dict[str, Any]] = []

    async def ask(message: dict[str, Any]) -> dict[str, Any]:
        sent.append(message)
        return await _exchange(client, message, frames)

    async with open_client(token) as client:
        assert client.connected is not None
        frames.append(client.connected)
        subscribed = await ask(
            {"type": "subscribe", "id": "s1", "channel": "orders", "params": {"location_id": "loc-xyz789"},
             "resume": {}}
        )  # fmt: skip
        await apublish("orders", "order.created", location_id="loc-xyz789", data={"status": "open", "type": "dine_in"})
        frames.append(await client.recv())
        await ask({"type": "subscribe", "id": "s2", "channel": "notifications", "params": {}})
        await apublish("notifications", "notification.alert", user_id=sarah.public_id, data={"text": "hi"})
        frames.append(await client.recv())
        await ask({"type": "list_subscriptions", "id": "l1"})
        await ask({"type": "ping", "id": 7})
        place = {"channel": "orders", "params": {"location_id": "loc-xyz789"}}
        await ask({"type": "presence_join", "id": "p1", **place, "user_info": {"name": "Sarah Server"}})
        await ask({"type": "presence_list", "id": "p2", **place})
        await ask({"type": "presence_leave", "id": "p3", **place})
        await ask({"type": "unsubscribe", "id": "u1", "subscription_id": subscribed["subscription_id"]})
        await ask({"type": "unsubscribe_all", "id": "u2"})
        await ask({"type": "authenticate", "id": "a1", "token": str(AccessToken.for_user(sarah))})
        # Refusals, answered on the same connection.
        await ask({"type": "subscribe", "id": "e1", "channel": "nope", "params": {}})
        await ask({"type": "subscribe", "id": "e2", "channel": "orders", "params": {"statues": ["open"]}})
        await ask({"type": "subscribe", "id": "e3", "channel": "orders", "params": {"location_id": "loc-elsewhere"}})
        await ask({"type": "unsubscribe", "id": "e4", "subscription_id": "sub-missing"})
        await ask({"type": "subscribe_everything", "id": "e5"})
        await ask({"type": "ping", "id": "e6", "extra": True})
        while not await client.nothing(0.3):
            frames.append(await client.recv())

    for message in sent:
        if str(message["id"]).startswith("e"):
            continue  # the refusals are deliberately outside the declared messages (e3 is valid but not allowed)
        key = f"subscribe.{message['channel']}" if message["type"] == "subscribe" else message["type"]
        assert list(payload_validator(key).iter_errors(message)) == [], (key, message)

    seen_types = set()
    for frame in frames:
        matches = matching_messages(frame)
        assert matches, f"no declared message matches {frame}"
        seen_types.add(frame["type"] if frame["type"] != "error" else f"error.{frame['code']}")
    assert {"connected", "response", "event", "subscriptions_list", "pong", "presence", "presence_list_response",
            "error.channel_not_found", "error.invalid_params", "error.unauthorized", "error.subscription_not_found",
            "error.unknown_type", "error.invalid_message"} <= seen_types  # fmt: skip
