"""Settings are typed and checked once, at start-up: a value that does not parse stops ``manage.py`` by name."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from realtime.conf import realtime_settings
from tests.support.processes import PYTHON, ROOT, base_env


def check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = base_env(f"sqlite:///{tmp_path / 'check.sqlite3'}", **env)
    return subprocess.run(
        [PYTHON, "manage.py", "check"], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REALTIME_RATE_LIMIT_PER_SECOND", "abc"),
        ("REALTIME_MAX_SUBSCRIPTIONS", "1.5"),
        ("REALTIME_METRICS_ENABLED", "maybe"),
        ("DEBUG", "ture"),
        ("BEHIND_TLS_PROXY", "yes please"),
        ("DATABASE_POOL_MAX_SIZE", "ten"),
        ("LOG_FORMAT", "xml"),
        ("REDIS_SENTINELS", "sentinel-without-port"),
    ],
)
def test_a_value_that_does_not_parse_is_a_start_up_error_naming_the_variable(
    tmp_path: Path, name: str, value: str
) -> None:
    result = check(tmp_path, **{name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and f"{name}={value!r}" in result.stderr, result.stderr


def test_good_values_of_every_kind_start(tmp_path: Path) -> None:
    result = check(
        tmp_path,
        DEBUG="off",
        BEHIND_TLS_PROXY="TRUE",
        REALTIME_RATE_LIMIT_PER_SECOND="2.5",
        REALTIME_ALLOWED_ORIGINS='["https://a.example", "https://b.example"]',
        TRUSTED_PROXIES="10.0.0.0/8, ::1",
    )
    assert result.returncode == 0, result.stderr


def test_tunables_are_typed_from_the_environment_over_settings(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    settings.REALTIME = {"MAX_SUBSCRIPTIONS": "7", "RATE_LIMIT_BURST": 9}
    monkeypatch.setenv("REALTIME_RATE_LIMIT_BURST", "11")
    monkeypatch.setenv("REALTIME_ALLOWED_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("REALTIME_METRICS_ENABLED", "0")
    realtime_settings.reload()
    try:
        assert realtime_settings.MAX_SUBSCRIPTIONS == 7  # settings.REALTIME, typed
        assert realtime_settings.RATE_LIMIT_BURST == 11  # the environment wins
        assert realtime_settings.ALLOWED_ORIGINS == ["https://a.example", "https://b.example"]
        assert realtime_settings.METRICS_ENABLED is False
        assert realtime_settings.RATE_LIMIT_PER_SECOND == 20.0  # the default
    finally:
        monkeypatch.undo()
        realtime_settings.reload()
