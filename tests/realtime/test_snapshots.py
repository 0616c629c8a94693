"""GET /v1/snapshots/<channel>: the state of orders, kds and tables with the position it is valid from."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from locations.models import KitchenTicket, Location, Order, Table
from realtime.stores import history
from tests.realtime.test_rest_api import api_as
from tests.support.asgi import open_client
from tests.support.outbox import drain_outbox
from tests.support.services import require_postgres
from tests.support.threads import race


def relay() -> None:
    """Publish what the outbox holds, as a gateway's relay would (it does not run by itself under pytest)."""
    async_to_sync(drain_outbox)()


pytestmark = pytest.mark.django_db(transaction=True)

DOWNTOWN, UPTOWN, MAIN_STREET = "loc-xyz789", "loc-abc456", "loc-other1"


def snapshot(user: Any, channel: str, **query: str) -> Any:
    return api_as(user).get(f"/v1/snapshots/{channel}", query)


def downtown() -> Location:
    return Location.objects.get(public_id=DOWNTOWN)


def stream_events(user: Any, stream: str, after: int = 0) -> list[dict[str, Any]]:
    body = api_as(user).get(f"/v1/streams/{stream}/events", {"after": after}).json()
    return body["events"]  # type: ignore[no-any-return]


def test_kds_snapshot_holds_the_unbumped_tickets_in_their_event_shape(world: Any) -> None:
    grill = KitchenTicket.objects.create(location=downtown(), station="grill", items=["burger"])
    fry = KitchenTicket.objects.create(location=downtown(), station="fry", items=["fries"])
    done = KitchenTicket.objects.create(location=downtown(), station="grill")
    done.status = "bumped"
    done.save()
    KitchenTicket.objects.create(location=Location.objects.get(public_id=UPTOWN), station="grill")
    grill.status = "late"
    grill.save()
    relay()

    response = snapshot(world["kim"], "kds", location_id=DOWNTOWN)
    assert response.status_code == 200
    body = response.json()
    events = stream_events(world["kim"], f"kds:{DOWNTOWN}")
    assert body["channel"] == "kds" and body["location_id"] == DOWNTOWN
    assert body["position"] == {"seq": len(events), "epoch": events[-1]["epoch"]}
    assert body["id_field"] == "ticket_id" and body["removed_statuses"] == ["bumped"]
    latest = {event["data"]["ticket_id"]: event["data"] for event in events}  # what the events say, last one wins
    assert body["items"] == [latest[grill.public_id], latest[fry.public_id]]
    assert [(item["status"], item["version"]) for item in body["items"]] == [("late", 2), ("new", 1)]

    one_station = snapshot(world["kim"], "kds", location_id=DOWNTOWN, station="fry").json()
    assert [item["ticket_id"] for item in one_station["items"]] == [fry.public_id]
    assert one_station["position"] == body["position"]


def test_orders_snapshot_leaves_out_closed_and_cancelled_orders(world: Any) -> None:
    kept = [Order.objects.create(location=downtown(), status=status) for status in ("open", "ready", "paid")]
    for status in ("closed", "cancelled"):
        Order.objects.create(location=downtown(), status=status)
    body = snapshot(world["sarah"], "orders", location_id=DOWNTOWN).json()
    assert [item["order_id"] for item in body["items"]] == [order.public_id for order in kept]
    assert body["removed_statuses"] == ["closed", "cancelled"] and body["id_field"] == "order_id"
    assert all(item["version"] == 1 and item["location_id"] == DOWNTOWN for item in body["items"])


def test_tables_snapshot_has_every_table_with_its_status(world: Any) -> None:
    table = Table.objects.get(location=downtown(), label="T2")
    table.status = "seated"
    table.save()
    relay()
    body = snapshot(world["sarah"], "tables", location_id=DOWNTOWN).json()
    assert [(item["table_id"], item["status"], item["version"]) for item in body["items"]] == [
        ("T1", "available", 1),
        ("T2", "seated", 2),
        ("T3", "available", 1),
    ]
    assert body["removed_statuses"] == [] and body["position"]["seq"] == 1


def test_a_stream_without_events_has_position_zero(world: Any) -> None:
    body = snapshot(world["kim"], "kds", location_id=DOWNTOWN).json()
    assert body["items"] == [] and body["position"]["seq"] == 0


@pytest.mark.parametrize(
    ("user", "channel", "query", "status", "code"),
    [
        ("kim", "nope", {"location_id": DOWNTOWN}, 404, "channel_not_found"),
        ("john", "analytics", {"location_id": DOWNTOWN}, 400, "stateless_channel"),
        ("john", "notifications", {}, 400, "stateless_channel"),
        ("sarah", "kds", {"location_id": DOWNTOWN}, 403, "unauthorized"),  # no kds.read
        ("kim", "kds", {"location_id": UPTOWN}, 403, "unauthorized"),  # not a member there
        ("john", "kds", {"location_id": MAIN_STREET}, 403, "unauthorized"),  # another organization
        ("kim", "kds", {"location_id": "loc-nowhere"}, 403, "unauthorized"),  # unknown: the same answer
        ("kim", "kds", {}, 400, "invalid_params"),
        ("kim", "kds", {"location_id": "not a public id!"}, 400, "invalid_params"),
        ("kim", "kds", {"location_id": DOWNTOWN, "station": ""}, 400, "invalid_params"),
        ("kim", "kds", {"location_id": DOWNTOWN, "station": "g" * 65}, 400, "invalid_params"),
        ("kim", "orders", {"location_id": DOWNTOWN, "station": "grill"}, 400, "invalid_params"),
        ("kim", "kds", {"location_ids": DOWNTOWN}, 400, "invalid_params"),
    ],
)
def test_bad_snapshot_requests_get_the_protocols_errors(
    world: Any, user: str, channel: str, query: dict[str, str], status: int, code: str
) -> None:
    response = snapshot(world[user], channel, **query)
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code and body["message"]
    if code == "unauthorized":
        assert body == {
            "code": "unauthorized",
            "message": "Not authorized to subscribe to this channel",
            "channel": "kds",
            "required_permission": "kds.read",
        }


def test_snapshot_needs_a_token(world: Any) -> None:
    response = snapshot(None, "kds", location_id=DOWNTOWN)
    assert response.status_code == 401 and response.json()["code"] == "unauthenticated"


def test_snapshot_is_refused_exactly_where_subscribe_is(world: Any) -> None:
    from realtime.subscribe_check import check_subscribe

    for username in ("john", "sarah", "kim", "olga"):
        for channel in ("orders", "kds", "tables"):
            for location in (DOWNTOWN, UPTOWN, MAIN_STREET):
                allowed = check_subscribe(world[username], channel, {"location_id": location}).allowed
                answer = snapshot(world[username], channel, location_id=location)
                assert answer.status_code == (200 if allowed else 403), (username, channel, location)


async def test_snapshot_then_resume_from_its_position_gives_the_current_state(world: Any, token_for: Any) -> None:
    """The contract in one process: the snapshot plus the events after its position equals the database."""

    def change(n: int) -> None:
        ticket = KitchenTicket.objects.create(location=downtown(), station="grill", items=[f"dish {n}"])
        if n % 2:
            ticket.status = "bumped"
            ticket.save()

    for n in range(3):
        await sync_to_async(change)(n)
        if n < 2:  # the last one is committed before the snapshot and relayed after it: its seq is above the position
            await drain_outbox()
    body = (await sync_to_async(snapshot)(world["kim"], "kds", location_id=DOWNTOWN)).json()
    state = {item["ticket_id"]: item for item in body["items"]}
    stream = f"kds:{DOWNTOWN}"
    for n in range(3, 6):  # changes after the snapshot, before the screen subscribes
        await sync_to_async(change)(n)
    await drain_outbox()
    async with open_client(token_for("kim")) as client:
        position = body["position"]
        resume = {stream: position}
        reply = await client.request(
            {"type": "subscribe", "id": "s", "channel": "kds", "params": {"location_id": DOWNTOWN}, "resume": resume}
        )
        assert reply["resumed"] == {stream: True}
        await sync_to_async(change)(6)
        await drain_outbox()
        while not await client.nothing(0.2):
            data = (await client.recv())["data"]
            held = state.get(data["ticket_id"])
            if held is not None and data["version"] <= held["version"]:
                continue
            if data["status"] in body["removed_statuses"]:
                state.pop(data["ticket_id"], None)
            else:
                state[data["ticket_id"]] = data
    fresh = (await sync_to_async(snapshot)(world["kim"], "kds", location_id=DOWNTOWN)).json()
    assert state == {item["ticket_id"]: item for item in fresh["items"]}
    assert len(state) == 4


@pytest.mark.redis
async def test_on_redis_a_snapshot_of_an_empty_stream_still_has_an_epoch_to_resume_with(
    redis_url: str, settings: Any
) -> None:

    settings.REDIS_URL = redis_url
    history.reset_history()
    store = history.get_history()
    assert isinstance(store, history.RedisHistory)
    stream = f"kds:{DOWNTOWN}"
    assert await store.position(stream) == (0, "")  # no history: no epoch to check a resume against
    seq, epoch = await store.anchor(stream)
    assert epoch and seq == 0
    assert (await store.replay(stream, 0, epoch)).covered is True
    assert await store.append(stream, '{"event":"kds.ticket.created"}') == (1, epoch)  # the same run of seqs
    assert await store.anchor(stream) == (1, epoch)


# --- The stream never takes an entity back to an older version ------------------------------------------------


@pytest.mark.redis
def test_racing_saves_reach_the_stream_in_version_order(world: Any, redis_url: str, settings: Any) -> None:
    """Saves from stale copies in eight threads: the outbox relays them in commit order, which is version order."""
    require_postgres()
    settings.REDIS_URL = redis_url
    history.reset_history()
    ticket = KitchenTicket.objects.create(location=downtown(), station="grill")
    copies = [KitchenTicket.objects.get(pk=ticket.pk) for _ in range(8)]

    def save_alternately(copy: KitchenTicket) -> None:
        for status in ("late", "recalled", "late"):
            copy.status = status
            copy.save()

    race(save_alternately, copies)
    async_to_sync(drain_outbox)()
    replay = async_to_sync(history.get_history().replay)(f"kds:{DOWNTOWN}", 0, None)
    versions = [json.loads(raw)["data"]["version"] for _, raw in replay.events]
    assert len(versions) > 2 and versions == sorted(versions) and len(set(versions)) == len(versions)
