"""The REST side of the gateway: publish, what a user may see, stream history, health."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import authz
from accounts.models import User
from accounts.permissions import Perm
from realtime.api.schemas import ChannelList, ErrorBody, HistoryPage, LocationList, Snapshot
from realtime.authorization import authorize
from realtime.conf import realtime_settings
from realtime.errors import ChannelNotFound, InvalidParams
from realtime.outbox import read_backlog
from realtime.publishing import run_sync
from realtime.registry import CHANNELS, get_channel
from realtime.snapshots import take_snapshot
from realtime.stores.history import get_history
from realtime.streams import split_stream


class LocationListView(APIView):
    """``GET /v1/locations``: the locations the user may see (any read permission there)."""

    @extend_schema(responses={200: LocationList, 401: ErrorBody}, summary="The locations the user may see")
    def get(self, request: Request) -> Response:
        user: User = request.user  # type: ignore[assignment]
        seen: dict[str, Any] = {}
        for perm in Perm:
            for location in authz.permitted_locations(user, perm).select_related("organization"):
                seen.setdefault(location.public_id, location)
        rows = [
            {
                "id": loc.public_id,
                "name": loc.name,
                "organization": loc.organization.name,
                "time_zone": loc.time_zone,
                "permissions": sorted(authz.permissions_at(user, loc.public_id)),
            }
            for loc in sorted(seen.values(), key=lambda loc: (loc.organization.name, loc.name))
        ]
        return Response({"locations": rows})


class ChannelListView(APIView):
    """``GET /v1/channels``: the registry, with each channel's parameter JSON Schema."""

    @extend_schema(responses={200: ChannelList, 401: ErrorBody}, summary="The channels, with their parameters")
    def get(self, request: Request) -> Response:
        return Response(
            {
                "channels": [
                    {
                        "name": spec.name,
                        "description": spec.description,
                        "events": list(spec.events),
                        "scope": spec.scope.value,
                        "permission": spec.permission,
                        "params": spec.params.model_json_schema(),
                    }
                    for spec in CHANNELS
                ]
            }
        )


class StreamEventsView(APIView):
    """``GET /v1/streams/<stream>/events?after=<seq>``: the stored history of a stream, authorized like subscribe."""

    @extend_schema(
        summary="The stored history of a stream (e.g. orders:loc-xyz789), authorized like a subscribe",
        parameters=[
            OpenApiParameter("after", int, description="Events after this seq (default 0)"),
            OpenApiParameter("epoch", str, description="The epoch the client's position belongs to"),
        ],
        responses={200: HistoryPage, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody},
    )
    def get(self, request: Request, stream: str) -> Response:
        channel, scope_id = split_stream(stream)
        spec = get_channel(channel)
        if spec is None:
            raise ChannelNotFound(channel[:64])
        try:
            after = int(request.query_params.get("after", "0"))
            if after < 0:
                raise ValueError
        except ValueError:
            raise InvalidParams("Invalid parameter after: must be a non-negative integer", channel=spec.name) from None
        authorize(request.user, spec, (scope_id,))  # type: ignore[arg-type]
        epoch = request.query_params.get("epoch")
        replay = run_sync(get_history().replay, stream, after, epoch)
        events = []
        for seq, raw in replay.events:
            record = json.loads(raw)
            record.pop("fields", None)
            events.append({"channel": spec.name, "stream": stream, "epoch": replay.epoch, "seq": seq, **record})
        return Response(
            {
                "stream": stream,
                "epoch": replay.epoch,
                "last_seq": replay.last_seq,
                "complete": replay.covered,
                "events": events,
            }
        )


class SnapshotView(APIView):
    """``GET /v1/snapshots/<channel>?location_id=<id>``: the channel's current state and the position it holds at."""

    @extend_schema(
        summary="The current state of orders, kds or tables at a location, with the stream position it is valid from",
        description=(
            "Apply every event of the stream with a seq greater than `position` (subscribe with `resume` from it) "
            "to `items` by `data[id_field]`, dropping an event whose `version` is not greater than the one held, "
            "and you have the current state. Authorized exactly like a subscribe."
        ),
        parameters=[
            OpenApiParameter("channel", str, OpenApiParameter.PATH, description="orders, kds or tables"),
            OpenApiParameter("location_id", str, required=True, description="The location (loc-...)"),
            OpenApiParameter("station", str, description="kds only: the tickets of one station"),
        ],
        responses={
            200: Snapshot,
            400: ErrorBody,
            401: ErrorBody,
            403: ErrorBody,
            404: ErrorBody,
            503: ErrorBody,
        },
    )
    def get(self, request: Request, channel: str) -> Response:
        try:
            body = take_snapshot(request.user, channel, request.query_params.dict())  # type: ignore[arg-type]
        except ChannelNotFound as error:  # a resource that does not exist: 404 here, unlike a publish body's 400
            return Response(error.as_body(), status=404)
        return Response(body)


def healthz(request: HttpRequest) -> JsonResponse:
    """``GET /healthz``: 200 when the database and the channel layer answer and the outbox keeps up, else 503.

    ``outbox``: ``backlog`` (committed events not yet published) and ``lag_seconds`` (how long the oldest has waited);
    past ``OUTBOX_UNHEALTHY_LAG_SECONDS`` the gateway is unhealthy: events are not reaching the screens.
    """
    checks: dict[str, str] = {}
    outbox: dict[str, Any] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
        backlog = read_backlog()
        outbox = backlog.as_dict()
        limit = realtime_settings.OUTBOX_UNHEALTHY_LAG_SECONDS
        checks["outbox"] = (
            "ok" if backlog.lag_seconds <= limit else f"error: lagging {backlog.lag_seconds:.1f}s > {limit:g}s"
        )
    except Exception as exc:
        checks.setdefault("database", f"error: {type(exc).__name__}")
        checks.setdefault("outbox", f"error: {type(exc).__name__}")
    try:
        layer = get_channel_layer()
        async_to_sync(layer.group_send)("rt.healthz", {"type": "rt.healthz"})
        checks["channel_layer"] = "ok"
    except Exception as exc:
        checks["channel_layer"] = f"error: {type(exc).__name__}"
    healthy = all(value == "ok" for value in checks.values())
    body = {"status": "ok" if healthy else "unavailable", **checks, **outbox}
    return JsonResponse(body, status=200 if healthy else 503)
