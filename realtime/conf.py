"""The gateway's tunables: defaults here, overridden by ``settings.REALTIME`` and then by ``REALTIME_<NAME>``.

Read lazily, like DRF's ``api_settings``, so tests can change settings and every reader sees the change::

    from realtime.conf import realtime_settings
    realtime_settings.MAX_SUBSCRIPTIONS  # 50, or REALTIME_MAX_SUBSCRIPTIONS from the environment
"""

from __future__ import annotations

import json
import os
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

DEFAULTS: dict[str, Any] = {
    # Subscriptions
    "MAX_SUBSCRIPTIONS": 50,
    # Connections
    "MAX_CONNECTIONS_PER_USER": 20,
    "MAX_MESSAGE_BYTES": 64 * 1024,
    "ALLOWED_ORIGINS": [],  # empty: no Origin check (header-less server clients rely on the token alone)
    "OUTBOUND_QUEUE_MAX_MESSAGES": 2000,
    "MAX_SEND_BUFFER_BYTES": 4 * 1024 * 1024,  # per connection, waiting in the gateway (or in daphne's buffer)
    "SLOW_CONSUMER_ABORT_SECONDS": 5.0,  # after the 4408 close frame, drop a peer that still does not read
    "TOKEN_EXPIRY_GRACE_SECONDS": 10.0,
    "SHUTDOWN_CLOSE_CODE": 1012,
    # Inbound rate limit: a token bucket per connection
    "RATE_LIMIT_PER_SECOND": 20.0,
    "RATE_LIMIT_BURST": 50,
    "RATE_LIMIT_MAX_VIOLATIONS": 50,
    # Presence
    # (issue 12) liveness per process: members of a process unheard for TTL seconds no longer count; the
    # sweep on each heartbeat then announces their user_left, so within TTL + HEARTBEAT of a crash (4 s)
    "PRESENCE_TTL_SECONDS": 3.0,
    "PRESENCE_HEARTBEAT_SECONDS": 1.0,
    "PRESENCE_USER_INFO_MAX_BYTES": 1024,
    "PRESENCE_USER_INFO_MAX_DEPTH": 3,
    # Stream history (resume)
    "HISTORY_MAX_EVENTS": 1000,
    "HISTORY_TTL_SECONDS": 600.0,
    "HISTORY_REPLAY_MAX_EVENTS": 1000,
    # REST publish: how long a publisher's grant is remembered (dropped at once when access changes; 0 = never)
    "PUBLISH_AUTH_CACHE_SECONDS": 2.0,
    # Observability (issue 15): Prometheus metrics on /metrics; off, the hot path skips even the per-event count
    "METRICS_ENABLED": True,
    # Login throttling (issue 20): failed POST /v1/auth/token (and /refresh) per username and per client address
    "LOGIN_FAILURES_PER_USERNAME": 10,
    "LOGIN_FAILURES_PER_ADDRESS": 50,
    "LOGIN_FAILURE_WINDOW_SECONDS": 900,
    # Connect path (issue 13): each user's active flag and confirmed grants, remembered per process
    # (forgotten at once on rt.access_changed; this TTL bounds a lost message or a signal-less update; 0 = off)
    "PRINCIPAL_CACHE_SECONDS": 10.0,
    "PRINCIPAL_CACHE_MAX_ENTRIES": 10_000,
    # Acknowledged KDS tickets (issue 16): resend an unacknowledged ticket every TIMEOUT seconds, MAX times, then
    # alert the location's kitchen managers; each process's sweeper looks for due steps every SWEEP seconds
    "KDS_ACK_TIMEOUT_SECONDS": 15.0,
    "KDS_ACK_MAX_REDELIVERIES": 3,
    "KDS_ACK_SWEEP_SECONDS": 1.0,
    "KDS_ACK_RETENTION_SECONDS": 3600.0,  # a settled ack is remembered this long (duplicate acks succeed)
}


def _coerce(name: str, raw: str, default: Any) -> Any:
    """Parse an environment override into the type of its default."""
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, list):
        raw = raw.strip()
        return json.loads(raw) if raw.startswith("[") else [item.strip() for item in raw.split(",") if item.strip()]
    return raw


class RealtimeSettings:
    """Attribute access to the merged settings; unknown names are an error, not a silent None."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in DEFAULTS:
            raise AttributeError(f"Unknown realtime setting: {name}")
        if name not in self._cache:
            self._cache[name] = self._resolve(name)
        return self._cache[name]

    def _resolve(self, name: str) -> Any:
        raw = os.environ.get(f"REALTIME_{name}")
        if raw is not None:
            return _coerce(name, raw, DEFAULTS[name])
        return getattr(settings, "REALTIME", {}).get(name, DEFAULTS[name])

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in DEFAULTS}

    def reload(self) -> None:
        self._cache.clear()


realtime_settings = RealtimeSettings()


def _reload_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting == "REALTIME":
        realtime_settings.reload()


setting_changed.connect(_reload_on_change)
