"""Loaded with -p before pytest-django sets Django up: environment the settings module needs."""

import os

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789")
# The embedded default in-process; tests that need Redis or PostgreSQL ask for them explicitly.
os.environ.pop("REDIS_URL", None)
# The outbox relay never starts by itself in the test process (it would outlive a test's event loop); tests drive
# it (tests/support: ``Relay.relay_once``) or start and stop one. Gateway processes of e2e tests run theirs.
os.environ.setdefault("REALTIME_OUTBOX_RELAY_ENABLED", "0")
