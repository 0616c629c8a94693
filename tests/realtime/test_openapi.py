"""The OpenAPI 3.1 document at /v1/openapi.json and Swagger UI at /v1/docs/ (issues 18 section 3, 20)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from rest_framework.views import APIView

from realtime.api.openapi import PLAIN_ENDPOINTS
from tests.support.asgi import asgi_request

pytestmark = pytest.mark.django_db(transaction=True)

# The descriptions of the API are not part of what they describe (issue 18 serves AsyncAPI for /v1/ws beside it).
NOT_DOCUMENTED = {"/v1/openapi.json", "/v1/docs/", "/v1/asyncapi.json"}


def routes(patterns: list[Any] | None = None, prefix: str = "") -> list[tuple[str, Any]]:
    """Every URL pattern of the project as an OpenAPI path (``<str:stream>`` -> ``{stream}``) and its view."""
    found: list[tuple[str, Any]] = []
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found.extend(routes(pattern.url_patterns, route))
        elif isinstance(pattern, URLPattern):
            found.append(("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route), pattern.callback))
    return found


async def fetch_document() -> dict[str, Any]:
    answer = await asgi_request("GET", "/v1/openapi.json")
    assert answer.status == 200, answer.body[:300]
    assert answer.content_type.startswith("application/vnd.oai.openapi+json")
    return answer.json()  # type: ignore[no-any-return]


async def test_the_document_is_valid_openapi_3_1() -> None:
    document = await fetch_document()
    assert document["openapi"] == "3.1.0"
    validate(document)  # openapi-spec-validator picks the 3.1 validator from the version field
    broken = {**document, "paths": {"/v1/x": {"get": {"responses": {"200": {"content": 1}}}}}}
    with pytest.raises(OpenAPIValidationError):  # the validator does check
        validate(broken)


async def test_every_route_under_v1_is_documented() -> None:
    document = await fetch_document()
    documented = set(document["paths"])
    project_routes = routes()
    api_paths = {path for path, _ in project_routes if path.startswith("/v1/")} - NOT_DOCUMENTED
    assert {"/v1/auth/token", "/v1/auth/token/refresh", "/v1/events", "/v1/locations", "/v1/channels"} <= api_paths
    missing = api_paths - documented
    assert not missing, f"routes under /v1/ missing from the OpenAPI document (add a PlainEndpoint?): {missing}"
    assert "/healthz" in documented
    assert documented - api_paths == {"/healthz"}, "the document describes a path that does not exist"
    # Every method a DRF view answers is an operation; a plain view's are declared in PLAIN_ENDPOINTS.
    for path, callback in project_routes:
        view_class = getattr(callback, "cls", None)
        if path in api_paths and view_class is not None and issubclass(view_class, APIView):
            methods = {m.lower() for m in view_class().allowed_methods} - {"options", "head"}
            assert set(document["paths"][path]) == methods, path
    for endpoint in PLAIN_ENDPOINTS:
        assert endpoint.method in document["paths"][endpoint.path]


async def test_every_operation_documents_json_errors_in_the_protocol_shape() -> None:
    document = await fetch_document()
    error = document["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["code", "message"]
    codes = document["components"]["schemas"]["ErrorCode"]["enum"]
    assert {"rate_limited", "payload_too_large", "not_found", "invalid_message"} <= set(codes)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            default = operation["responses"]["default"]["content"]["application/json"]["schema"]
            assert default == {"$ref": "#/components/schemas/ErrorBody"}, (path, method)
    login_429 = document["paths"]["/v1/auth/token"]["post"]["responses"]["429"]
    assert "Retry-After" in login_429["headers"]
    events = document["paths"]["/v1/events"]["post"]
    assert events["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PublishBody"
    }
    assert events["security"] == [{"jwtAuth": []}] and "202" in events["responses"]


async def test_swagger_ui_is_served_offline() -> None:
    page = await asgi_request("GET", "/v1/docs/")
    assert page.status == 200 and page.content_type.startswith("text/html")
    html = page.body.decode()
    assert "/v1/openapi.json" in html
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', html)
    assert any("swagger-ui-bundle" in asset for asset in assets), assets
    assert all(asset.startswith("/static/") for asset in assets), "an asset from outside the gateway"
    for asset in assets:
        answer = await asgi_request("GET", asset)
        assert answer.status == 200, asset


async def test_the_snapshot_endpoint_documents_its_body_parameters_and_errors() -> None:
    document = await fetch_document()
    operation = document["paths"]["/v1/snapshots/{channel}"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"channel", "location_id", "station"}
    assert {"200", "400", "401", "403", "404"} <= set(operation["responses"])
    body = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    schema = document["components"]["schemas"][body]
    assert set(schema["required"]) >= {"channel", "location_id", "position", "items"}
