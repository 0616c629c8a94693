"""``POST /v1/events`` and ``POST /v1/events/batch``: the publish path, kept cheap.

REST publishing is what saturates a process first (docs/performance.md), so these endpoints skip DRF and, in a
running server, Django too: ``realtime.api.fastpath`` answers them straight from ASGI with ``handle_publish`` below
(the Django views here call the same function, for the test client and any other mount). The JWT is checked in the
event loop (simplejwt's ``AccessToken``, no database), the user and the permission are read in one database hop
(remembered for ``PUBLISH_AUTH_CACHE_SECONDS`` and forgotten on any access change), and the events are published
with ``realtime.publishing`` on the same loop. Errors keep the protocol's shape.

An optional ``idempotency_key`` makes a publish safe to retry: the first answers 202, a repeat within
``PUBLISH_DEDUP_SECONDS`` 200 with the same body (nothing published again), a repeat with a different event 409.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connection
from django.db.models import Q
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import AccessToken

from accounts import authz
from accounts.models import User
from accounts.permissions import Perm
from realtime.conf import realtime_settings
from realtime.errors import (
    Forbidden,
    InvalidParams,
    MethodNotAllowed,
    PayloadTooLarge,
    ProtocolError,
    Unauthenticated,
    UnsupportedMediaType,
)
from realtime.hub import aget_hub
from realtime.jsondecode import decode_json
from realtime.protocol import describe_validation_error
from realtime.publishing import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    PublishItem,
    apublish_prepared,
    prepare,
    prepare_batch,
)
from realtime.registry import ChannelSpec, Scope
from realtime.stores import access_cache

JSON_MEDIA_TYPE = "application/json"


class PublishBody(BaseModel):
    """The body of ``POST /v1/events`` (and each item of a batch); validated like protocol messages."""

    model_config = ConfigDict(extra="forbid", strict=True)
    channel: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    event: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    location_id: str | None = None
    user_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=MAX_IDEMPOTENCY_KEY_LENGTH)] | None = (
        Field(
            None,
            description="Makes the publish safe to retry: a repeat for the same stream within PUBLISH_DEDUP_SECONDS "
            "publishes nothing and answers 200 with the first publish's body; a different event under the key: 409",
        )
    )


class BatchBody(BaseModel):
    """The body of ``POST /v1/events/batch``: up to ``PUBLISH_BATCH_MAX`` events of the single-publish shape."""

    model_config = ConfigDict(extra="forbid", strict=True)
    events: list[dict[str, Any]] = Field(description="Each item has the shape of POST /v1/events' body")


def may_publish(user: User, scope: Scope, scope_id: str) -> bool:
    """``events.publish`` at the location; for a user's notifications, at a location where that user is a member."""
    if not user.is_active:
        return False
    if user.is_superuser:
        return True
    if scope is Scope.LOCATION:
        return authz.has_permission_at(user, Perm.EVENTS_PUBLISH, [scope_id])
    target = User.objects.filter(public_id=scope_id, is_active=True).first()
    if target is None:
        return False
    return (
        authz.permitted_locations(user, Perm.EVENTS_PUBLISH)
        .filter(Q(memberships__user=target) | Q(organization__memberships__user=target))
        .exists()
    )


MAX_REMEMBERED_LOCATIONS = 1000
"""A publisher's grants at up to this many locations are remembered from one database hop (more: only the one asked)."""


def load_publisher(user_pk: Any, scope: Scope, scope_id: str) -> tuple[User | None, bool, set[str]]:
    """The token's user (None when missing or inactive), whether it may publish there, and, for a location, every
    location where it may publish (so one database hop answers for all of them): one hop."""
    if not connection.in_atomic_block:  # outside Django's request cycle (the fast path) nobody else drops a broken
        close_old_connections()  # or expired connection; never inside a transaction (a test's, a caller's)
    user = User.objects.filter(**{jwt_settings.USER_ID_FIELD: user_pk}).first()
    if user is None or not user.is_active:
        return None, False, set()
    if scope is Scope.LOCATION and not user.is_superuser:
        permitted = authz.permitted_location_ids(user, Perm.EVENTS_PUBLISH)  # as has_permission_at decides
        return user, scope_id in permitted, permitted
    return user, may_publish(user, scope, scope_id), set()


aload_publisher = sync_to_async(load_publisher)
_loading: dict[tuple[str, str], asyncio.Future[tuple[User | None, bool, set[str]]]] = {}


async def aauthorize_publisher(user_pk: Any, spec: ChannelSpec, scope_id: str) -> bool:
    """May the token's user publish to ``spec``'s stream at ``scope_id``? Remembered briefly
    (``realtime.stores.access_cache``), with its grants at the channel's other locations; concurrent misses share a
    load."""
    await aget_hub()  # this process must hear access changes to forget what it remembered
    stream = spec.stream(scope_id)
    remembered = access_cache.recall(user_pk, stream)
    if remembered is not None:
        return remembered
    key = (str(user_pk), stream if spec.scope is not Scope.LOCATION else spec.name)
    pending = _loading.get(key)
    if pending is None:
        pending = _loading[key] = asyncio.ensure_future(aload_publisher(user_pk, spec.scope, scope_id))
        pending.add_done_callback(lambda _: _loading.pop(key, None))
    user, allowed, permitted = await asyncio.shield(pending)
    if user is None:
        raise Unauthenticated("The token's user does not exist or is inactive")
    if spec.scope is Scope.LOCATION:
        allowed = user.is_superuser or scope_id in permitted  # a shared load asked about another location
        if len(permitted) <= MAX_REMEMBERED_LOCATIONS:
            for location_id in permitted:
                access_cache.remember(user_pk, user.public_id, spec.stream(location_id), True)
    access_cache.remember(user_pk, user.public_id, stream, allowed)
    return allowed


def bearer_user_pk(authorization: str) -> Any:
    """The user pk of a valid ``Authorization: Bearer <access token>``; checked in-process, no database."""
    kind, _, raw = authorization.partition(" ")
    if kind.lower() != "bearer" or not raw.strip():
        raise Unauthenticated("Authentication credentials were not provided.")
    try:
        token = AccessToken(raw.strip())  # type: ignore[arg-type]
    except TokenError:
        raise Unauthenticated("Invalid or expired access token") from None
    return token.get(jwt_settings.USER_ID_CLAIM)


@dataclass
class Answer:
    """An HTTP answer of the publish endpoints, before any framework turns it into a response."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def error_answer(error: ProtocolError, headers: dict[str, str] | None = None) -> Answer:
    return Answer(error.http_status, error.as_body(), headers or {})


def body_limit() -> int:
    return realtime_settings.PUBLISH_MAX_BODY_BYTES


def refuse_request(method: str, content_type: str, length: int) -> Answer | None:
    """What is wrong before the body is read: 413, then 415, then 405 (the order of Django's path)."""
    limit = body_limit()
    if length > limit:
        return error_answer(PayloadTooLarge(limit))
    media_type = content_type.partition(";")[0].strip().lower()
    if method in {"POST", "PUT", "PATCH"} and length != 0 and media_type != JSON_MEDIA_TYPE:
        return error_answer(UnsupportedMediaType())
    if method != "POST":
        return error_answer(MethodNotAllowed(method, ["POST"]), {"Allow": "POST"})
    return None


def item_of(raw: Any) -> PublishItem:
    try:
        body = PublishBody.model_validate(raw)
    except ValidationError as exc:
        raise InvalidParams(describe_validation_error(exc, what="parameter")) from None
    return PublishItem(body.channel, body.event, body.location_id, body.user_id, body.data, body.idempotency_key)


async def handle_publish(authorization: str, body: bytes, *, batch: bool) -> Answer:
    """Authenticate, validate, authorize and publish one event or a batch; any ``ProtocolError`` is its answer."""
    try:
        user_pk = bearer_user_pk(authorization)
        raw = decode_json(body or b"null", what="Request body")
        if batch:
            return await publish_batch_body(user_pk, raw)
        prepared = prepare(item_of(raw))
        await require_publisher(user_pk, prepared.spec, prepared.scope_id, prepared.stream)
        published = (await apublish_prepared([prepared], source="rest", batch=False))[0]
    except ProtocolError as error:
        return error_answer(error)
    return Answer(200 if published.duplicate else 202, published.as_body())


async def publish_batch_body(user_pk: Any, raw: Any) -> Answer:
    if not isinstance(raw, Mapping):
        raise InvalidParams("Invalid request body: must be a JSON object with events")
    try:
        events = BatchBody.model_validate(raw).events
    except ValidationError as exc:
        raise InvalidParams(describe_validation_error(exc, what="parameter")) from None
    limit = realtime_settings.PUBLISH_BATCH_MAX
    if not 1 <= len(events) <= limit:
        raise InvalidParams(f"Invalid parameter events: must hold 1 to {limit} events, not {len(events)}")
    prepared = prepare_batch(events, item_of)
    checked: set[str] = set()
    for event in prepared:  # every stream of the batch is allowed, or nothing is published
        if event.stream not in checked:
            await require_publisher(user_pk, event.spec, event.scope_id, event.stream)
            checked.add(event.stream)
    published = await apublish_prepared(prepared, source="rest")
    results = [{**p.as_body(), "duplicate": p.duplicate} for p in published]
    return Answer(202, {"results": results})


async def require_publisher(user_pk: Any, spec: ChannelSpec, scope_id: str, stream: str) -> None:
    if not await aauthorize_publisher(user_pk, spec, scope_id):
        raise Forbidden(f"Not allowed to publish to {stream}", required_permission="events.publish")


async def django_answer(request: HttpRequest, *, batch: bool) -> JsonResponse:
    """The Django view's side of ``handle_publish`` (the fast path answers first in a running server)."""
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    refused = refuse_request(request.method or "", request.content_type or "", length)
    if refused is None:
        body = request.body
        refused = error_answer(PayloadTooLarge(body_limit())) if len(body) > body_limit() else None
    if refused is None:
        answer = await handle_publish(request.headers.get("Authorization", ""), body, batch=batch)
    else:
        answer = refused
    return JsonResponse(answer.body, status=answer.status, headers=answer.headers)


@csrf_exempt
async def publish_event(request: HttpRequest) -> JsonResponse:
    """Publish one event: 202 with its id and stream position (200 for a repeated idempotency key)."""
    return await django_answer(request, batch=False)


@csrf_exempt
async def publish_batch(request: HttpRequest) -> JsonResponse:
    """Publish up to ``PUBLISH_BATCH_MAX`` events: 202 with one result per item, in order."""
    return await django_answer(request, batch=True)
