"""schemathesis against a real gateway process, from its own OpenAPI document (issue 20).

Every operation of /v1/openapi.json gets generated requests, valid ones and ones that break the schema, sent over
HTTP to uvicorn with DEBUG off, PostgreSQL and Redis. No answer may be a 5xx; every answer must be JSON, in the
status and shape the document gives (an error is ``{"code", "message", ...}``). Bounded: ``FUZZ_MAX_EXAMPLES``
(default 50) examples per operation and mode, so 100 per operation; a quarter of that for the login, whose every
try runs the password hasher.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from realtime.errors import ErrorCode
from tests.support.processes import Gateway
from tests.support.rest import login

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.postgres]

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "50"))
# PBKDF2 costs about 0.3 s a try on the 2-core CI machine; 100 of them would be most of the run.
SLOW_OPERATIONS = {"POST /v1/auth/token": max(1, MAX_EXAMPLES // 4)}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
ERROR_CODES = {code.value for code in ErrorCode}


def assert_json_in_the_protocol_shape(response: Any) -> None:
    content_type = ",".join(response.headers.get("content-type", []))  # schemathesis: lower-case names, lists
    assert content_type.startswith("application/json"), (response.status_code, content_type, response.text[:200])
    body = response.json()
    if response.status_code >= 400:
        assert isinstance(body, dict) and body.get("code") in ERROR_CODES, body
        assert isinstance(body.get("message"), str) and body["message"], body


def fuzz_operation(
    operation: Any,
    mode: schemathesis.GenerationMode,
    gateway: Gateway,
    token: str,
    statuses: dict[tuple[str, int], int],
) -> None:
    """Send ``operation`` its generated requests, checking every answer."""
    label = f"{operation.method.upper()} {operation.path}"

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=SLOW_OPERATIONS.get(label, MAX_EXAMPLES),
        deadline=None,
        database=None,
        derandomize=True,  # the same requests on every run: a failure is reproducible
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        # A real token, so requests reach the handlers (garbage tokens: tests/accounts/test_auth.py).
        response = case.call(base_url=gateway.http, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        statuses[(label, response.status_code)] = statuses.get((label, response.status_code), 0) + 1
        case.validate_response(response, checks=CHECKS)
        assert_json_in_the_protocol_shape(response)

    try:
        fuzz()
    except Unsatisfiable:
        if mode is schemathesis.GenerationMode.POSITIVE:
            raise
        # An operation without parameters or body (GET /healthz) has nothing to break.


def test_the_api_survives_fuzzing_from_its_openapi_document(
    gateways: Callable[..., Gateway], shared_redis: str
) -> None:
    # A high address limit, so the fuzzer keeps reaching the login code instead of its 429 (tested elsewhere).
    gateway = gateways(redis_url=shared_redis, REALTIME_LOGIN_FAILURES_PER_ADDRESS="100000")
    token = login(gateway, "john")
    schema = schemathesis.openapi.from_url(f"{gateway.http}/v1/openapi.json")
    started = time.monotonic()
    statuses: dict[tuple[str, int], int] = {}
    for result in schema.get_all_operations():
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            fuzz_operation(result.ok(), mode, gateway, token, statuses)
    elapsed = time.monotonic() - started
    print(f"fuzzed {sum(statuses.values())} requests in {elapsed:.1f} s: {sorted(statuses.items())}")
    assert {label for label, _ in statuses} == {
        "POST /v1/auth/token",
        "POST /v1/auth/token/refresh",
        "POST /v1/events",
        "POST /v1/events/batch",
        "GET /v1/locations",
        "GET /v1/channels",
        "GET /v1/streams/{stream}/events",
        "GET /v1/snapshots/{channel}",
        "GET /healthz",
    }
    assert not [key for key in statuses if key[1] >= 500]
    assert "Traceback" not in gateway.log()
