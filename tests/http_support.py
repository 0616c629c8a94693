"""HTTP requests straight into the real ASGI application (``config.asgi.application``), with a chosen peer address.

Django's test client skips the ASGI layer (and so ``realtime.proxy``); this goes through all of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from asgiref.testing import ApplicationCommunicator


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


async def asgi_request(
    method: str,
    path: str,
    body: bytes | str | Any = b"",
    *,
    headers: dict[str, str] | None = None,
    peer: str = "127.0.0.1",
    content_type: str | None = "application/json",
    send_length: bool = True,
    timeout: float = 30,
) -> Answer:
    """Send one request through the ASGI app; a non-bytes ``body`` is sent as JSON."""
    from config.asgi import application

    if not isinstance(body, bytes | str):
        body = json.dumps(body)
    raw = body.encode() if isinstance(body, str) else body
    path, _, query = path.partition("?")
    header_list = [(b"host", b"testserver")]
    if content_type is not None and raw:
        header_list.append((b"content-type", content_type.encode()))
    if send_length and raw:
        header_list.append((b"content-length", str(len(raw)).encode()))
    for name, value in (headers or {}).items():
        header_list.append((name.lower().encode(), value.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": header_list,
        "client": (peer, 50000),
        "server": ("testserver", 80),
    }
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": raw, "more_body": False})
    start = await communicator.receive_output(timeout)
    chunks = []
    while True:
        message = await communicator.receive_output(timeout)
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    await communicator.wait(timeout)
    response_headers = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    return Answer(start["status"], response_headers, b"".join(chunks))
