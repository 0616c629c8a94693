"""A short-lived memo of publisher authorization, forgotten the moment access changes.

REST publishing asks the same question ("may this user publish to this stream?") many times a second; its answer
only changes when an administrator changes memberships, roles or users, which every process hears at once as an
``rt.access_changed`` control message (``realtime.hub``). Entries are dropped on that message, and in any case after
``PUBLISH_AUTH_CACHE_SECONDS`` (0 turns the memo off), so a lost message cannot keep a stale grant for long.

Per process by design (no Redis backend: a grant is cheap to recompute, and a shared memo would outlive a process's
view of a change). ``remember`` and ``forget`` are idempotent; neither is atomic across threads beyond one dict
operation, which is enough for a memo that may always answer "unknown".
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from realtime import principals
from realtime.conf import realtime_settings

MAX_ENTRIES = 10_000
_entries: dict[tuple[Any, str], tuple[float, str, bool]] = {}  # (user pk, stream) -> (expires, public id, allowed)


def recall(user_pk: Any, stream: str) -> bool | None:
    entry = _entries.get((str(user_pk), stream))  # token claims carry the pk as a string
    if entry is None or entry[0] < time.monotonic():
        return None
    return entry[2]


def remember(user_pk: Any, public_id: str, stream: str, allowed: bool) -> None:
    ttl = realtime_settings.PUBLISH_AUTH_CACHE_SECONDS
    if ttl <= 0:
        return
    if len(_entries) >= MAX_ENTRIES:
        _entries.clear()
    _entries[(str(user_pk), stream)] = (time.monotonic() + ttl, public_id, allowed)


def forget(public_ids: Iterable[str] | None) -> None:
    """Drop what is known about these users (None: about everybody), here and in the principal cache."""
    if public_ids is not None:
        public_ids = list(public_ids)
    principals.forget(public_ids)
    if public_ids is None:
        _entries.clear()
        return
    gone = set(public_ids)
    for key in [k for k, (_, public_id, _) in _entries.items() if public_id in gone]:
        del _entries[key]
