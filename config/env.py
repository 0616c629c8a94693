"""The process's environment, typed and validated once, at start-up (pydantic-settings).

One way to read a variable for the whole gateway: ``config/settings.py`` builds Django's settings from
``Environment`` and ``realtime/conf.py`` types the ``REALTIME_<NAME>`` tunables with the same rules. A value that
does not parse (``DEBUG=ture``, ``REALTIME_RATE_LIMIT_PER_SECOND=abc``) stops the process with
``ImproperlyConfigured`` naming the variable, instead of reading as a default.

- Yes/no: ``1 true yes on`` / ``0 false no off`` (any case); empty means no; anything else is an error.
- Lists: comma-separated (``a,b``), or a JSON array (``["a", "b"]``); empty is the empty list.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from django.core.exceptions import ImproperlyConfigured
from pydantic import BeforeValidator, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

BASE_DIR = Path(__file__).resolve().parent.parent
Model = TypeVar("Model", bound=BaseSettings)


def _empty_is_false(value: Any) -> Any:
    return False if isinstance(value, str) and not value.strip() else value


def _split_list(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    value = value.strip()
    if value.startswith("["):
        return json.loads(value)
    return [item.strip() for item in value.split(",") if item.strip()]


Flag = Annotated[bool, BeforeValidator(_empty_is_false)]
StrList = Annotated[list[str], NoDecode, BeforeValidator(_split_list)]


def read(model: type[Model], **init: Any) -> Model:
    """Build ``model`` from the environment (and ``init``); a bad value is a start-up error naming its variable."""
    try:
        return model(**init)
    except ValidationError as exc:
        prefix = str(model.model_config.get("env_prefix", ""))
        problems = [f"{prefix}{'.'.join(map(str, e['loc']))}={e['input']!r}: {e['msg']}" for e in exc.errors()]
        raise ImproperlyConfigured("Invalid environment: " + "; ".join(problems)) from None


class Environment(BaseSettings):
    """Every variable ``config/settings.py`` reads, with its type and default (docs/deploy.md lists them)."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore")

    DEBUG: Flag = False
    SECRET_KEY: str = ""
    ALLOWED_HOSTS: StrList = []  # unset: localhost names, [::1] too with DEBUG (see config/settings.py)
    CSRF_TRUSTED_ORIGINS: StrList = []
    BEHIND_TLS_PROXY: Flag = False
    TRUSTED_PROXIES: StrList = []  # unset: FORWARDED_ALLOW_IPS, else loopback
    FORWARDED_ALLOW_IPS: StrList = ["127.0.0.1", "::1"]
    DATABASE_URL: str = f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
    DATABASE_CONN_MAX_AGE: int = 0  # Django advises 0 under ASGI
    DATABASE_POOL: Flag = True
    DATABASE_POOL_MAX_SIZE: int = 10
    STATIC_ROOT: Path = BASE_DIR / "staticfiles"
    REDIS_URL: str = ""
    REDIS_SENTINELS: StrList = []  # "host:port,host:port"
    REDIS_SENTINEL_MASTER: str = "mymaster"
    REDIS_PREFIX: str = "rtgw"
    REDIS_MAX_CONNECTIONS: int = 200
    CHANNEL_LAYER_BACKEND: Literal["pubsub", "core"] = "pubsub"
    DATA_UPLOAD_MAX_MEMORY_SIZE: int = 1024 * 1024
    JWT_ACCESS_TOKEN_LIFETIME_SECONDS: int = 900
    JWT_REFRESH_TOKEN_LIFETIME_SECONDS: int = 7 * 24 * 3600
    JWT_SIGNING_KEY: str = ""  # unset: SECRET_KEY
    METRICS_ALLOWED_IPS: StrList = ["127.0.0.1", "::1"]
    METRICS_TOKEN: str = ""
    LOG_FORMAT: Literal["text", "json"] = "text"  # json: one JSON object per line
    LOG_LEVEL: str = "INFO"
    ACCESS_LOG_LEVEL: str = "WARNING"

    @field_validator("METRICS_ALLOWED_IPS")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)
        return value

    @model_validator(mode="after")
    def _trusted_proxies(self) -> Environment:
        """FORWARDED_ALLOW_IPS, uvicorn's variable, counts when TRUSTED_PROXIES is unset. Checked at start-up, not at
        the first request; "*" (trust everyone) is refused too."""
        if "TRUSTED_PROXIES" not in self.model_fields_set:
            self.TRUSTED_PROXIES = self.FORWARDED_ALLOW_IPS
        try:
            for entry in self.TRUSTED_PROXIES:
                ipaddress.ip_network(entry, strict=False)
        except ValueError as exc:
            raise ImproperlyConfigured(f"TRUSTED_PROXIES must list IP addresses or networks: {exc}") from None
        return self

    @field_validator("REDIS_SENTINELS")
    @classmethod
    def _host_ports(cls, value: list[str]) -> list[str]:
        for entry in value:
            host, _, port = entry.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{entry!r} is not host:port")
        return value
