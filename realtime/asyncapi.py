"""The AsyncAPI 3.0 document of ``/v1/ws``, generated from the channel registry and the message models.

Client messages come from ``realtime.protocol`` (one ``subscribe`` message per registry channel, with that channel's
parameter model); server frames from ``realtime.server_messages`` (one event message per channel, one error message
per code of ``realtime.errors``). Nothing is written by hand, so the document cannot drift from the code:
``GET /v1/asyncapi.json`` serves it, ``manage.py asyncapi`` writes ``docs/asyncapi.json``.

The document describes the gateway: ``receive`` operations are what clients send, ``send`` what the gateway sends.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import models_json_schema

from realtime import protocol
from realtime import server_messages as sm
from realtime.errors import REST_ONLY_CODES, ErrorCode
from realtime.registry import CHANNELS, PUBLIC_ID_PATTERN, ChannelSpec, LocationParams, Scope

CHANNEL_ID = "gateway"
REF_TEMPLATE = "#/components/schemas/{model}"


def _package_version() -> str:
    try:
        return version("restaurant-realtime-gateway")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "0.0.0"


class PresenceTarget(BaseModel):
    """Presence is per channel and location."""

    model_config = ConfigDict(extra="forbid")
    location_id: str = Field(pattern=PUBLIC_ID_PATTERN)


def _title(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace(".", "_").split("_"))


def _subscribe_model(spec: ChannelSpec) -> type[BaseModel]:
    # A user-scoped channel's params may be left out (the connected user is meant); location ones are required.
    fields: dict[str, Any] = {
        "channel": (Literal[spec.name], ...),
        "params": (spec.params, ...) if spec.scope is Scope.LOCATION else (spec.params, Field(default=None)),
    }
    doc = f"Subscribe to `{spec.name}` ({spec.description}) Needs `{spec.permission}`."
    name = f"Subscribe{_title(spec.name)}"
    return create_model(name, __base__=protocol.Subscribe, __doc__=doc, **fields)  # type: ignore[no-any-return]


def _presence_model(base: type[protocol.Message]) -> type[BaseModel]:
    channels = tuple(spec.name for spec in CHANNELS if spec.scope is Scope.LOCATION)
    fields: dict[str, Any] = {"channel": (Literal[channels], ...), "params": (PresenceTarget, ...)}
    return create_model(base.__name__, __base__=base, __doc__=base.__doc__, **fields)  # type: ignore[no-any-return]


def client_messages() -> dict[str, type[BaseModel]]:
    """Message key -> model of every client message; ``subscribe`` once per registry channel."""
    messages: dict[str, type[BaseModel]] = {}
    for message_type, model in protocol.MESSAGE_TYPES.items():
        if model is protocol.Subscribe:
            for spec in CHANNELS:
                messages[f"subscribe.{spec.name}"] = _subscribe_model(spec)
        elif message_type.startswith("presence_"):
            messages[message_type] = _presence_model(model)
        else:
            messages[message_type] = model
    return messages


def _reply_key(model: type[BaseModel]) -> str:
    return f"reply.{model.__name__}"


def server_messages() -> dict[str, type[BaseModel]]:
    """Message key -> model of every frame the gateway sends."""
    messages: dict[str, type[BaseModel]] = {}
    for model in sm.UNSOLICITED:
        messages[model.model_fields["type"].annotation.__args__[0]] = model  # type: ignore[union-attr]
    for replies in sm.REPLIES.values():
        for model in replies:
            messages[_reply_key(model)] = model
    for name, model in sm.EVENT_MODELS.items():
        messages[f"event.{name}"] = model
    for code, model in sm.ERROR_MODELS.items():
        messages[f"error.{code.value}"] = model
    return messages


def _message_object(key: str, model: type[BaseModel], schema: dict[str, Any], *, summary: str) -> dict[str, Any]:
    description = (model.__doc__ or "").strip()
    message: dict[str, Any] = {"name": key, "title": model.__name__, "summary": summary}
    if description:
        message["description"] = description
    message["contentType"] = "application/json"
    message["payload"] = schema
    return message


def _location_forms(schemas: dict[str, Any]) -> None:
    """JSON Schema cannot see LocationParams' validator: say "exactly one of location_id, location_ids" in it."""
    names = {spec.params.__name__ for spec in CHANNELS if issubclass(spec.params, LocationParams)}
    for name in names:
        schemas[name]["oneOf"] = [{"required": ["location_id"]}, {"required": ["location_ids"]}]


@cache
def asyncapi_document() -> dict[str, Any]:
    """The whole document, built once per process."""
    client = client_messages()
    server = server_messages()
    keyed = [(key, model) for key, model in {**client, **server}.items()]
    refs, top = models_json_schema(
        [(model, "validation" if key in client else "serialization") for key, model in keyed],
        ref_template=REF_TEMPLATE,
    )
    schemas: dict[str, Any] = top.get("$defs", {})
    _location_forms(schemas)

    messages: dict[str, Any] = {}
    for key, model in keyed:
        if key in client:
            summary = f"Client -> gateway: `{key.split('.')[0]}`."
        elif key.startswith("error.") and ErrorCode(key.removeprefix("error.")) in REST_ONLY_CODES:
            summary = "REST only (never on the WebSocket); listed so every code is in one place."
        else:
            summary = f"Gateway -> client: `{model.model_fields['type'].annotation.__args__[0]}`."  # type: ignore[union-attr]
        messages[key] = _message_object(key, model, refs[(model, "validation" if key in client else "serialization")],
                                        summary=summary)  # fmt: skip

    ws_errors = [f"error.{code.value}" for code in ErrorCode if code not in REST_ONLY_CODES]
    on_channel = [key for key in messages if key not in {f"error.{c.value}" for c in REST_ONLY_CODES}]

    def ref(key: str) -> dict[str, str]:
        return {"$ref": f"#/channels/{CHANNEL_ID}/messages/{key}"}

    operations: dict[str, Any] = {}
    for message_type, model in protocol.MESSAGE_TYPES.items():
        keys = [k for k in client if k == message_type or k.startswith(f"{message_type}.")]
        replies = [_reply_key(m) for m in sm.REPLIES[message_type]]
        operations[f"receive_{message_type}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{CHANNEL_ID}"},
            "title": message_type,
            "summary": (model.__doc__ or f"The `{message_type}` request.").strip().splitlines()[0],
            "messages": [ref(k) for k in keys],
            "reply": {
                "channel": {"$ref": f"#/channels/{CHANNEL_ID}"},
                "messages": [ref(k) for k in replies + ws_errors],
            },
        }

    def send(summary: str, keys: list[str]) -> dict[str, Any]:
        return {"action": "send", "channel": {"$ref": f"#/channels/{CHANNEL_ID}"}, "summary": summary,
                "messages": [ref(k) for k in keys]}  # fmt: skip

    operations["send_connected"] = send("The first frame of an authenticated connection.", ["connected"])
    operations["send_event"] = send(
        "One frame per matching subscription, in `seq` order per stream.", [f"event.{s.name}" for s in CHANNELS]
    )
    operations["send_presence"] = send("A user's first connection joined, or their last one left.", ["presence"])
    operations["send_subscription_revoked"] = send(
        "A live subscription lost its permission; no event follows it.", ["subscription_revoked"]
    )
    operations["send_error"] = send(
        "Errors outside a request (token_expired, unauthenticated at connect, connection_limit, forbidden, "
        "unavailable, rate_limited, disconnected, ...), some followed by a close code (docs/protocol.md).",
        ws_errors,
    )

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Restaurant real-time gateway",
            "version": _package_version(),
            "description": (
                "The WebSocket protocol of `/v1/ws`: subscriptions to the registry's channels, events with their "
                "stream positions, presence, resume and errors. Generated from the code (`manage.py asyncapi`); "
                "the prose reference is docs/protocol.md. Operations are from the gateway's side: `receive` is what "
                "a client sends, `send` what the gateway sends."
            ),
            "license": {"name": "MIT"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:8000",
                "protocol": "ws",
                "description": "`make run`",
                "security": [{"$ref": f"#/components/securitySchemes/{name}"} for name in SECURITY_SCHEMES],
            },
        },
        "channels": {
            CHANNEL_ID: {
                "address": "/v1/ws",
                "title": "The gateway's WebSocket",
                "description": (
                    "One connection multiplexes subscriptions to every channel of the registry: "
                    + ", ".join(f"`{spec.name}`" for spec in CHANNELS)
                    + ". All frames are JSON text frames."
                ),
                "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in on_channel},
            }
        },
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


SECURITY_SCHEMES: dict[str, Any] = {
    "bearerHeader": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "`Authorization: Bearer <access token>` (server clients). Tokens: `POST /v1/auth/token`.",
    },
    "accessTokenQuery": {
        "type": "httpApiKey",
        "name": "access_token",
        "in": "query",
        "description": "`?access_token=<token>` (browsers). Alternatively the subprotocol pair `bearer, <token>`.",
    },
}


def render() -> str:
    """The document as written to docs/asyncapi.json."""
    return json.dumps(asyncapi_document(), indent=2, ensure_ascii=False) + "\n"
