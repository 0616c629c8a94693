"""WebSocket authentication: where the token is found, and what makes it valid.

Browsers cannot set headers on a WebSocket, so the token may come three ways, first match wins:
``Authorization: Bearer <jwt>``; the subprotocol pair ``Sec-WebSocket-Protocol: bearer, <jwt>`` (the server then
accepts with subprotocol ``bearer``, as browsers require); the ``access_token`` query parameter.
Only access tokens are accepted: simplejwt's ``AccessToken`` checks the signature, the expiry and the token type,
so refresh tokens, ``alg: none`` and tokens signed with another key all fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from realtime.errors import Unauthenticated

BEARER_SUBPROTOCOL = "bearer"


@dataclass(frozen=True)
class Credentials:
    token: str | None
    subprotocol: str | None  # what the handshake must answer with, if anything


def extract_credentials(scope: dict[str, Any]) -> Credentials:
    """Find the token in a WebSocket handshake without ever logging it."""
    subprotocols = [p.strip() for p in scope.get("subprotocols") or []]
    accept = BEARER_SUBPROTOCOL if BEARER_SUBPROTOCOL in subprotocols else None
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and token.strip():
                return Credentials(token.strip(), accept)
    if accept is not None:
        index = subprotocols.index(BEARER_SUBPROTOCOL)
        if index + 1 < len(subprotocols):
            return Credentials(subprotocols[index + 1], accept)
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    tokens = query.get("access_token")
    return Credentials(tokens[0] if tokens else None, accept)


@dataclass(frozen=True)
class Identity:
    user: User
    expires_at: float  # the access token's exp, in epoch seconds


def authenticate_token(raw: str | None) -> Identity:
    """Validate an access token and load its active user, or raise ``Unauthenticated``."""
    if not raw:
        raise Unauthenticated("Missing access token")
    try:
        token = AccessToken(raw)  # type: ignore[arg-type]
    except TokenError:
        raise Unauthenticated("Invalid or expired access token") from None
    user_id = token.get(jwt_settings.USER_ID_CLAIM)
    user = User.objects.filter(**{jwt_settings.USER_ID_FIELD: user_id}).first() if user_id is not None else None
    if user is None or not user.is_active:
        raise Unauthenticated("The token's user does not exist or is inactive")
    return Identity(user, float(token["exp"]))


aauthenticate_token = database_sync_to_async(authenticate_token)
