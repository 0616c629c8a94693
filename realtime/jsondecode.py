"""One bounded JSON decoder for every door the gateway has: WebSocket frames and REST bodies.

``json.loads`` recurses once per nesting level, so a 30 KB body of ``[[[[...`` 5,000 levels deep raises
``RecursionError``. Whatever a client sends is decoded here, which answers that, and anything nested deeper than
``MAX_JSON_DEPTH``, with ``invalid_message``: the same answer on both paths, from one limit.
"""

from __future__ import annotations

import json
from typing import Any

from realtime.errors import InvalidMessage

# Deep enough for any message or event payload the protocol defines (the deepest, a subscribe with a resume
# position, is 3); shallow enough that nothing downstream (pydantic, the encoder, the history store) recurses far.
MAX_JSON_DEPTH = 32


def decode_json(data: str | bytes, *, what: str = "Message") -> Any:
    """Decode client JSON, or raise ``InvalidMessage`` naming ``what`` when it is not JSON or too deep."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError; RecursionError: far too deep
        raise InvalidMessage(f"{what} is not valid JSON") from None
    if _may_exceed(data) and nesting_depth(value) > MAX_JSON_DEPTH:
        raise InvalidMessage(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _may_exceed(data: str | bytes) -> bool:
    """Cheap pre-check in C: fewer brackets than the limit cannot nest past it (most messages stop here)."""
    if isinstance(data, bytes):
        return data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH
    return data.count("[") + data.count("{") > MAX_JSON_DEPTH


def nesting_depth(value: Any) -> int:
    """How many arrays and objects deep ``value`` goes (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest
