"""The OpenAPI 3.1 document: drf-spectacular for the DRF views, one table for the plain Django views.

``POST /v1/events`` and ``/healthz`` are plain (async) Django views that drf-spectacular cannot see; each is one
``PlainEndpoint`` entry below, added to the document by the ``document_plain_endpoints`` post-processing hook
(``SPECTACULAR_SETTINGS``). Adding a plain endpoint is adding an entry; the test that every ``/v1/`` route is in
the document (tests/realtime/test_openapi.py) fails until it is. The hook also gives every operation the shared
``ErrorBody`` as its ``default`` response: whatever goes wrong, the answer has that shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from realtime.api.publish import BatchBody, PublishBody
from realtime.api.schemas import BatchAccepted, ErrorBody, Health, PublishAccepted

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


@dataclass(frozen=True)
class PlainEndpoint:
    """One operation of a view drf-spectacular cannot introspect."""

    path: str
    method: str
    operation_id: str
    summary: str
    tag: str
    responses: Mapping[int, tuple[str, type[BaseModel]]]
    request: type[BaseModel] | None = None
    authenticated: bool = True
    errors: Mapping[int, str] = field(default_factory=dict)


PLAIN_ENDPOINTS: tuple[PlainEndpoint, ...] = (
    PlainEndpoint(
        path="/v1/events",
        method="post",
        operation_id="events_publish",
        summary="Publish one event to a channel's stream (needs events.publish there)",
        tag="events",
        request=PublishBody,
        responses={
            202: ("Published: its id and stream position", PublishAccepted),
            200: ("A repeat of the idempotency key: nothing published; the first publish's answer", PublishAccepted),
        },
        errors={
            400: "invalid_message, invalid_params or channel_not_found",
            401: "unauthenticated",
            403: "forbidden (required_permission: events.publish)",
            409: "idempotency_conflict (idempotency_key, stream): the key was used for a different event",
            413: "payload_too_large (limit: PUBLISH_MAX_BODY_BYTES)",
            415: "unsupported_media_type",
            503: "unavailable: the event backend is down",
        },
    ),
    PlainEndpoint(
        path="/v1/events/batch",
        method="post",
        operation_id="events_publish_batch",
        summary="Publish up to PUBLISH_BATCH_MAX events at once, all or nothing (events.publish at every location)",
        tag="events",
        request=BatchBody,
        responses={202: ("Published: one result per item, in order", BatchAccepted)},
        errors={
            400: "invalid_message, or invalid_params (errors: each bad item's index and message; too many items)",
            401: "unauthenticated",
            403: "forbidden (required_permission: events.publish): an item's location is refused; nothing published",
            409: "idempotency_conflict (idempotency_key, stream, index); nothing published",
            413: "payload_too_large (limit: PUBLISH_MAX_BODY_BYTES)",
            415: "unsupported_media_type",
            503: "unavailable: the event backend is down",
        },
    ),
    PlainEndpoint(
        path="/healthz",
        method="get",
        operation_id="healthz",
        summary="Liveness and readiness: the database and the channel layer answer, the outbox keeps up",
        tag="health",
        responses={200: ("Healthy", Health), 503: ("A check failed", Health)},
        authenticated=False,
    ),
)


def model_schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """``model``'s JSON Schema (2020-12, which OpenAPI 3.1 speaks), its sub-schemas moved into ``components``."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    for name, sub_schema in schema.pop("$defs", {}).items():
        components.setdefault(name, sub_schema)
    name = model.__name__  # as drf-spectacular's pydantic extension names it
    components.setdefault(name, schema)
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def build_operation(endpoint: PlainEndpoint, components: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "responses": {
            str(status): {"description": description, "content": json_content(model_schema(model, components))}
            for status, (description, model) in endpoint.responses.items()
        },
        "security": [{"jwtAuth": []}] if endpoint.authenticated else [],
    }
    for status, description in endpoint.errors.items():
        operation["responses"][str(status)] = {"description": description, "content": json_content(ERROR_REF)}
    if endpoint.request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": json_content(model_schema(endpoint.request, components)),
        }
    return operation


def document_plain_endpoints(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular post-processing hook: add ``PLAIN_ENDPOINTS`` and the shared error response."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    model_schema(ErrorBody, components)
    paths = result.setdefault("paths", {})
    for endpoint in PLAIN_ENDPOINTS:
        paths.setdefault(endpoint.path, {})[endpoint.method] = build_operation(endpoint, components)
    for operations in paths.values():
        for operation in operations.values():
            operation["responses"].setdefault(
                "default", {"description": "Any error, in the protocol's shape", "content": json_content(ERROR_REF)}
            )
    result["paths"] = dict(sorted(paths.items()))
    return result
