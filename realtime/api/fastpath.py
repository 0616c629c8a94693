"""``POST /v1/events`` and ``/v1/events/batch`` answered straight from ASGI, in front of Django.

Django's ASGI handler costs several times the publish itself per request (a request object, eight middlewares,
URL resolving, signals, a response object: docs/performance.md). These two endpoints need none of it, so
``PublishFastPath`` answers them with ``realtime.api.publish.handle_publish``, the function the Django views call
too, keeping every rule of the Django path:

- the same checks in the same order: 413 ``payload_too_large`` (``PUBLISH_MAX_BODY_BYTES``, also for a chunked
  body), 415 ``unsupported_media_type``, 405 ``method_not_allowed`` with ``Allow``, then authentication (JWT,
  in-process), validation and authorization (``realtime.stores.access_cache``), in the protocol's error shape;
- a Host outside ``ALLOWED_HOSTS`` (or a ``root_path`` mount) is left to Django, which refuses it as before;
- the headers ``SecurityMiddleware`` and ``XFrameOptionsMiddleware`` add to every answer;
- an unexpected error is logged by ``django.request`` as Django logs it (``Internal Server Error: /v1/events``,
  with the traceback and the request) and answered 500 ``internal_error``; 4xx answers are logged as warnings.

Every other request goes to Django untouched.
"""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from django.http.request import split_domain_port, validate_host
from django.utils.log import log_response

from realtime.api import publish
from realtime.errors import InternalError, InvalidMessage, PayloadTooLarge

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PUBLISH_PATHS = {"/v1/events": False, "/v1/events/batch": True}  # path -> batch
_MAX_REMEMBERED_HOSTS = 64


class PublishFastPath:
    """ASGI middleware: the publish endpoints here, everything else to ``app`` (Django)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._hosts: dict[bytes, bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        batch = PUBLISH_PATHS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if batch is None or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())  # a repeated header: the last one, as Django's META keeps it
        if not self.host_allowed(headers.get(b"host", b"")):
            await self.app(scope, receive, send)
            return
        await self.answer(scope, receive, send, headers, batch)

    def host_allowed(self, host: bytes) -> bool:
        """``ALLOWED_HOSTS`` as ``HttpRequest.get_host`` applies it (DEBUG with none: the local names)."""
        found = self._hosts.get(host)
        if found is None:
            allowed = list(settings.ALLOWED_HOSTS)
            if settings.DEBUG and not allowed:
                allowed = [".localhost", "127.0.0.1", "[::1]"]
            domain, _port = split_domain_port(host.decode("latin-1"))
            found = bool(domain) and validate_host(domain, allowed)
            if len(self._hosts) >= _MAX_REMEMBERED_HOSTS:
                self._hosts.clear()
            self._hosts[host] = found
        return found

    async def drain(self, receive: Receive) -> None:
        """Read and drop the rest of a refused body, as Django's handler does, so the client is not cut off mid-send."""
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return

    async def answer(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes], batch: bool
    ) -> None:
        method = scope.get("method", "")
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        raw_length = headers.get(b"content-length")
        body = b""
        try:
            refused = None
            limit = publish.body_limit()
            try:
                length = None if raw_length is None else int(raw_length)
            except ValueError:
                refused = publish.error_answer(InvalidMessage("Invalid Content-Length header"))
            else:
                if length is not None and length > limit:
                    refused = publish.error_answer(PayloadTooLarge(limit))
                    await self.drain(receive)
            if refused is None:
                body, too_large = await read_body(receive, limit)
                refused = (
                    publish.error_answer(PayloadTooLarge(limit))
                    if too_large
                    else publish.refuse_request(method, content_type, len(body))
                )
            if refused is None:
                answer = await publish.handle_publish(
                    headers.get(b"authorization", b"").decode("latin-1"), body, batch=batch
                )
            else:
                answer = refused
        except Exception as exc:
            answer = publish.error_answer(InternalError())
            log_response(
                "%s: %s",
                HTTPStatus(500).phrase,
                scope["path"],
                response=HttpResponse(status=500),
                request=django_request(scope, body),
                exception=exc,
            )
        else:
            if answer.status >= 400:
                log_response(
                    "%s: %s",
                    HTTPStatus(answer.status).phrase,
                    scope["path"],
                    response=HttpResponse(status=answer.status),
                    request=django_request(scope, body),
                )
        await send_json(send, answer.status, answer.body, answer.headers)


async def read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The whole body, or (b"", True) when it passes ``limit`` (a chunked body has no length to check before)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect: nobody to answer
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        if not message.get("more_body", False):  # past the limit: read to the end anyway, keeping nothing
            return (b"", True) if size > limit else (b"".join(chunks), False)


def django_request(scope: Scope, body: bytes) -> Any:
    """The request Django's handler would have logged (built only when something is logged)."""
    from django.core.handlers.asgi import ASGIRequest

    return ASGIRequest(scope, io.BytesIO(body))


def security_headers() -> list[tuple[bytes, bytes]]:
    """What ``SecurityMiddleware`` and ``XFrameOptionsMiddleware`` add to an answer of the Django path."""
    found: list[tuple[bytes, bytes]] = []
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        found.append((b"x-content-type-options", b"nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        policy = settings.SECURE_REFERRER_POLICY
        value = policy if isinstance(policy, str) else ",".join(policy)
        found.append((b"referrer-policy", value.encode()))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        found.append((b"cross-origin-opener-policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode()))
    found.append((b"x-frame-options", getattr(settings, "X_FRAME_OPTIONS", "DENY").upper().encode()))
    return found


async def send_json(send: Send, status: int, body: dict[str, Any], extra: dict[str, str]) -> None:
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *security_headers(),
        *((name.lower().encode(), value.encode()) for name, value in extra.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
