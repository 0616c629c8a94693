"""REST errors in the protocol's shape: ``{"code": ..., "message": ...}``, whatever raised them."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from realtime.errors import ErrorCode, MethodNotAllowed, ProtocolError, RateLimited

_DRF_CODES = {
    exceptions.NotAuthenticated: ErrorCode.UNAUTHENTICATED,
    exceptions.AuthenticationFailed: ErrorCode.UNAUTHENTICATED,
    exceptions.PermissionDenied: ErrorCode.FORBIDDEN,
    exceptions.ParseError: ErrorCode.INVALID_MESSAGE,
    exceptions.Throttled: ErrorCode.RATE_LIMITED,
    exceptions.UnsupportedMediaType: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    exceptions.NotAcceptable: ErrorCode.INVALID_MESSAGE,
    exceptions.NotFound: ErrorCode.NOT_FOUND,
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, exceptions.MethodNotAllowed):
        view = context.get("view")
        allowed = list(getattr(view, "allowed_methods", []))
        exc = MethodNotAllowed(context["request"].method, allowed)
        return Response(exc.as_body(), status=exc.http_status, headers={"Allow": ", ".join(allowed)})
    if isinstance(exc, exceptions.Throttled):
        exc = RateLimited(int((getattr(exc, "wait", None) or 1) * 1000))
    if isinstance(exc, ProtocolError):
        return Response(exc.as_body(), status=exc.http_status, headers=protocol_error_headers(exc))
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = next((c for kind, c in _DRF_CODES.items() if isinstance(exc, kind)), None)
    if code is None:
        code = ErrorCode.INVALID_MESSAGE if response.status_code == 400 else ErrorCode.INTERNAL_ERROR
        if response.status_code == 404:
            return Response({"code": "not_found", "message": "Not found"}, status=404)
    response.data = {"code": code.value, "message": describe_drf_detail(response.data)}
    return response


def protocol_error_headers(error: ProtocolError) -> dict[str, str]:
    """``Retry-After`` (whole seconds, rounded up) beside ``retry_after_ms``, as RFC 9110 has it."""
    retry_after_ms = error.details.get("retry_after_ms")
    if isinstance(retry_after_ms, int):
        return {"Retry-After": str(max(1, -(-retry_after_ms // 1000)))}
    return {}


def describe_drf_detail(data: Any) -> str:
    """One sentence from DRF's error data: its ``detail``, or the first field's first problem."""
    if isinstance(data, dict):
        if "detail" in data:
            return str(data["detail"])
        for field, problems in data.items():
            first = problems[0] if isinstance(problems, list) and problems else problems
            return f"Invalid field {field}: {first}"
    if isinstance(data, list) and data:
        return str(data[0])
    return str(data)
