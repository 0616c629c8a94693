"""The package installs as documented: a built wheel, installed into a fresh venv, serves the gateway.

This is what docs/deploy.md ("Installing from a wheel") tells a new user to do, run for real: build the wheel from
the sources, ``pip install`` it (dependencies from the package index, so this needs PyPI or a warm pip cache),
``python -m django migrate``, then the documented ``python -m realtime.serve`` from a directory that is not the
checkout, under uvicorn (the default) and daphne. Bounded: the install gets INSTALL_TIMEOUT_SECONDS, each server
STARTUP_TIMEOUT_SECONDS, and every process is stopped by the test.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.processes import base_env, provision_database

pytestmark = [pytest.mark.packaging, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "config", "accounts", "locations", "realtime")
INSTALL_TIMEOUT_SECONDS = 480
STARTUP_TIMEOUT_SECONDS = 60


def _run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel from a copy of the sources, so the checkout gets no build/ or egg-info."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    for name in SOURCES:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, source / name)
    dist = work / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)], cwd=work,
         timeout=INSTALL_TIMEOUT_SECONDS)  # fmt: skip
    (built,) = dist.glob("restaurant_realtime_gateway-*.whl")
    return built


def test_the_wheel_carries_templates_static_files_and_metadata(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "realtime/templates/realtime/console.html",
        "realtime/static/realtime/client.js",
        "realtime/static/realtime/client.d.ts",
        "realtime/static/realtime/console.js",
        "realtime/static/realtime/console.css",
        "realtime/serve.py",
        "config/settings.py",
    ):
        assert required in names, required
    assert not any(name.startswith("tests/") for name in names)
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    for line in ("License-Expression: MIT", "Requires-Dist: uvicorn[standard]", "Requires-Dist: websockets",
                 "Requires-Dist: daphne", "Classifier: Framework :: Django", "Project-URL: Source"):  # fmt: skip
        assert line in text, line
    assert "Restaurant real-time gateway" in text  # the README is the long description


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with nothing but the wheel and what it depends on."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=venv.parent, timeout=120)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], cwd=venv.parent,
         timeout=INSTALL_TIMEOUT_SECONDS)  # fmt: skip
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from (db.url for db in provision_database(tmp_path_factory.mktemp("db")))


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
def test_the_installed_wheel_serves_healthz_and_the_console(
    installed: Path, database: str, server: str, tmp_path: Path
) -> None:
    env = base_env(database, STATIC_ROOT=str(tmp_path / "static"), GATEWAY_SERVER=server, ALLOWED_HOSTS="127.0.0.1")
    for leaked in ("PYTHONPATH", "VIRTUAL_ENV"):  # nothing may come from the checkout or the test venv
        env.pop(leaked, None)
    # Run where a new user would: not in the checkout, so nothing can come from it.
    _run([str(installed), "-m", "django", "migrate", "--noinput"], cwd=tmp_path, env=env, timeout=180)
    located = _run([str(installed), "-c", "import realtime; print(realtime.__file__)"], cwd=tmp_path, env=env,
                   timeout=60)  # fmt: skip
    assert str(ROOT) not in located and "site-packages" in located, located

    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(installed), "-m", "realtime.serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
            status = 0
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    status, _ = _get(f"{base}/healthz")
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    status = 0
                if status == 200:
                    break
                time.sleep(0.2)
            assert status == 200, f"/healthz answered {status}:\n{log_path.read_text(errors='replace')[-3000:]}"
            status, body = _get(f"{base}/console/")
            assert status == 200, (status, body[:300])
            assert b"/static/realtime/console.js" in body, body[:300]
            status, body = _get(f"{base}/static/realtime/console.js")
            assert status == 200 and len(body) > 1000, status
            status, body = _get(f"{base}/v1/asyncapi.json")
            assert status == 200 and json.loads(body)["asyncapi"] == "3.0.0", status
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
