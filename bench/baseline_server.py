"""A minimal broadcast server on the ``websockets`` library: the yardstick the gateway is measured against.

It speaks just enough of the gateway's wire protocol for the load generator to be shared:

    GET /v1/ws?access_token=<any non-empty token>   -> {"type": "connected", "user_id": ..., ...}
    {"type": "subscribe", "id": "r1", "channel": "orders", "params": {"location_id": "loc-1"}}
                                                     -> {"type": "response", "id": "r1", "success": true, ...}
    {"type": "ping", "id": "p1"}                     -> {"type": "pong", "id": "p1"}

and the same event envelope (``type, subscription_id, channel, event, event_id, stream, epoch, seq, location_id,
timestamp, data``), filtered by the ``types``/``statuses``/``events`` parameters like the gateway's ``orders``.

Publish path: a *publisher WebSocket*, ``/v1/publish?access_token=...``, taking one frame per event with the body of
the gateway's ``POST /v1/events`` and answering ``{"type": "published", "event_id", "stream", "seq"}``. (The
``websockets`` HTTP parser accepts only GET, so an HTTP POST cannot be served from ``process_request``.)

What it deliberately lacks: token verification (the JWT payload is read unverified, for ``user_id`` only),
authorization, a database, stream history, presence, limits. It is the floor: the cost of a Python process that
parses frames, looks up a dict of subscribers and writes one pre-encoded frame per recipient.

Run: ``python -m bench.baseline_server --port 8100``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import itertools
import json
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve

FILTER_FIELDS: dict[str, str] = {"types": "type", "statuses": "status"}
"""Subscription parameter -> the event ``data`` field it filters on (``events`` filters on the event name)."""

KNOWN_CHANNELS = frozenset({"orders", "kds", "inventory", "tables", "analytics", "delivery", "notifications", "voice"})
EPOCH = secrets.token_hex(6)


@dataclass(frozen=True, slots=True)
class Subscription:
    """One subscription of one connection, with its filters as sets (``None`` = no filter)."""

    subscription_id: str
    connection: ServerConnection
    types: frozenset[str] | None
    statuses: frozenset[str] | None
    events: frozenset[str] | None

    def accepts(self, event: str, data: dict[str, Any]) -> bool:
        if self.events is not None and event not in self.events:
            return False
        if self.types is not None and data.get("type") not in self.types:
            return False
        return self.statuses is None or data.get("status") in self.statuses


class Hub:
    """Subscribers by ``(channel, location_id)`` and the per-stream sequence numbers."""

    def __init__(self) -> None:
        self.groups: dict[tuple[str, str], dict[str, Subscription]] = defaultdict(dict)
        self.seqs: dict[str, itertools.count[int]] = defaultdict(lambda: itertools.count(1))

    def subscribe(self, connection: ServerConnection, message: dict[str, Any]) -> tuple[dict[str, Any], list]:
        """Register a subscription; return the reply and the group keys it joined."""
        request_id = message.get("id")
        channel = message.get("channel")
        params = message.get("params") or {}
        if channel not in KNOWN_CHANNELS:
            return error_reply("channel_not_found", f"Channel '{channel}' does not exist", request_id), []
        locations = params.get("location_ids") or ([params["location_id"]] if params.get("location_id") else [])
        if not locations or not all(isinstance(loc, str) for loc in locations):
            return error_reply("invalid_params", "Missing required parameter: location_id", request_id), []
        subscription = Subscription(
            subscription_id=f"sub-{secrets.token_hex(6)}",
            connection=connection,
            types=as_set(params.get("types")),
            statuses=as_set(params.get("statuses")),
            events=as_set(params.get("events")),
        )
        keys = [(channel, location) for location in locations]
        for key in keys:
            self.groups[key][subscription.subscription_id] = subscription
        reply = {
            "type": "response",
            "id": request_id,
            "success": True,
            "subscription_id": subscription.subscription_id,
            "channel": channel,
            "params": params,
        }
        return reply, [(key, subscription.subscription_id) for key in keys]

    def unsubscribe(self, memberships: list[tuple[tuple[str, str], str]]) -> None:
        for key, subscription_id in memberships:
            group = self.groups.get(key)
            if group is not None:
                group.pop(subscription_id, None)
                if not group:
                    del self.groups[key]

    def publish(self, body: dict[str, Any]) -> dict[str, Any]:
        """Fan one event out to the matching subscribers; encode it once, splice in each subscription id."""
        channel, event, location_id = body.get("channel"), body.get("event"), body.get("location_id")
        data = body.get("data") or {}
        if not (isinstance(channel, str) and isinstance(event, str) and isinstance(location_id, str)):
            return error_reply("invalid_params", "channel, event and location_id are required", None)
        stream = f"{channel}:{location_id}"
        seq = next(self.seqs[stream])
        event_id = f"evt-{secrets.token_hex(6)}"
        envelope = {
            "channel": channel,
            "event": event,
            "event_id": event_id,
            "stream": stream,
            "epoch": EPOCH,
            "seq": seq,
            "location_id": location_id,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "data": data,
        }
        tail = json.dumps(envelope, separators=(",", ":"))[1:]
        for subscription in list(self.groups.get((channel, location_id), {}).values()):
            if subscription.accepts(event, data):
                frame = f'{{"type":"event","subscription_id":"{subscription.subscription_id}",{tail}'
                broadcast([subscription.connection], frame)
        return {"type": "published", "event_id": event_id, "stream": stream, "seq": seq}


def as_set(value: object) -> frozenset[str] | None:
    return frozenset(value) if isinstance(value, list) else None


def error_reply(code: str, message: str, request_id: object) -> dict[str, Any]:
    reply: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if request_id is not None:
        reply["id"] = request_id
    return reply


def user_id_from_token(token: str) -> str:
    """Read ``user_id`` from a JWT's payload without verifying it (the baseline trusts its clients)."""
    try:
        payload_b64 = token.split(".")[1]
        payload = json.loads(base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4)))
        return str(payload.get("user_id", "anonymous"))
    except (IndexError, ValueError, binascii.Error):
        return "anonymous"


async def serve_subscriber(hub: Hub, connection: ServerConnection, token: str) -> None:
    await connection.send(
        json.dumps(
            {
                "type": "connected",
                "user_id": user_id_from_token(token),
                "connection_id": f"conn-{secrets.token_hex(6)}",
                "server_time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "limits": {"max_subscriptions": 50},
            }
        )
    )
    memberships: list[tuple[tuple[str, str], str]] = []
    try:
        async for raw in connection:
            try:
                message = json.loads(raw)
                kind = message.get("type")
            except (ValueError, AttributeError):
                await connection.send(json.dumps(error_reply("invalid_message", "Invalid JSON", None)))
                continue
            if kind == "subscribe":
                reply, joined = hub.subscribe(connection, message)
                memberships.extend(joined)
            elif kind == "ping":
                reply = {"type": "pong", "id": message.get("id")}
            elif kind == "unsubscribe_all":
                hub.unsubscribe(memberships)
                memberships.clear()
                reply = {"type": "response", "id": message.get("id"), "success": True}
            else:
                reply = error_reply("unknown_type", f"Unknown message type: {kind}", message.get("id"))
            await connection.send(json.dumps(reply))
    finally:
        hub.unsubscribe(memberships)


async def serve_publisher(hub: Hub, connection: ServerConnection) -> None:
    async for raw in connection:
        try:
            reply = hub.publish(json.loads(raw))
        except ValueError:
            reply = error_reply("invalid_message", "Invalid JSON", None)
        await connection.send(json.dumps(reply))


def make_handler(hub: Hub):
    async def handle(connection: ServerConnection) -> None:
        url = urlsplit(connection.request.path if connection.request else "/")
        token = (parse_qs(url.query).get("access_token") or [""])[0]
        if not token:
            await connection.send(json.dumps(error_reply("unauthenticated", "Missing access token", None)))
            await connection.close(4401, "unauthenticated")
            return
        if url.path == "/v1/publish":
            await serve_publisher(hub, connection)
        elif url.path == "/v1/ws":
            await serve_subscriber(hub, connection, token)
        else:
            await connection.close(4404, "not found")

    return handle


async def main(host: str, port: int) -> None:
    hub = Hub()
    async with serve(make_handler(hub), host, port, compression=None, max_queue=None, backlog=1024) as server:
        print(f"baseline listening on ws://{host}:{port}/v1/ws at {time.strftime('%H:%M:%S')}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    arguments = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(arguments.host, arguments.port))
