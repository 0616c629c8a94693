"""Kitchen screens boot mid-service from a snapshot, then resume from its position (issue 16, capability 1).

Real processes: two gateways on one Redis and the e2e database (PostgreSQL with DATABASE_URL), and a kitchen
(``tests.support.kitchen_service``) whose threads fire and work tickets through the ORM, so every event is the model
receivers' publish after commit. While it runs, screens boot one after another on either gateway, some for one
station: each loads ``GET /v1/snapshots/kds``, subscribes with ``resume`` from the snapshot's position and applies
what arrives by the version rule (docs/protocol.md, "Snapshots and versions"). The kitchen's threads save each
other's tickets from stale copies, so saves of one ticket race. When the kitchen is done every screen must show
exactly the database's open tickets (nothing missed), and no screen may get an event twice or one at or below its
snapshot's position (nothing doubled).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.support.processes import PYTHON, ROOT, Gateway
from tests.support.rest import http_json, login
from tests.support.wsclient import WsClient

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.postgres]
LOCATION = "loc-xyz789"
STREAM = f"kds:{LOCATION}"
THREADS, TICKETS_PER_THREAD = 6, 30
MAX_SCREENS = 14  # kim's connections stay under MAX_CONNECTIONS_PER_USER (20)


class EntityState:
    """The client's rule (realtime/static/realtime/client.js, ``EntityState``), in Python."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.id_field: str = snapshot["id_field"]
        self.removed = set(snapshot["removed_statuses"])
        self.items: dict[str, dict[str, Any]] = {item[self.id_field]: item for item in snapshot["items"]}
        self.versions: dict[str, int] = {key: item["version"] for key, item in self.items.items()}
        self.dropped = 0

    def apply(self, data: dict[str, Any]) -> None:
        key = data[self.id_field]
        if data["version"] <= self.versions.get(key, 0):
            self.dropped += 1
            return
        self.versions[key] = data["version"]
        if data["status"] in self.removed:
            self.items.pop(key, None)
        else:
            self.items[key] = data


@dataclass
class Screen:
    client: WsClient
    station: str | None
    position: int
    state: EntityState
    booted_mid_service: bool
    seqs: list[int] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def feed(self) -> None:
        while True:
            frame = self.client.backlog.pop(0) if self.client.backlog else await self.client.recv(timeout=60)
            if frame["type"] == "event":
                self.seqs.append(frame["seq"])
                self.state.apply(frame["data"])


def without_versions(items: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {key: {k: v for k, v in item.items() if k != "version"} for key, item in items.items()}


async def boot(gateway: Gateway, token: str, station: str | None, mid_service: bool) -> Screen:
    params: dict[str, Any] = {"location_id": LOCATION, **({"station": station} if station else {})}
    url = f"{gateway.http}/v1/snapshots/kds?{urlencode(params)}"
    status, snapshot = await asyncio.to_thread(http_json, "GET", url, None, token)
    assert status == 200, snapshot
    position = snapshot["position"]
    client = await WsClient.open(gateway.ws, token)
    reply = await client.subscribe("kds", params, resume={STREAM: position})
    assert reply["success"] is True and reply["resumed"] == {STREAM: True}, reply
    screen = Screen(client, station, position["seq"], EntityState(snapshot), mid_service)
    screen.task = asyncio.create_task(screen.feed())
    return screen


async def test_screens_booting_from_snapshots_during_service_show_exactly_the_open_tickets(gateways, shared_redis):
    a, b = gateways(shared_redis), gateways(shared_redis)
    token = login(a, "kim")
    screens = [await boot(a, token, None, mid_service=False)]
    kitchen = subprocess.Popen(
        [PYTHON, "-m", "tests.support.kitchen_service", str(THREADS), str(TICKETS_PER_THREAD)],
        cwd=ROOT,
        env=a.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while kitchen.poll() is None and len(screens) < MAX_SCREENS:
            await asyncio.sleep(0.15)
            n = len(screens)
            screens.append(await boot(a if n % 2 else b, token, "grill" if n % 3 == 0 else None, mid_service=True))
        out, err = await asyncio.to_thread(kitchen.communicate, timeout=300)
    finally:
        if kitchen.poll() is None:
            kitchen.kill()
            kitchen.wait(10)
    assert kitchen.returncode == 0, err[-3000:]
    database = json.loads(out.strip().splitlines()[-1])
    assert sum(s.booted_mid_service for s in screens) >= 3, "the kitchen finished before screens booted mid-service"
    status, page = await asyncio.to_thread(
        http_json, "GET", f"{a.http}/v1/streams/{STREAM}/events?after=0", None, token
    )
    assert status == 200, page
    last_seq = page["last_seq"]
    assert last_seq >= THREADS * TICKETS_PER_THREAD  # at least every create was published

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline and any(not s.station and (s.seqs or [s.position])[-1] < last_seq for s in screens):
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # station screens: let the last filtered events land
    try:
        for screen in screens:
            expected = {k: v for k, v in database.items() if screen.station in (None, v["station"])}
            assert without_versions(screen.state.items) == without_versions(expected), (screen.station, screen.position)
            # A save that published nothing (a stale copy kept the status) spent a version the screen never saw.
            assert all(item["version"] <= expected[key]["version"] for key, item in screen.state.items.items())
            assert screen.seqs == sorted(set(screen.seqs)), "an event came twice or out of order"
            assert all(seq > screen.position for seq in screen.seqs), "an event at or below the snapshot's position"
            if screen.station is None:  # unfiltered: exactly the events after the position, no gap
                assert screen.seqs == list(range(screen.position + 1, last_seq + 1))
    finally:
        for screen in screens:
            assert screen.task is not None
            screen.task.cancel()
            await screen.client.close()
