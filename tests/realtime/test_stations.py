"""Dark stations (issue 16): the pure rule, the stores (memory, and Redis for real), the monitor in-process, and a
screen's declared station through the real application."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from realtime.errors import InvalidParams
from realtime.protocol import check_station_name, check_user_info
from realtime.stations import (
    Alert,
    Change,
    MemoryStationStore,
    RedisStationStore,
    StationMonitor,
    StationRef,
    StationState,
    StationStore,
    Status,
    alert_data,
    decide,
)
from realtime.stores.liveness import RedisLiveness
from realtime.stores.presence import Member, MemoryPresence, RedisPresence
from realtime.stores.redis_client import key_prefix
from tests.support.asgi import Client, open_client

LOC = "loc-xyz789"
DELAY_MS = 30_000
T0 = 1_800_000_000_000
GRILL = StationRef(LOC, "grill")
FRY = StationRef(LOC, "fry")
PREFIX = "rtgw-stations"


def unlit(since: int = T0) -> StationState:
    return StationState(Status.UNLIT, since)


def dark(since: int = T0) -> StationState:
    return StationState(Status.DARK, since)


LIT = StationState(Status.LIT)


# The rule ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "screens", "active", "now", "expected", "alert"),
    [
        # the clock starts at the first check without a screen, also for a station never seen before
        (None, 0, True, T0, unlit(T0), None),
        (LIT, 0, True, T0, unlit(T0), None),
        # not yet dark: nothing changes, the clock keeps its start
        (unlit(), 0, True, T0 + DELAY_MS - 1, unlit(), None),
        # dark after the delay, reported once: the dark state keeps when it began
        (unlit(), 0, True, T0 + DELAY_MS, dark(), Alert.DARK),
        (dark(), 0, True, T0 + 10 * DELAY_MS, dark(), None),
        # a screen: restored only after a dark alert, never after an unreported gap
        (dark(), 1, True, T0 + DELAY_MS + 5, LIT, Alert.RESTORED),
        (unlit(), 2, True, T0 + 5, LIT, None),
        (None, 1, True, T0, LIT, None),
        (LIT, 3, True, T0, LIT, None),
        # an inactive station (or location) is forgotten without an alert, whatever it was
        (dark(), 0, False, T0, None, None),
        (unlit(), 0, False, T0 + DELAY_MS, None, None),
        (LIT, 1, False, T0, None, None),
        (None, 0, False, T0, None, None),
    ],
)
def test_decide(
    state: StationState | None, screens: int, active: bool, now: int, expected: StationState | None, alert: Any
) -> None:
    decision = decide(state, screens=screens, active=active, now_ms=now, dark_after_ms=DELAY_MS)
    assert decision.state == expected
    assert decision.alert == alert
    assert decision.dark_since_ms == (T0 if alert is not None else None)  # the spell began at T0 in every case


def test_a_screen_gone_for_less_than_the_delay_raises_nothing_and_a_longer_gap_exactly_one_pair() -> None:
    """A walk through a service: a reboot of the screen (or of every gateway) shorter than the delay is silent."""
    state: StationState | None = None
    alerts = []
    timeline = [(0, 1), (1_000, 0), (20_000, 0), (25_000, 1), (26_000, 0), (40_000, 0), (56_000, 0), (57_000, 0)]
    timeline += [(90_000, 0), (91_000, 2), (92_000, 2)]
    for now, screens in timeline:
        decision = decide(state, screens=screens, active=True, now_ms=T0 + now, dark_after_ms=DELAY_MS)
        state = decision.state
        if decision.alert is not None:
            alerts.append((now, decision.alert))
    assert alerts == [(56_000, Alert.DARK), (91_000, Alert.RESTORED)]
    assert state == LIT


def test_state_round_trips_through_its_stored_form() -> None:
    for state in (LIT, unlit(), dark(T0 + 7)):
        assert StationState.from_json(state.to_json()) == state
    assert StationState.from_json(None) is None and StationState.from_json(b"") is None


def test_alert_data_says_since_when_and_for_how_long() -> None:
    assert alert_data(GRILL, T0, T0 + 31_250) == {
        "location_id": LOC,
        "station": "grill",
        "dark_since": "2027-01-15T08:00:00.000Z",
        "seconds": 31.2,
    }


# A screen's declared station ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [5, "", "   ", None, ["grill"], {"name": "grill"}, "x" * 65])
def test_a_declared_station_must_be_a_name(bad: Any) -> None:
    with pytest.raises(InvalidParams, match=r"user_info\.station"):
        check_station_name(bad)
    with pytest.raises(InvalidParams, match=r"user_info\.station"):
        check_user_info({"station": bad}, max_bytes=1024, max_depth=3, channel="kds")


def test_any_station_name_is_accepted_and_other_channels_do_not_read_it() -> None:
    assert check_user_info({"station": "pastry-2"}, max_bytes=1024, max_depth=3, channel="kds") == {
        "station": "pastry-2"
    }
    assert check_user_info({"station": 5}, max_bytes=1024, max_depth=3, channel="orders") == {"station": 5}


@pytest.mark.django_db(transaction=True)
async def test_a_bad_declared_station_is_an_error_that_leaves_the_connection_alone(token_for: Any) -> None:
    at = {"channel": "kds", "params": {"location_id": LOC}}
    async with open_client(token_for("kim")) as kim:
        await kim.subscribe("kds", {"location_id": LOC}, "s1")
        reply = await kim.request({"type": "presence_join", "id": "j1", **at, "user_info": {"station": 7}})
        assert reply["type"] == "error" and reply["id"] == "j1" and reply["code"] == "invalid_params", reply
        assert "user_info.station" in reply["message"]
        listed = await kim.request({"type": "presence_list", "id": "l1", **at})
        assert listed["users"] == []
        joined = await kim.request({"type": "presence_join", "id": "j2", **at, "user_info": {"station": "no-such"}})
        assert joined["type"] == "presence" and joined["data"]["user_info"] == {"station": "no-such"}, joined
        assert (await kim.recv())["success"] is True  # an unknown name is accepted (it raises no alerts)
        assert len((await kim.request({"type": "list_subscriptions", "id": "l2"}))["subscriptions"]) == 1


# The stores: the same contract in memory and in Redis -----------------------------------------------------------


def screen(station: Any, user: str = "user-kim", tab: int = 1) -> Member:
    return Member(user, {"station": station} if station is not None else {}, f"2026-01-18T14:30:0{tab}.000Z")


class Backend:
    """A station store with a way to join presence members (of a "process") it observes."""

    def __init__(self, store: StationStore, join: Any) -> None:
        self.store = store
        self.join = join


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest, settings: Any) -> AsyncIterator[Backend]:
    if request.param == "memory":
        presence = MemoryPresence()
        yield Backend(MemoryStationStore(presence), lambda key, conn, member: presence.join(key, conn, member))
        return
    url = request.getfixturevalue("redis_url")
    settings.REDIS_URL = url
    settings.REALTIME = {"PRESENCE_TTL_SECONDS": 1.0}

    async def join(key: str, conn: str, member: Member) -> Any:
        await RedisLiveness(PREFIX, process="proc-a").beat()
        return await RedisPresence(PREFIX, process="proc-a").join(key, conn, member)

    yield Backend(RedisStationStore(PREFIX), join)


async def test_observe_counts_the_live_screens_of_each_station(backend: Backend) -> None:
    key = GRILL.presence_key
    await backend.join(key, "c1", screen("grill"))
    await backend.join(key, "c2", screen("grill", "user-john", 2))
    await backend.join(key, "c3", screen("fry"))
    await backend.join(key, "c4", screen(None))  # a kds member that declared no station
    await backend.join("orders:" + LOC, "c5", screen("expo"))  # not a kds screen
    await backend.join(StationRef("loc-abc456", "expo").presence_key, "c6", screen("expo"))
    expo = StationRef(LOC, "expo")
    observation = await backend.store.observe([GRILL, FRY, expo, StationRef("loc-abc456", "expo")])
    assert [(s.station.name, s.screens, s.state) for s in observation.seen] == [
        ("grill", 2, None),
        ("fry", 1, None),
        ("expo", 0, None),
        ("expo", 1, None),
    ]
    assert abs(observation.now_ms - time.time() * 1000) < 5_000


async def test_apply_is_a_compare_and_set_one_winner_per_transition(backend: Backend) -> None:
    first = await backend.store.observe([GRILL, FRY])
    assert [s.raw_state for s in first.seen] == [None, None]
    going_unlit = Change(GRILL, None, unlit().to_json())
    # every "process" saw the same state and decided the same transition: exactly one may announce it
    results = await asyncio.gather(*(backend.store.apply([going_unlit]) for _ in range(8)))
    assert sorted(r[0] for r in results) == [False] * 7 + [True]
    seen = (await backend.store.observe([GRILL, FRY])).seen
    assert [s.state for s in seen] == [unlit(), None]

    stale = Change(GRILL, None, LIT.to_json())  # decided on the state before the winner's
    to_dark = Change(GRILL, seen[0].raw_state, dark().to_json())
    assert await backend.store.apply([stale, to_dark, Change(FRY, None, LIT.to_json())]) == [False, True, True]
    assert await backend.store.apply([Change(GRILL, dark().to_json(), None)]) == [True]  # forgotten
    assert [s.state for s in (await backend.store.observe([GRILL, FRY])).seen] == [None, LIT]


@pytest.mark.redis
async def test_screens_of_a_lapsed_process_do_not_count(redis_url: str, settings: Any) -> None:
    settings.REDIS_URL = redis_url
    settings.REALTIME = {"PRESENCE_TTL_SECONDS": 1.0}
    store = RedisStationStore(PREFIX)
    for proc, conn in (("proc-a", "c1"), ("proc-b", "c2")):
        await RedisLiveness(PREFIX, process=proc).beat()
        await RedisPresence(PREFIX, process=proc).join(GRILL.presence_key, conn, screen("grill"))
    assert (await store.observe([GRILL])).seen[0].screens == 2
    await asyncio.sleep(0.6)
    await RedisLiveness(PREFIX, process="proc-b").beat()
    await asyncio.sleep(0.6)  # proc-a lapsed (1 s), unswept: its screen no longer counts
    assert (await store.observe([GRILL])).seen[0].screens == 1
    with redis.Redis.from_url(redis_url) as client:
        assert client.hlen(f"{PREFIX}:pres:{{{GRILL.presence_key}}}:m") == 2  # still stored


# The monitor, in-process through the real application -----------------------------------------------------------


@pytest.fixture
def quick(settings: Any) -> Iterator[None]:
    settings.REALTIME = {"KDS_DARK_STATION_SECONDS": 0.3, "KDS_STATION_LIST_CACHE_SECONDS": 0.0}
    yield


async def next_notification(client: Client, timeout: float = 2) -> dict[str, Any]:
    while True:
        frame = await client.recv(timeout)
        if frame.get("type") == "event":
            return frame


async def kitchen(token_for: Any) -> tuple[Any, Any]:
    from locations.models import Location, Station

    location = await Location.objects.aget(public_id=LOC)
    await Station.objects.acreate(location=location, name="grill")
    await Station.objects.acreate(location=location, name="retired", is_active=False)
    return token_for("john"), token_for("kim")


JOIN = {"type": "presence_join", "id": "j", "channel": "kds", "params": {"location_id": LOC}}


@pytest.mark.django_db(transaction=True)
async def test_the_monitor_alerts_the_managers_once_when_dark_and_once_when_restored(
    token_for: Any, quick: None
) -> None:
    john_token, kim_token = await kitchen(token_for)
    monitor = StationMonitor()
    async with open_client(john_token) as john, open_client(kim_token) as kim:
        await john.subscribe("notifications", {}, "n")
        await kim.request({**JOIN, "user_info": {"station": "grill"}})
        assert await monitor.check() == []  # lit; "retired" is inactive
        await kim.request({"type": "presence_leave", "id": "l", "channel": "kds", "params": {"location_id": LOC}})
        assert await monitor.check() == []  # unlit: the clock starts
        await asyncio.sleep(0.35)
        [(alert, data)] = await monitor.check()
        assert alert is Alert.DARK and data["station"] == "grill" and data["seconds"] >= 0.3
        event = await next_notification(john)
        assert event["event"] == "kds.station_dark" and event["user_id"] == "user-john"
        assert event["data"] == data
        await asyncio.sleep(0.35)
        assert await monitor.check() == []  # reported once
        assert await john.nothing(0.2)

        await kim.request({**JOIN, "user_info": {"station": "grill"}})
        [(alert, restored)] = await monitor.check()
        assert alert is Alert.RESTORED and restored["dark_since"] == data["dark_since"]
        assert restored["seconds"] >= data["seconds"]
        event = await next_notification(john)
        assert event["event"] == "kds.station_restored" and event["data"] == restored
        assert await monitor.check() == []


@pytest.mark.django_db(transaction=True)
async def test_only_the_kitchen_managers_of_the_location_are_told(token_for: Any, quick: None) -> None:
    john_token, _ = await kitchen(token_for)
    monitor = StationMonitor()
    async with open_client(john_token) as john, open_client(token_for("olga")) as olga:
        for client in (john, olga):
            await client.subscribe("notifications", {}, "n")
        assert await monitor.check() == []  # never had a screen: the clock starts now
        await asyncio.sleep(0.35)
        [(alert, data)] = await monitor.check()
        assert alert is Alert.DARK and data["station"] == "grill"
        assert (await next_notification(john))["data"] == data
        assert await olga.nothing(0.3)  # a manager of another organization


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_two_monitors_on_one_redis_announce_each_transition_once(
    token_for: Any, redis_url: str, settings: Any
) -> None:
    settings.REDIS_URL = redis_url
    # the station list stays cached, so both checks observe before either sets: the compare-and-set decides
    settings.REALTIME = {"KDS_DARK_STATION_SECONDS": 0.3, "KDS_STATION_LIST_CACHE_SECONDS": 60.0}
    john_token, _ = await kitchen(token_for)
    monitors = [StationMonitor(), StationMonitor()]
    async with open_client(john_token) as john:
        await john.subscribe("notifications", {}, "n")
        published: list[Any] = []
        for _ in range(6):
            for outcome in await asyncio.gather(*(m.check() for m in monitors)):
                published += outcome
            await asyncio.sleep(0.1)
        assert [alert for alert, _ in published] == [Alert.DARK]
        assert (await next_notification(john))["event"] == "kds.station_dark"
        assert await john.nothing(0.3)
    with redis.Redis.from_url(redis_url) as client:
        states = client.hgetall(f"{key_prefix()}:kds:stations")
    assert {k.decode(): StationState.from_json(v).status for k, v in states.items()} == {  # type: ignore[union-attr]
        f"{LOC}\ngrill": Status.DARK  # "retired" is inactive: no state
    }
