"""Persistent connections or Django's pool? The cost of one ORM query through each async-to-sync path (issue 13).

    python -m bench.dbconn [--calls 500]      # DATABASE_URL must point at PostgreSQL (the database must exist)

For each way of keeping PostgreSQL connections (``CONN_MAX_AGE=0``: a new connection per call, as Channels'
``database_sync_to_async`` closes it after each; ``CONN_MAX_AGE=60``: persistent; ``DATABASE_POOL=1``: Django 5's
psycopg pool), a child process runs the same one-row query ``--calls`` times through two paths:

    consumer   ``database_sync_to_async`` outside any request: what the WebSocket consumer does (one shared thread)
    request    the same inside a fresh ``ThreadSensitiveContext`` per call: what Django's ASGI handler does for each
               HTTP request (a new thread per request)

and prints wall time and process CPU per call, and how many server connections were opened.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

MODES = {
    "conn_max_age=0": {"DATABASE_CONN_MAX_AGE": "0"},
    "conn_max_age=60": {"DATABASE_CONN_MAX_AGE": "60"},
    "pool": {"DATABASE_POOL": "1", "DATABASE_CONN_MAX_AGE": "0"},
}


def child(calls: int) -> dict[str, object]:
    import django

    django.setup()
    from asgiref.sync import ThreadSensitiveContext
    from channels.db import database_sync_to_async
    from django.db import connection

    def query() -> object:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone()

    def backend_pid_count() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
            return int(cursor.fetchone()[0])

    aquery = database_sync_to_async(query)

    async def consumer_path() -> None:
        for _ in range(calls):
            await aquery()

    async def request_path() -> None:
        for _ in range(calls):
            async with ThreadSensitiveContext():
                await aquery()

    async def measure() -> dict[str, object]:
        await aquery()  # warm up: imports, first connection
        found: dict[str, object] = {}
        for name, path in (("consumer", consumer_path), ("request", request_path)):
            wall, cpu = time.perf_counter(), time.process_time()
            await path()
            found[name] = {
                "wall_us_per_call": round((time.perf_counter() - wall) / calls * 1e6, 1),
                "cpu_us_per_call": round((time.process_time() - cpu) / calls * 1e6, 1),
            }
        found["connections_now"] = await database_sync_to_async(backend_pid_count)()
        return found

    return asyncio.run(measure())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        print(json.dumps(child(arguments.calls)))
        return
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("DATABASE_URL must point at PostgreSQL")
    for mode, env in MODES.items():
        completed = subprocess.run(
            [sys.executable, "-m", "bench.dbconn", "--child", "--calls", str(arguments.calls)],
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "SECRET_KEY": "bench-dbconn", **env},
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            print(json.dumps({"mode": mode, "error": completed.stderr.strip().splitlines()[-1:]}))
            continue
        print(json.dumps({"mode": mode, **json.loads(completed.stdout.strip().splitlines()[-1])}))


if __name__ == "__main__":
    main()
