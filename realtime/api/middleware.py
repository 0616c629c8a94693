"""Every answer under ``/v1/`` (and ``/healthz``) is JSON in the protocol's error shape, whatever went wrong.

Django answers what happens outside a view (an unknown path, a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE``, a crash
in a middleware) with HTML pages meant for people. API clients get the same answers as data instead::

    GET /v1/nope              404 {"code": "not_found", "message": "Not found"}
    POST /v1/events (10 MB)   413 {"code": "payload_too_large", "message": "...", "limit": 1048576}
    POST /v1/events (text)    415 {"code": "unsupported_media_type", "message": "Send the body as application/json"}

Unexpected errors are still logged by Django (``django.request``, with the traceback, method and path) before their
HTML page is replaced by ``internal_error``. The admin and the console keep Django's HTML pages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponseBase, JsonResponse

from realtime.errors import (
    Forbidden,
    InternalError,
    InvalidMessage,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ProtocolError,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
)

API_PREFIXES = ("/v1/", "/healthz")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
JSON_MEDIA_TYPE = "application/json"


def is_api_request(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIXES)


def body_limit_bytes() -> int:
    """The one request body limit: Django's own, which ``request.body`` enforces too."""
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0


def error_response(error: ProtocolError, headers: dict[str, str] | None = None) -> JsonResponse:
    return JsonResponse(error.as_body(), status=error.http_status, headers=headers)


def refuse_before_view(request: HttpRequest) -> JsonResponse | None:
    """Refuse a body that is too large or not JSON before anything reads it."""
    raw_length = request.META.get("CONTENT_LENGTH") or "0"
    try:
        length = int(raw_length)
    except ValueError:
        return error_response(InvalidMessage("Invalid Content-Length header"))
    limit = body_limit_bytes()
    if limit and length > limit:
        return error_response(PayloadTooLarge(limit))
    if request.method in BODY_METHODS and "CONTENT_LENGTH" not in request.META:
        # A chunked body: the server already holds it; measure it once, so DRF (which reads only as many bytes as
        # Content-Length says) sees it too instead of an empty body.
        try:
            length = len(request.body)
        except RequestDataTooBig:
            return error_response(PayloadTooLarge(limit))
        if length:
            request.META["CONTENT_LENGTH"] = str(length)
    if request.method in BODY_METHODS and length > 0 and request.content_type != JSON_MEDIA_TYPE:
        return error_response(UnsupportedMediaType())
    return None


def error_for_status(request: HttpRequest, response: HttpResponseBase) -> ProtocolError:
    """The protocol error that says what Django's HTML page for this status said."""
    status = response.status_code
    if status == 404:
        return NotFound()
    if status == 405:
        allowed = [m.strip() for m in response.get("Allow", "").split(",") if m.strip()]
        return MethodNotAllowed(request.method or "", allowed)
    if status == 413:
        return PayloadTooLarge(body_limit_bytes())
    if status == 415:
        return UnsupportedMediaType()
    if status == 401:
        return Unauthenticated()
    if status == 403:
        return Forbidden()
    if status == 503:
        return Unavailable()
    if status >= 500:
        return InternalError()
    return InvalidMessage("Bad request")


def as_json(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """Replace a non-JSON error page by the same answer in the protocol's shape (a 5xx becomes a 500 or 503)."""
    status = response.status_code
    if status < 400 or response.get("Content-Type", "").startswith(JSON_MEDIA_TYPE):
        return response
    error = error_for_status(request, response)
    replacement = error_response(error)
    replacement.status_code = status if status < 500 else error.http_status
    if getattr(response, "_has_been_logged", False):  # Django logged the original, traceback and all: once is enough
        replacement._has_been_logged = True  # type: ignore[attr-defined]
    return replacement


class JsonApiErrorsMiddleware:
    """Answer API requests with JSON errors only; sync and async, so async views keep running without a thread."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        if not is_api_request(request):
            return self.get_response(request)
        refused = refuse_before_view(request)
        if refused is not None:
            return refused
        return as_json(request, self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        if not is_api_request(request):
            return await get_response(request)
        refused = refuse_before_view(request)
        if refused is not None:
            return refused
        return as_json(request, await get_response(request))

    def process_exception(self, request: HttpRequest, exception: Exception) -> JsonResponse | None:
        """A body that turned out too large only when read (no or a false Content-Length): 413, not Django's 400."""
        if is_api_request(request) and isinstance(exception, RequestDataTooBig):
            return error_response(PayloadTooLarge(body_limit_bytes()))
        return None
