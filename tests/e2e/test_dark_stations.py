"""Dark stations across processes (issue 16): real gateway processes on real Redis and the e2e database.

A kitchen screen of station ``grill`` at loc-xyz789 (kim) is on one process, the manager (john, who holds
``kds.read`` and ``events.publish`` there) listens to his notifications on another. Every process monitors every
station, so each transition must reach john exactly once, whether the screen closes or its process is SIGKILLed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.support.processes import Database, Gateway, base_env, manage
from tests.support.rest import login
from tests.support.wsclient import WsClient

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
LOC = "loc-xyz789"
STATION = "grill"
DARK_S = 2.0
CHECK_S = 1.0
QUICK = {
    "REALTIME_KDS_DARK_STATION_SECONDS": str(DARK_S),
    "REALTIME_KDS_STATION_CHECK_SECONDS": str(CHECK_S),
    "REALTIME_KDS_STATION_LIST_CACHE_SECONDS": "0.5",
}
PRESENCE_LAPSE_S = 3.0  # PRESENCE_TTL_SECONDS, the default
SLACK_S = 4.0  # two busy cores shared with other test runs
QUIET_S = 3 * CHECK_S + 1  # several checks by every process: a second alert would have come by then


def set_station(database: Database, *, active: bool) -> None:
    """Configure ``grill`` at LOC in the gateways' database (what a manager does in the admin)."""
    code = (
        "from locations.models import Location, Station; "
        f"Station.objects.update_or_create(location=Location.objects.get(public_id={LOC!r}), name={STATION!r}, "
        f"defaults={{'is_active': {active!r}}})"
    )
    manage(base_env(database.url), "shell", "-c", code)


@pytest.fixture
def grill(e2e_database: Database) -> Iterator[Database]:
    """``grill`` is configured inactive before the test and again after it (the e2e database is shared)."""
    set_station(e2e_database, active=False)
    yield e2e_database
    set_station(e2e_database, active=False)


def station_status(gateway: Gateway, redis_url: str) -> str | None:
    with redis.Redis.from_url(redis_url) as client:
        raw = client.hget(f"{gateway.env['REDIS_PREFIX']}:kds:stations", f"{LOC}\n{STATION}")
    return None if raw is None else str(json.loads(raw)["status"])


async def until_lit(gateway: Gateway, redis_url: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while station_status(gateway, redis_url) != "lit":
        if time.monotonic() > deadline:
            pytest.fail(f"grill never lit: {station_status(gateway, redis_url)}\n{gateway.log()}")
        await asyncio.sleep(0.1)


async def screen(gateway: Gateway) -> WsClient:
    """Kim's kitchen screen of ``grill``: joins kds presence declaring its station."""
    client = await WsClient.open(gateway.ws, login(gateway, "kim"))
    reply = await client.request(
        {"type": "presence_join", "channel": "kds", "params": {"location_id": LOC}, "user_info": {"station": STATION}}
    )
    assert reply["success"] is True, reply
    return client


async def manager(gateway: Gateway) -> WsClient:
    client = await WsClient.open(gateway.ws, login(gateway, "john"))
    reply = await client.subscribe("notifications", {})
    assert reply["success"] is True, reply
    return client


def is_grill_alert(frame: dict[str, Any]) -> bool:
    """Ours: other stations of the shared database may alert john too."""
    data = frame.get("data") or {}
    return frame.get("type") == "event" and data.get("station") == STATION and data.get("location_id") == LOC


async def grill_alerts(john: WsClient, seconds: float, *, first: bool = False) -> list[dict[str, Any]]:
    """The grill alerts john receives within ``seconds`` (only the first one with ``first``)."""
    found: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0 and not (first and found):
        try:
            frame = await john.recv(left)
        except TimeoutError:
            break
        if is_grill_alert(frame):
            found.append(frame)
    return found


async def one_alert(john: WsClient, event: str, bound: float) -> dict[str, Any]:
    """Exactly one ``event`` for grill: the first within ``bound``, and no other after a quiet time."""
    started = time.monotonic()
    found = await grill_alerts(john, bound, first=True)
    elapsed = time.monotonic() - started
    assert found, f"no {event} within {bound}s"
    assert found[0]["event"] == event, found[0]
    assert await grill_alerts(john, QUIET_S) == [], f"more than one alert for one transition after {event}"
    print(f"{event} after {elapsed:.1f}s")  # shown with -s: the measured delay
    return found[0]


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])  # the monitor starts with the lifespan; with the reactor
async def test_a_screen_leaving_and_returning_alerts_the_manager_once_each_across_two_processes(
    gateways: Any, shared_redis: str, grill: Database, server: str
) -> None:
    a = gateways(shared_redis, server=server, **QUICK)
    b = gateways(shared_redis, server=server, **QUICK)
    john = await manager(b)
    kim = await screen(a)
    set_station(grill, active=True)  # configured while its screen is up: no alert before the test starts
    await until_lit(a, shared_redis)

    await kim.close()
    dark = await one_alert(john, "kds.station_dark", DARK_S + CHECK_S + SLACK_S)
    assert dark["user_id"] == "user-john" and dark["channel"] == "notifications"
    assert dark["data"]["seconds"] >= DARK_S and dark["data"]["dark_since"].endswith("Z")

    kim = await screen(b)
    restored = await one_alert(john, "kds.station_restored", CHECK_S + SLACK_S)
    assert restored["data"]["dark_since"] == dark["data"]["dark_since"]
    assert restored["data"]["seconds"] >= dark["data"]["seconds"]
    await kim.close()
    await john.close()


async def test_a_screen_whose_process_is_sigkilled_goes_dark_once_and_returns_once(
    gateways: Any, shared_redis: str, grill: Database
) -> None:
    a = gateways(shared_redis, **QUICK)
    b = gateways(shared_redis, **QUICK)
    c = gateways(shared_redis, **QUICK)  # b and c both watch once a is gone
    john = await manager(b)
    kim = await screen(a)
    set_station(grill, active=True)
    await until_lit(b, shared_redis)

    a.kill()  # the screen's member stops counting when a's liveness lapses, unswept or not
    dark = await one_alert(john, "kds.station_dark", PRESENCE_LAPSE_S + DARK_S + CHECK_S + SLACK_S)
    assert dark["data"]["station"] == STATION
    await kim.close()

    kim = await screen(c)
    await one_alert(john, "kds.station_restored", CHECK_S + SLACK_S)
    await kim.close()
    await john.close()


async def test_restarting_every_process_neither_repeats_an_alert_nor_forgets_a_dark_station(
    gateways: Any, shared_redis: str, grill: Database
) -> None:
    a = gateways(shared_redis, **QUICK)
    b = gateways(shared_redis, **QUICK)
    john = await manager(b)
    kim = await screen(a)
    set_station(grill, active=True)
    await until_lit(a, shared_redis)
    await kim.close()
    dark = await one_alert(john, "kds.station_dark", DARK_S + CHECK_S + SLACK_S)
    await john.close()

    for gateway in (a, b):  # a deploy: every process stops (SIGTERM) and new ones start
        gateway.stop()
    fresh = [gateways(shared_redis, **QUICK) for _ in range(2)]
    john = await WsClient.open(fresh[1].ws, login(fresh[1], "john"))
    position = {dark["stream"]: {"seq": dark["seq"], "epoch": dark["epoch"]}}
    reply = await john.subscribe("notifications", {}, resume=position)  # what was sent while john was away, too
    assert reply["success"] is True and reply["resumed"] == {dark["stream"]: True}, reply
    assert await grill_alerts(john, DARK_S + 2 * CHECK_S + SLACK_S) == []  # still dark, already reported
    assert station_status(fresh[0], shared_redis) == "dark"

    kim = await screen(fresh[0])
    restored = await one_alert(john, "kds.station_restored", CHECK_S + SLACK_S)
    assert restored["data"]["dark_since"] == dark["data"]["dark_since"]  # the spell that began before the restart
    await kim.close()
    await john.close()
