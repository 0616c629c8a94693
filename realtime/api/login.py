"""Throttled logins: ``POST /v1/auth/token`` and ``/v1/auth/token/refresh`` count failures, not requests.

Built on DRF's ``SimpleRateThrottle`` (its sliding window of timestamps, kept in a Django cache) rather than a
counter of our own, and on a cache that every process shares: Redis when ``REDIS_URL`` is set. Two counts apply:
``LOGIN_FAILURES_PER_USERNAME`` (10) for each username tried, and ``LOGIN_FAILURES_PER_ADDRESS`` (50) for each
client address (``realtime.proxy`` decides what that is), both over ``LOGIN_FAILURE_WINDOW_SECONDS`` (15 minutes).

An attempt is counted when it is let in, before the password is hashed, so a burst of concurrent guesses cannot
all slip through one check; a success gives its attempt back and clears its username's count, a request refused
before any credential was checked (429, a missing field) gives its attempts back. Past a limit::

    429 Retry-After: 512
    {"code": "rate_limited", "message": "Too many failed logins; try again later", "retry_after_ms": 511234}

A lockout is written to ``accounts.LoginLockout`` as it begins, for the admin; deleting the row clears its count.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping, Sequence
from contextlib import suppress
from datetime import timedelta
from typing import Any, ClassVar

from django.core.cache import caches
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer, TokenRefreshSerializer
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView, TokenViewBase

from accounts.models import LoginLockout, User
from realtime.api.schemas import ErrorBody
from realtime.conf import realtime_settings
from realtime.errors import RateLimited

logger = logging.getLogger(__name__)
LOGIN_THROTTLE_CACHE = "login_throttle"


class LoginRateLimited(RateLimited):
    default_message = "Too many failed logins; try again later"


def failures_key(kind: str, identity: str) -> str:
    """The cache key of one count; hashed, so any username makes a valid key of fixed length."""
    return f"login-failures:{kind}:{hashlib.sha256(identity.encode()).hexdigest()[:32]}"


def clear_failures(kind: str, identity: str) -> None:
    caches[LOGIN_THROTTLE_CACHE].delete(failures_key(kind, identity))


def clear_on_lockout_delete(sender: type[LoginLockout], instance: LoginLockout, **kwargs: Any) -> None:
    """Deleting a lockout in the admin lets that username or address try again at once."""
    clear_failures(instance.kind, instance.identity)


class LoginFailures(SimpleRateThrottle):
    """Login failures of one kind in a sliding window: DRF's list of timestamps, newest first, in the shared cache."""

    kind: ClassVar[str]
    limit_setting: ClassVar[str]

    def __init__(self) -> None:
        # The limits are gateway settings, read here rather than parsed from a DRF rate string ("10/15m" has none).
        self.num_requests = int(getattr(realtime_settings, self.limit_setting))
        self.duration = realtime_settings.LOGIN_FAILURE_WINDOW_SECONDS
        self.rate = f"{self.num_requests}/{self.duration}s"  # for reading only: DRF checks that it is set
        self.cache = caches[LOGIN_THROTTLE_CACHE]
        self.key: str | None = None
        self.identity: str | None = None
        self.history: list[float] = []

    def identity_of(self, request: Request) -> str | None:
        raise NotImplementedError

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        self.identity = self.identity_of(request)
        return None if self.identity is None else failures_key(self.kind, self.identity)

    def wait(self) -> float:
        """Seconds until enough failures leave the window for one more attempt."""
        if len(self.history) < self.num_requests:
            return 0.0
        return max(0.0, self.history[self.num_requests - 1] + self.duration - self.now)

    @property
    def counted(self) -> bool:
        """Did ``allow_request`` record an attempt for this request?"""
        return self.key is not None and bool(self.history) and self.history[0] == getattr(self, "now", None)

    def give_back(self) -> None:
        """Un-count this request's attempt: it succeeded, or no credential was checked."""
        assert self.key is not None
        history: list[float] = self.cache.get(self.key, [])
        with suppress(ValueError):
            history.remove(self.now)
        if history:
            self.cache.set(self.key, history, self.duration)
        else:
            self.cache.delete(self.key)

    def reset(self) -> None:
        assert self.key is not None
        self.cache.delete(self.key)

    def note_lockout(self) -> None:
        """Record, for the admin, a count that has just reached its limit."""
        if self.identity is None or len(self.history) < self.num_requests:
            return
        now = timezone.now()
        LoginLockout.objects.update_or_create(
            kind=self.kind,
            identity=self.identity[:150],
            defaults={
                "failures": len(self.history),
                "locked_at": now,
                "locked_until": now + timedelta(seconds=self.wait()),
            },
        )
        logger.warning("login locked out: %s %r after %d failures", self.kind, self.identity, len(self.history))


class UsernameFailures(LoginFailures):
    kind = LoginLockout.Kind.USERNAME
    limit_setting = "LOGIN_FAILURES_PER_USERNAME"

    def identity_of(self, request: Request) -> str | None:
        data = request.data
        username = data.get(User.USERNAME_FIELD) if isinstance(data, Mapping) else None
        if isinstance(username, bool) or not isinstance(username, str | int | float):
            return None  # the serializer refuses it: no credential will be checked
        # As the serializer's CharField reads it (" john " and 7 are "john" and "7"), so no spelling escapes the count.
        return str(username).strip()[:150] or None


class AddressFailures(LoginFailures):
    kind = LoginLockout.Kind.ADDRESS
    limit_setting = "LOGIN_FAILURES_PER_ADDRESS"

    def identity_of(self, request: Request) -> str | None:
        return request.META.get("REMOTE_ADDR") or None  # already the client's, from a trusted proxy only


class ThrottledTokenView(TokenViewBase):
    """A simplejwt token view whose failures count against its throttles; see the module docstring."""

    throttle_classes: Sequence[type[BaseThrottle]] = []

    def check_throttles(self, request: Request) -> None:
        throttles: list[LoginFailures] = self.get_throttles()  # type: ignore[assignment]
        refused = [throttle for throttle in throttles if not throttle.allow_request(request, self)]
        self.counted = [throttle for throttle in throttles if throttle.counted]
        if refused:
            self.give_back_attempts()
            wait_seconds = max(throttle.wait() for throttle in refused)
            raise LoginRateLimited(max(1, math.ceil(wait_seconds * 1000)))

    def give_back_attempts(self) -> None:
        for throttle in getattr(self, "counted", []):
            throttle.give_back()
        self.counted = []

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            response = super().post(request, *args, **kwargs)
        except AuthenticationFailed:  # wrong credentials or an invalid token: a failure, it stays counted
            for throttle in self.counted:
                throttle.note_lockout()
            raise
        except Exception:  # no credential was checked (a missing field, a broken body)
            self.give_back_attempts()
            raise
        for throttle in self.counted:
            if throttle.kind == LoginLockout.Kind.USERNAME:
                throttle.reset()  # a successful login clears its username's count
            else:
                throttle.give_back()
        return response


RATE_LIMITED = OpenApiResponse(
    ErrorBody, description="rate_limited (retry_after_ms): too many failures for this username or address"
)
RETRY_AFTER = OpenApiParameter(
    "Retry-After", int, location=OpenApiParameter.HEADER, response=[429], description="Seconds to wait"
)


@extend_schema(
    summary="Log in: an access and a refresh token for a username and password",
    responses={200: TokenObtainPairSerializer, 400: ErrorBody, 401: ErrorBody, 429: RATE_LIMITED},
    parameters=[RETRY_AFTER],
)
class LoginView(ThrottledTokenView, TokenObtainPairView):
    """``POST /v1/auth/token``: a username and password for an access and a refresh token."""

    throttle_classes = [UsernameFailures, AddressFailures]


@extend_schema(
    summary="A new access token for a refresh token",
    responses={200: TokenRefreshSerializer, 400: ErrorBody, 401: ErrorBody, 429: RATE_LIMITED},
    parameters=[RETRY_AFTER],
)
class RefreshView(ThrottledTokenView, TokenRefreshView):
    """``POST /v1/auth/token/refresh``: a refresh token for a new access token (counted per address only: a
    refresh token names no user until it is verified)."""

    throttle_classes = [AddressFailures]


def connect_receivers() -> None:
    from django.db.models.signals import post_delete

    post_delete.connect(clear_on_lockout_delete, sender=LoginLockout, dispatch_uid="realtime.login.lockout_deleted")
