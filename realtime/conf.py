"""The gateway's tunables: defaults here, overridden by ``settings.REALTIME`` and then by ``REALTIME_<NAME>``.

Typed once (``Tunables``, parsed by the rules of ``config/env.py``): readers get an ``int`` or a ``float`` and cast
nothing. Read lazily, like DRF's ``api_settings``, so tests can change settings and every reader sees the change::

    from realtime.conf import realtime_settings
    realtime_settings.MAX_SUBSCRIPTIONS  # 50, or REALTIME_MAX_SUBSCRIPTIONS from the environment
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.signals import setting_changed
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from config.env import Flag, StrList, read


class Tunables(BaseSettings):
    """Every tunable with its type and default. ``REALTIME_<NAME>`` in the environment wins over
    ``settings.REALTIME``, which wins over the default; each value is checked against its type either way."""

    model_config = SettingsConfigDict(env_prefix="REALTIME_", case_sensitive=True, extra="ignore", frozen=True)

    # Subscriptions
    MAX_SUBSCRIPTIONS: int = 50
    # Connections
    MAX_CONNECTIONS_PER_USER: int = 20
    MAX_MESSAGE_BYTES: int = 64 * 1024
    ALLOWED_ORIGINS: StrList = []  # empty: no Origin check (header-less server clients rely on the token alone)
    OUTBOUND_QUEUE_MAX_MESSAGES: int = 2000
    MAX_SEND_BUFFER_BYTES: int = 4 * 1024 * 1024  # per connection, waiting in the gateway (or in daphne's buffer)
    SLOW_CONSUMER_ABORT_SECONDS: float = 5.0  # after the 4408 close frame, drop a peer that still does not read
    TOKEN_EXPIRY_GRACE_SECONDS: float = 10.0
    SHUTDOWN_CLOSE_CODE: int = 1012
    # Inbound rate limit: a token bucket per connection
    RATE_LIMIT_PER_SECOND: float = 20.0
    RATE_LIMIT_BURST: int = 50
    RATE_LIMIT_MAX_VIOLATIONS: int = 50
    # Presence
    # (issue 12) liveness per process: members of a process unheard for TTL seconds no longer count; the
    # sweep on each heartbeat then announces their user_left, so within TTL + HEARTBEAT of a crash (4 s)
    PRESENCE_TTL_SECONDS: float = 3.0
    PRESENCE_HEARTBEAT_SECONDS: float = 1.0
    PRESENCE_USER_INFO_MAX_BYTES: int = 1024
    PRESENCE_USER_INFO_MAX_DEPTH: int = 3
    # Stream history (resume)
    HISTORY_MAX_EVENTS: int = 1000
    HISTORY_TTL_SECONDS: float = 600.0
    HISTORY_REPLAY_MAX_EVENTS: int = 1000
    # REST publish: how long a publisher's grant is remembered (dropped at once when access changes; 0 = never)
    PUBLISH_AUTH_CACHE_SECONDS: float = 2.0
    # Idempotent publishing (issue 14): a repeat of a stream's idempotency key within this window publishes nothing
    PUBLISH_DEDUP_SECONDS: float = 120.0
    # Batch publishing (issue 14): items per POST /v1/events/batch, and the body limit of both publish endpoints
    PUBLISH_BATCH_MAX: int = 500
    PUBLISH_MAX_BODY_BYTES: int = 1024 * 1024
    # Observability (issue 15): Prometheus metrics on /metrics; off, the hot path skips even the per-event count
    METRICS_ENABLED: Flag = True
    # Login throttling (issue 20): failed POST /v1/auth/token (and /refresh) per username and per client address
    LOGIN_FAILURES_PER_USERNAME: int = 10
    LOGIN_FAILURES_PER_ADDRESS: int = 50
    LOGIN_FAILURE_WINDOW_SECONDS: int = 900
    # Connect path (issue 13): each user's active flag and confirmed grants, remembered per process
    # (forgotten at once on rt.access_changed; this TTL bounds a lost message or a signal-less update; 0 = off)
    PRINCIPAL_CACHE_SECONDS: float = 10.0
    PRINCIPAL_CACHE_MAX_ENTRIES: int = 10_000
    # Transactional outbox (issue 14): model saves and publish_in_transaction write rows; every gateway relays them
    OUTBOX_RELAY_ENABLED: Flag = True  # off: this process does not relay (tests drive the relay by hand)
    OUTBOX_POLL_SECONDS: float = 0.5  # the relay's fallback poll (SQLite, or a lost LISTEN connection)
    OUTBOX_BATCH_SIZE: int = 200  # rows one relay claims per pass
    OUTBOX_RETRY_MAX_SECONDS: float = 5.0  # the longest backoff between passes while Redis is down
    OUTBOX_RETENTION_SECONDS: float = 3600.0  # sent rows are deleted after this; also the dedup window of their keys
    OUTBOX_UNHEALTHY_LAG_SECONDS: float = 30.0  # /healthz answers 503 when the oldest unsent row is older
    # Dark stations (issue 16): an active station with no live kds screen for this long alerts its managers;
    # every process checks every KDS_STATION_CHECK_SECONDS (0 = no checks in this process), beside its heartbeat,
    # and reads the station list from the database at most every KDS_STATION_LIST_CACHE_SECONDS
    KDS_DARK_STATION_SECONDS: float = 30.0
    KDS_STATION_CHECK_SECONDS: float = 2.0
    KDS_STATION_LIST_CACHE_SECONDS: float = 10.0
    # Acknowledged KDS tickets (issue 16): resend an unacknowledged ticket every TIMEOUT seconds, MAX times, then
    # alert the location's kitchen managers; each process's sweeper looks for due steps every SWEEP seconds
    KDS_ACK_TIMEOUT_SECONDS: float = 15.0
    KDS_ACK_MAX_REDELIVERIES: int = 3
    KDS_ACK_SWEEP_SECONDS: float = 1.0
    KDS_ACK_RETENTION_SECONDS: float = 3600.0  # a settled ack is remembered this long (duplicate acks succeed)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_settings, init_settings  # the environment over settings.REALTIME (the init arguments)


DEFAULTS: dict[str, Any] = {
    name: field.get_default(call_default_factory=True) for name, field in Tunables.model_fields.items()
}


def check_environment() -> None:
    """Validate the ``REALTIME_<NAME>`` variables at start-up (config/settings.py), before any is read."""
    read(Tunables)


if TYPE_CHECKING:  # the type checker sees each setting with its declared type, so call sites need no casts
    _TypedTunables = Tunables
else:
    _TypedTunables = object


class RealtimeSettings(_TypedTunables):
    """Attribute access to the merged, typed tunables; unknown names are an error, not a silent None."""

    def __init__(self) -> None:
        self._values: Tunables | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in DEFAULTS:
            raise AttributeError(f"Unknown realtime setting: {name}")
        if self._values is None:
            self._values = read(Tunables, **getattr(settings, "REALTIME", {}))
        return getattr(self._values, name)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in DEFAULTS}

    def reload(self) -> None:
        self._values = None


realtime_settings = RealtimeSettings()


def _reload_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting == "REALTIME":
        realtime_settings.reload()


setting_changed.connect(_reload_on_change)
