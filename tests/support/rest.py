"""JSON over real HTTP to a gateway process, and signing in as a demo user."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tests.support.processes import Gateway

DEMO_PASSWORD = "demo-pass-123"


def _decode(payload: bytes) -> Any:
    try:
        return json.loads(payload or b"null")
    except ValueError:
        return {"raw": payload.decode(errors="replace")}


def http_json(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    """Send JSON (or nothing) and return (status, decoded body), also for error statuses."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, _decode(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _decode(exc.read())


def login(gateway: Gateway, username: str, password: str = DEMO_PASSWORD) -> str:
    status, body = http_json("POST", f"{gateway.http}/v1/auth/token", {"username": username, "password": password})
    assert status == 200, body
    return str(body["access"])
