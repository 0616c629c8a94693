"""Settings for the gateway, read from the environment.

With no environment set this is the embedded default: SQLite and Channels' in-memory layer, one process.
``DATABASE_URL`` moves the data to PostgreSQL, ``REDIS_URL`` moves the channel layer, presence and stream
history to Redis so that many processes can serve one deployment.
"""

from __future__ import annotations

from datetime import timedelta

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import BASE_DIR as BASE_DIR  # re-exported: Django projects look for settings.BASE_DIR
from config.env import Environment, read
from realtime.conf import check_environment

ENV = read(Environment)  # every variable below, typed; a bad one stops the process here, by name
check_environment()  # the REALTIME_<NAME> tunables, likewise

DEBUG = ENV.DEBUG
SECRET_KEY = ENV.SECRET_KEY
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY in the environment, or DEBUG=1 for local development."
        )
    SECRET_KEY = "insecure-dev-key-only-for-debug-mode-never-in-production"

ALLOWED_HOSTS = ENV.ALLOWED_HOSTS
if "ALLOWED_HOSTS" not in ENV.model_fields_set:
    ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"] if DEBUG else ["localhost", "127.0.0.1"]
CSRF_TRUSTED_ORIGINS = ENV.CSRF_TRUSTED_ORIGINS

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files served from here: /v1/docs/ works offline
    "channels",
    "accounts.apps.AccountsConfig",
    "locations.apps.LocationsConfig",
    "realtime.apps.RealtimeConfig",
]

MIDDLEWARE = [
    "realtime.api.middleware.JsonApiErrorsMiddleware",  # outermost: /v1/ answers JSON, whatever fails below
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],  # templates live in their apps (realtime/templates/...), so the wheel carries them
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": dj_database_url.parse(ENV.DATABASE_URL, conn_max_age=ENV.DATABASE_CONN_MAX_AGE)}
if ENV.DATABASE_POOL and DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # issue 13: Django's psycopg pool, shared by every thread (a persistent connection is per thread, and the ASGI
    # handler runs each request in a new one). It replaces CONN_MAX_AGE; docs/deploy.md has the measurement.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": ENV.DATABASE_POOL_MAX_SIZE,
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Daphne runs sync views in threads; a busy timeout keeps concurrent writers from failing at once.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20

AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = ENV.STATIC_ROOT
# The console's assets are served by the gateway itself (config/asgi.py, Django's static files handler) so the
# console works anywhere; in production, `collectstatic` and nginx's `location /static/` serve them (docs/deploy.md).

# Channels: in-memory layer for one process, Redis when REDIS_URL is set.
REDIS_URL = ENV.REDIS_URL
REDIS_SENTINELS = ENV.REDIS_SENTINELS  # "host:port,host:port"
REDIS_SENTINEL_HOSTS = [(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1])) for h in REDIS_SENTINELS]
REDIS_SENTINEL_MASTER = ENV.REDIS_SENTINEL_MASTER
CHANNEL_LAYER_BACKEND = ENV.CHANNEL_LAYER_BACKEND  # pubsub | core
# Namespaces every Redis key and pub/sub channel of one deployment (pub/sub ignores the database number).
REDIS_PREFIX = ENV.REDIS_PREFIX


def build_channel_layers() -> dict[str, dict[str, object]]:
    """Choose the channel layer from the environment."""
    if not REDIS_URL and not REDIS_SENTINELS:
        return {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 10_000}}}
    if REDIS_SENTINELS:
        host: dict[str, object] = {
            "sentinels": REDIS_SENTINEL_HOSTS,
            "master_name": REDIS_SENTINEL_MASTER,
        }
    else:
        host = {"address": REDIS_URL}
    if CHANNEL_LAYER_BACKEND == "core":
        # The core layer drops group messages silently past `capacity`; the hub channel needs room for bursts.
        host["max_connections"] = ENV.REDIS_MAX_CONNECTIONS
        return {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [host], "capacity": 10_000, "expiry": 60, "prefix": REDIS_PREFIX},
            }
        }
    return {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [host], "prefix": REDIS_PREFIX},
        }
    }


CHANNEL_LAYERS = build_channel_layers()

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework_simplejwt.authentication.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["realtime.api.parsers.BoundedJSONParser"],  # deep JSON: 400, not RecursionError
    "EXCEPTION_HANDLER": "realtime.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "NUM_PROXIES": 0,  # DRF would otherwise read X-Forwarded-For from anyone; REMOTE_ADDR is already the client
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# REST hardening and login throttling (issue 20; docs/security.md).
# One body limit for every request (Django enforces it on read; /v1/ answers 413 payload_too_large); nginx's
# client_max_body_size is the same 1 MiB.
DATA_UPLOAD_MAX_MEMORY_SIZE = ENV.DATA_UPLOAD_MAX_MEMORY_SIZE
# Peers whose X-Forwarded-For is believed (addresses or CIDR networks): nginx on the same host by default.
# FORWARDED_ALLOW_IPS, which uvicorn read before realtime/proxy.py did this for both servers, still counts.
TRUSTED_PROXIES = ENV.TRUSTED_PROXIES
# Login failure counts live here: Redis (shared by every process) when REDIS_URL is set, else this process.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "login_throttle": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": REDIS_PREFIX}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "login-throttle"}
    ),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Restaurant real-time gateway REST API",
    "DESCRIPTION": (
        "Log in, publish events, read stream history, list locations and channels. The WebSocket protocol at "
        "/v1/ws is described in docs/protocol.md. Every error is JSON: {code, message, ...details}."
    ),
    "VERSION": "1",
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "realtime.api.openapi.document_plain_endpoints",
    ],
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=ENV.JWT_ACCESS_TOKEN_LIFETIME_SECONDS),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=ENV.JWT_REFRESH_TOKEN_LIFETIME_SECONDS),
    "SIGNING_KEY": ENV.JWT_SIGNING_KEY or SECRET_KEY,
    "ALGORITHM": "HS256",
    "UPDATE_LAST_LOGIN": False,
}

# The gateway's own tunables; defaults and environment overrides live in realtime/conf.py.
REALTIME: dict[str, object] = {}

# Observability (issue 15): who may scrape GET /metrics (addresses or networks, or the bearer token), log format.
METRICS_ALLOWED_IPS = ENV.METRICS_ALLOWED_IPS
METRICS_TOKEN = ENV.METRICS_TOKEN
LOG_FORMAT = ENV.LOG_FORMAT  # text | json (one JSON object per line)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "realtime.logs.JsonFormatter"},
    },
    "filters": {"redact_tokens": {"()": "realtime.logs.RedactTokens"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["redact_tokens"],
        }
    },
    "root": {"handlers": ["console"], "level": ENV.LOG_LEVEL},
    "loggers": {
        # Servers' own loggers keep their handlers; the filter still keeps tokens out of what they print.
        "uvicorn.error": {"filters": ["redact_tokens"]},
        "uvicorn.access": {"filters": ["redact_tokens"]},
        "django.channels.server": {
            "level": ENV.ACCESS_LOG_LEVEL,
            "filters": ["redact_tokens"],
        },
        "daphne": {"level": "WARNING"},
    },
}
if LOG_FORMAT == "json":
    # The servers' loggers write through the JSON handler too, so every line of the process is one JSON object.
    # Not uvicorn.access: realtime.serve turns it off (--no-access-log), and a handler here would turn it back on.
    for _server_logger in ("uvicorn", "uvicorn.error", "daphne"):
        LOGGING["loggers"][_server_logger] = {  # type: ignore[index]
            **LOGGING["loggers"].get(_server_logger, {}),  # type: ignore[attr-defined]
            "handlers": ["console"],
            "propagate": False,
        }

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if ENV.BEHIND_TLS_PROXY else None
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = ENV.BEHIND_TLS_PROXY
