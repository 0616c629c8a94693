"""Start the gateway under the ASGI server it is tuned for, with the flags that matter in one place.

uvicorn (``websockets-sansio``, no per-message deflate) is the default: on the fan-out benchmark it spends about a
third of daphne's CPU per delivery (docs/performance.md). daphne stays supported: ``--server daphne`` or
``GATEWAY_SERVER=daphne``. Used by ``make run``, ``make run-cluster``, the systemd unit, the e2e tests and the bench.

    python -m realtime.serve --host 127.0.0.1 --port 8000 [--server uvicorn|daphne] [-- extra server args]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

APPLICATION = "config.asgi:application"
PING_INTERVAL_SECONDS = "20"  # GATEWAY_PING_INTERVAL_SECONDS overrides
PING_TIMEOUT_SECONDS = "30"  # GATEWAY_PING_TIMEOUT_SECONDS overrides
# Larger than REALTIME_MAX_MESSAGE_BYTES, so the gateway's own check answers (1009) before the server's.
SERVER_MAX_MESSAGE_BYTES = 1024 * 1024


def server_command(
    server: str, host: str, port: int, extra: list[str], env: Mapping[str, str] | None = None
) -> list[str]:
    """The command line that starts ``server``; ``env`` (default: this process's) may tune the ping cadence."""
    env = os.environ if env is None else env
    ping_interval = env.get("GATEWAY_PING_INTERVAL_SECONDS", PING_INTERVAL_SECONDS)
    ping_timeout = env.get("GATEWAY_PING_TIMEOUT_SECONDS", PING_TIMEOUT_SECONDS)
    if server == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", "--host", host, "--port", str(port),
            "--ws", "websockets-sansio",
            "--ws-per-message-deflate", "false",  # compressing every frame per connection costs more than it saves
            "--ws-ping-interval", ping_interval, "--ws-ping-timeout", ping_timeout,
            "--ws-max-size", str(SERVER_MAX_MESSAGE_BYTES),
            "--lifespan", "on", "--timeout-graceful-shutdown", "10",
            "--no-access-log",  # the access log would print ?access_token= query strings
            "--no-proxy-headers",  # the app reads X-Forwarded-For from TRUSTED_PROXIES only (realtime/proxy.py)
            *extra, APPLICATION,
        ]  # fmt: skip
    if server == "daphne":
        return [
            sys.executable, "-m", "daphne", "-b", host, "-p", str(port),
            "--websocket_timeout", "86400",  # daphne's 24 h default cut, set deliberately
            "--ping-interval", ping_interval, "--ping-timeout", ping_timeout,
            # no --proxy-headers: daphne would take X-Forwarded-For from any peer (realtime/proxy.py decides)
            *extra, APPLICATION,
        ]  # fmt: skip
    raise SystemExit(f"unknown server {server!r}: use uvicorn or daphne")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--server", default=os.environ.get("GATEWAY_SERVER", "uvicorn"), choices=["uvicorn", "daphne"])
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    command = server_command(args.server, args.host, args.port, extra)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
