"""``POST /v1/events`` as a native async view: the publish path without a thread per request.

REST publishing is what saturates a process first (docs/performance.md), so this endpoint skips DRF: the JWT is
checked in the event loop (simplejwt's ``AccessToken``, no database), the user and the permission are read in one
database hop (remembered for ``PUBLISH_AUTH_CACHE_SECONDS`` and forgotten on any access change), and the event is
published with ``apublish`` on the same loop. Errors keep the protocol's shape.
"""

from __future__ import annotations

from typing import Annotated, Any

from asgiref.sync import sync_to_async
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
from realtime.errors import Forbidden, InvalidParams, MethodNotAllowed, ProtocolError, Unauthenticated
from realtime.hub import aget_hub
from realtime.jsondecode import decode_json
from realtime.protocol import describe_validation_error
from realtime.publishing import apublish, resolve_target
from realtime.registry import Scope
from realtime.stores import access_cache


class PublishBody(BaseModel):
    """The body of ``POST /v1/events``; validated like protocol messages, with the same error sentences."""

    model_config = ConfigDict(extra="forbid", strict=True)
    channel: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    event: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    location_id: str | None = None
    user_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


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


def load_publisher(user_pk: Any, scope: Scope, scope_id: str) -> tuple[User | None, bool]:
    """The token's user (None when missing or inactive) and whether it may publish there: one database hop."""
    user = User.objects.filter(**{jwt_settings.USER_ID_FIELD: user_pk}).first()
    if user is None or not user.is_active:
        return None, False
    return user, may_publish(user, scope, scope_id)


aload_publisher = sync_to_async(load_publisher)


async def aauthorize_publisher(user_pk: Any, scope: Scope, scope_id: str, stream: str) -> bool:
    """May the token's user publish to ``stream``? Remembered briefly (``realtime.stores.access_cache``)."""
    await aget_hub()  # this process must hear access changes to forget what it remembered
    remembered = access_cache.recall(user_pk, stream)
    if remembered is not None:
        return remembered
    user, allowed = await aload_publisher(user_pk, scope, scope_id)
    if user is None:
        raise Unauthenticated("The token's user does not exist or is inactive")
    access_cache.remember(user_pk, user.public_id, stream, allowed)
    return allowed


def bearer_user_pk(request: HttpRequest) -> Any:
    kind, _, raw = request.headers.get("Authorization", "").partition(" ")
    if kind.lower() != "bearer" or not raw.strip():
        raise Unauthenticated("Authentication credentials were not provided.")
    try:
        token = AccessToken(raw.strip())  # type: ignore[arg-type]
    except TokenError:
        raise Unauthenticated("Invalid or expired access token") from None
    return token.get(jwt_settings.USER_ID_CLAIM)


@csrf_exempt
async def publish_event(request: HttpRequest) -> JsonResponse:
    """Publish one event; 202 with its id and stream position."""
    if request.method != "POST":
        refused = MethodNotAllowed(request.method or "", ["POST"])
        return JsonResponse(refused.as_body(), status=refused.http_status, headers={"Allow": "POST"})
    try:
        user_pk = bearer_user_pk(request)
        try:
            body = PublishBody.model_validate(decode_json(request.body or b"null", what="Request body"))
        except ValidationError as exc:
            raise InvalidParams(describe_validation_error(exc, what="parameter")) from None
        spec, scope_id = resolve_target(body.channel, body.event, location_id=body.location_id, user_id=body.user_id)
        allowed = await aauthorize_publisher(user_pk, spec.scope, scope_id, spec.stream(scope_id))
        if not allowed:
            raise Forbidden(f"Not allowed to publish to {spec.stream(scope_id)}", required_permission="events.publish")
        published = await apublish(
            spec.name, body.event, location_id=body.location_id, user_id=body.user_id, data=body.data, source="rest"
        )
    except ProtocolError as error:
        return JsonResponse(error.as_body(), status=error.http_status)
    return JsonResponse(
        {"event_id": published.event_id, "stream": published.stream, "seq": published.seq, "epoch": published.epoch},
        status=202,
    )
