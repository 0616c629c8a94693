"""WebSocket authentication: where the token is found, and what makes it valid.

Browsers cannot set headers on a WebSocket, so the token may come three ways, first match wins:
``Authorization: Bearer <jwt>``; the subprotocol pair ``Sec-WebSocket-Protocol: bearer, <jwt>`` (the server then
accepts with subprotocol ``bearer``, as browsers require); the ``access_token`` query parameter.
Only access tokens are accepted: simplejwt's ``AccessToken`` checks the signature, the expiry and the token type,
so refresh tokens, ``alg: none`` and tokens signed with another key all fail.

The handshake path (``aauthenticate_token``) verifies the token in-process first, then takes the user from the
process's principal cache (``realtime.principals``): a bad or expired token costs no query and never enters the
cache, and a known user costs no query and no thread hop. A token already verified in this process (a screen's
token is reused by each of its reconnects, and a restart storm brings them all back at once) is recognised by its
exact text until its ``exp``: the signature is not checked twice. Only tokens that passed verification are
remembered, at most ``VERIFIED_TOKENS_MAX`` of them, so bad tokens neither enter nor evict.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from realtime import principals
from realtime.errors import Unauthenticated

BEARER_SUBPROTOCOL = "bearer"
VERIFIED_TOKENS_MAX = 10_000
_verified: OrderedDict[str, VerifiedToken] = OrderedDict()  # raw token -> its checked claims, oldest first
_verified_lock = threading.Lock()  # the sync path may verify in a worker thread


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


@dataclass(frozen=True)
class VerifiedToken:
    user_pk: Any
    expires_at: float


def verify_token(raw: str | None) -> VerifiedToken:
    """Check an access token's signature, expiry and type, in-process; raise ``Unauthenticated``."""
    if not raw:
        raise Unauthenticated("Missing access token")
    with _verified_lock:
        known = _verified.get(raw)
        if known is not None:
            if time.time() < known.expires_at:  # stricter than the leeway: near the end, verify in full again
                _verified.move_to_end(raw)
                return known
            del _verified[raw]
    try:
        token = AccessToken(raw)  # type: ignore[arg-type]
    except TokenError:
        raise Unauthenticated("Invalid or expired access token") from None
    user_pk = token.get(jwt_settings.USER_ID_CLAIM)
    if user_pk is None:
        raise Unauthenticated("The token's user does not exist or is inactive")
    verified = VerifiedToken(user_pk, float(token["exp"]))
    with _verified_lock:
        _verified[raw] = verified
        while len(_verified) > VERIFIED_TOKENS_MAX:
            _verified.popitem(last=False)
    return verified


def forget_verified_tokens() -> None:
    """Forget every remembered verification (tests that change the signing key or the clock)."""
    with _verified_lock:
        _verified.clear()


def _identity(user: User | None, verified: VerifiedToken) -> Identity:
    if user is None or not user.is_active:
        raise Unauthenticated("The token's user does not exist or is inactive")
    return Identity(user, verified.expires_at)


def authenticate_token(raw: str | None) -> Identity:
    """Validate an access token and load its active user from the database, or raise ``Unauthenticated``."""
    verified = verify_token(raw)
    user = User.objects.filter(**{jwt_settings.USER_ID_FIELD: verified.user_pk}).first()
    return _identity(user, verified)


async def aauthenticate_token(raw: str | None) -> Identity:
    """Validate an access token in-process and take its active user from the principal cache (else one query)."""
    verified = verify_token(raw)
    return _identity(await principals.aget_user(verified.user_pk), verified)
