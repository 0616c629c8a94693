"""Acknowledged KDS tickets through the real ASGI application (memory mode), and the Redis store's atomic claim.

Across real processes: tests/e2e/test_acks_cluster.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async

from locations.models import KitchenTicket, Location
from realtime import acks
from realtime.publishing import apublish
from tests.support.asgi import Client, open_client
from tests.support.outbox import drain_outbox

pytestmark = pytest.mark.django_db(transaction=True)

DOWNTOWN, UPTOWN = "loc-xyz789", "loc-abc456"
TIMEOUT_S = 0.3


@pytest.fixture(autouse=True)
def short_ack_timeouts(settings: Any) -> None:
    settings.REALTIME = {
        "KDS_ACK_TIMEOUT_SECONDS": TIMEOUT_S,
        "KDS_ACK_MAX_REDELIVERIES": 2,
        "KDS_ACK_SWEEP_SECONDS": 0.05,
    }


async def run(fn: Callable[[], Any]) -> Any:
    return await sync_to_async(fn)()


async def new_ticket(station: str = "grill", location: str = DOWNTOWN) -> KitchenTicket:
    """Save a ticket, and relay its event from the outbox as a gateway's relay would."""
    ticket = await run(
        lambda: KitchenTicket.objects.create(location=Location.objects.get(public_id=location), station=station)
    )
    await drain_outbox()
    return ticket  # type: ignore[no-any-return]


async def subscribe(client: Client, **params: Any) -> str:
    reply = await client.subscribe("kds", {"location_id": DOWNTOWN, **params})
    assert reply["success"] is True, reply
    return reply["subscription_id"]  # type: ignore[no-any-return]


async def next_event(client: Client, timeout: float = 2) -> dict[str, Any]:
    while True:
        frame = await client.recv(timeout)
        if frame["type"] == "event":
            return frame


async def ack(client: Client, subscription_id: str, event_id: str, request_id: str = "a1") -> dict[str, Any]:
    return await client.request(
        {"type": "ack", "id": request_id, "subscription_id": subscription_id, "event_id": event_id}
    )


async def test_an_ack_is_answered_and_recorded_on_the_ticket_and_a_duplicate_is_a_success(
    token_for: Any, world: dict[str, Any]
) -> None:
    async with open_client(token_for("kim")) as kim:
        sub = await subscribe(kim, ack=True)
        ticket = await new_ticket()
        event = await next_event(kim)
        assert event["event"] == "kds.ticket.created" and "redelivery" not in event
        reply = await ack(kim, sub, event["event_id"])
        assert reply["type"] == "response" and reply["id"] == "a1" and reply["success"] is True
        assert reply["subscription_id"] == sub and reply["event_id"] == event["event_id"]
        assert reply["duplicate"] is False and reply["acked_at"].endswith("Z")
        again = await ack(kim, sub, event["event_id"], "a2")
        assert again["success"] is True and again["duplicate"] is True and again["acked_at"] == reply["acked_at"]
        await ticket.arefresh_from_db()
        assert ticket.acked_at is not None and ticket.acked_by_id == world["kim"].pk
        assert ticket.acked_connection == kim.connected["connection_id"]  # type: ignore[index]
        # Acked: no redelivery follows.
        assert await kim.nothing(TIMEOUT_S * 3)


async def test_ack_errors_carry_the_request_id_and_keep_the_connection(token_for: Any) -> None:
    async with open_client(token_for("john")) as john:
        plain = await subscribe(john)
        acking = await subscribe(john, ack=True, station="grill")
        uptown = (await john.subscribe("kds", {"location_id": UPTOWN, "ack": True}))["subscription_id"]
        await new_ticket("grill", UPTOWN)
        uptown_event = await next_event(john)
        await new_ticket("fryer")
        fryer_event = await next_event(john)  # the plain subscription's copy
        assert fryer_event["subscription_id"] == plain

        cases = [
            ({"subscription_id": "sub-nope", "event_id": "evt-x"}, "subscription_not_found"),
            ({"subscription_id": plain, "event_id": fryer_event["event_id"]}, "ack_not_enabled"),
            ({"subscription_id": acking, "event_id": "evt-unknown"}, "event_not_found"),
            ({"subscription_id": acking, "event_id": uptown_event["event_id"]}, "event_not_in_subscription"),
            ({"subscription_id": acking, "event_id": fryer_event["event_id"]}, "event_not_in_subscription"),
            ({"subscription_id": uptown, "event_id": fryer_event["event_id"]}, "event_not_in_subscription"),
        ]
        for index, (fields, code) in enumerate(cases):
            reply = await john.request({"type": "ack", "id": f"e{index}", **fields})
            assert reply["type"] == "error" and reply["id"] == f"e{index}" and reply["code"] == code, reply
        invalid = await john.request({"type": "ack", "id": "bad", "subscription_id": acking})
        assert invalid["code"] == "invalid_message" and invalid["id"] == "bad"
        listing = await john.request({"type": "list_subscriptions", "id": "l"})
        assert len(listing["subscriptions"]) == 3  # nothing disturbed


async def test_ack_is_refused_as_a_param_of_other_channels(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as sarah:
        reply = await sarah.subscribe("orders", {"location_id": DOWNTOWN, "ack": True})
    assert reply["type"] == "error" and reply["code"] == "invalid_params" and "ack" in reply["message"]


async def test_unacked_ticket_is_redelivered_to_ack_subscriptions_only_then_escalated(
    token_for: Any, world: dict[str, Any]
) -> None:
    async with (
        open_client(token_for("kim")) as kim,
        open_client(token_for("kim")) as screen,
        open_client(token_for("john")) as john,
    ):
        ack_sub = await subscribe(kim, ack=True)
        plain_sub = await subscribe(kim)
        await subscribe(screen)  # another screen, without ack
        alerts = await john.subscribe("notifications", {"events": ["kds.ticket_unacknowledged"]})
        assert alerts["success"] is True
        ticket = await new_ticket()
        first = [await next_event(kim), await next_event(kim)]
        assert {e["subscription_id"] for e in first} == {ack_sub, plain_sub}
        original = first[0]
        assert (await next_event(screen))["event_id"] == original["event_id"]

        for n in (1, 2):
            again = await next_event(kim, TIMEOUT_S * 4)
            assert again["subscription_id"] == ack_sub and again["redelivery"] == n
            assert {k: v for k, v in again.items() if k != "redelivery"} == {**original, "subscription_id": ack_sub}
        alert = await next_event(john, TIMEOUT_S * 4)
        assert alert["event"] == "kds.ticket_unacknowledged"
        assert alert["data"]["ticket_id"] == ticket.public_id and alert["data"]["station"] == "grill"
        assert alert["data"]["location_id"] == DOWNTOWN and alert["data"]["age_seconds"] >= TIMEOUT_S * 3
        assert await kim.nothing(TIMEOUT_S * 2) and await screen.nothing(0.05) and await john.nothing(0.05)
        await ticket.arefresh_from_db()
        assert ticket.unacknowledged_at is not None and ticket.acked_at is None
        # A late ack is still an ack: the ticket says who saw it, and when.
        late = await ack(kim, ack_sub, original["event_id"])
        assert late["success"] is True and late["duplicate"] is False
        await ticket.arefresh_from_db()
        assert ticket.acked_by_id == world["kim"].pk


async def test_a_recall_nobody_acks_flags_a_ticket_whose_creation_was_acked(token_for: Any) -> None:
    async with open_client(token_for("kim")) as kim:
        sub = await subscribe(kim, ack=True)
        ticket = await new_ticket()
        created = await next_event(kim)
        assert (await ack(kim, sub, created["event_id"]))["success"] is True

        def recall() -> None:
            ticket.refresh_from_db()  # a stale full save would write the old (empty) ack fields back
            ticket.status = "recalled"
            ticket.save()

        await run(recall)
        await drain_outbox()
        recalled = await next_event(kim)
        assert recalled["event"] == "kds.ticket.recalled"
        assert [(await next_event(kim, TIMEOUT_S * 4))["redelivery"] for _ in range(2)] == [1, 2]
        for _ in range(40):
            await ticket.arefresh_from_db()
            if ticket.unacknowledged_at is not None:
                break
            await asyncio.sleep(0.05)
        assert ticket.acked_at is not None and ticket.unacknowledged_at is not None
        assert ticket.acked_at < ticket.unacknowledged_at


async def test_station_filtered_ack_subscription_sees_only_its_stations_redeliveries(token_for: Any) -> None:
    async with open_client(token_for("kim")) as kim:
        grill = await subscribe(kim, ack=True, station="grill")
        await new_ticket("fryer")
        await new_ticket("grill")
        created = await next_event(kim)
        assert created["subscription_id"] == grill and created["data"]["station"] == "grill"
        again = await next_event(kim, TIMEOUT_S * 4)
        assert again["redelivery"] == 1 and again["data"]["station"] == "grill"
        assert (await ack(kim, grill, again["event_id"]))["success"] is True


async def test_only_ticket_created_and_recalled_await_an_ack(token_for: Any) -> None:
    async with open_client(token_for("john")) as john:
        sub = await subscribe(john, ack=True)
        await apublish("kds", "kds.ticket.bumped", location_id=DOWNTOWN, data={"ticket_id": "t", "station": "grill"})
        bumped = await next_event(john)
        reply = await ack(john, sub, bumped["event_id"])
        assert reply["code"] == "event_not_found"
        await apublish("kds", "kds.ticket.recalled", location_id=DOWNTOWN, data={"ticket_id": "t", "station": "grill"})
        recalled = await next_event(john)
        assert (await ack(john, sub, recalled["event_id"]))["success"] is True


async def test_a_location_without_ack_screens_is_not_tracked(token_for: Any) -> None:
    """Managers of a kitchen whose screens never ack are not alerted for every ticket."""
    async with open_client(token_for("john")) as john:
        alerts = await john.subscribe("notifications", {})
        assert alerts["success"] is True
        await subscribe(john)  # a screen without ack
        await new_ticket()
        event = await next_event(john)
        sub = await subscribe(john, ack=True)  # an ack screen arrives after that ticket
        assert (await ack(john, sub, event["event_id"]))["code"] == "event_not_found"
        await john.subscribe("kds", {"location_id": UPTOWN}, "plain-uptown")
        await new_ticket(location=UPTOWN)  # Uptown has no ack screen at all
        await next_event(john)
        assert await john.nothing(TIMEOUT_S * 4)  # no redelivery, no alert


async def test_ack_frames_match_the_asyncapi_document(token_for: Any) -> None:
    """The ack message, its response, its errors and a redelivered event, as the live consumer sends them."""
    from tests.realtime.test_asyncapi import matching_messages, payload_validator

    async with open_client(token_for("kim")) as kim:
        sub = await subscribe(kim, ack=True)
        await new_ticket()
        created = await next_event(kim)
        redelivered = await next_event(kim, TIMEOUT_S * 4)
        message = {"type": "ack", "id": "a1", "subscription_id": sub, "event_id": created["event_id"]}
        assert list(payload_validator("ack").iter_errors(message)) == []
        frames = [
            created,
            redelivered,
            await kim.request(message),
            await ack(kim, sub, "evt-nope", "e1"),
            await ack(kim, "sub-nope", "evt-nope", "e2"),
        ]
    assert redelivered["redelivery"] == 1
    expected = ["event.kds", "event.kds", "reply.AckResponse", "error.event_not_found", "error.subscription_not_found"]
    assert [matching_messages(frame) for frame in frames] == [[key] for key in expected]


# --- The Redis store: one decision per step, whoever asks -----------------------------------------------------


@pytest.fixture
def redis_acks(redis_url: str, settings: Any) -> Iterator[str]:
    settings.REDIS_URL = redis_url
    acks.reset_acks()
    yield redis_url
    acks.reset_acks()


@pytest.mark.redis
async def test_racing_claims_take_each_step_exactly_once(redis_acks: str) -> None:
    store = acks.RedisAcks("rtgw-acks-test")
    message = {"group": "g", "tail": "{}", "event": "kds.ticket.created", "fields": {}}
    assert not await store.record("evt-x", ticket_id="t", station="grill", location_id=DOWNTOWN, message=message)
    await store.mark_screens([DOWNTOWN])  # only locations with ack screens are tracked
    for i in range(20):
        await store.record(f"evt-{i}", ticket_id=f"t{i}", station="grill", location_id=DOWNTOWN, message=message)
    await store.record("evt-0", ticket_id="other", station="x", location_id=UPTOWN, message=message)  # idempotent
    assert (await store.lookup("evt-0")).ticket_id == "t0"  # type: ignore[union-attr]
    assert (await store.acknowledge("evt-5", user_id="u", connection_id="c")).first  # type: ignore[union-attr]

    steps: list[tuple[str, int]] = []
    escalated: list[str] = []
    for _round in range(3):  # 2 redeliveries, then the escalation
        await asyncio.sleep(TIMEOUT_S + 0.05)
        results = await asyncio.gather(*(acks.RedisAcks("rtgw-acks-test").claim() for _ in range(4)))
        for redeliveries, escalations in results:
            steps += [(r.event_id, r.redelivery) for r in redeliveries]
            escalated += [e.event_id for e in escalations]
    expected = [f"evt-{i}" for i in range(20) if i != 5]
    assert sorted(steps) == sorted((e, n) for e in expected for n in (1, 2))
    assert sorted(escalated) == sorted(expected)
    for event_id in escalated:
        await store.finish_escalation(event_id)
    await asyncio.sleep(TIMEOUT_S + 0.05)
    assert await store.claim() == ([], [])
    entry = await store.lookup("evt-1")
    assert entry is not None and entry.state == "escalated"
    client = redis.Redis.from_url(redis_acks)
    assert client.zcard("rtgw-acks-test:acks:due") == 0
    client.close()


@pytest.mark.redis
async def test_an_escalation_whose_process_died_is_taken_over_after_the_lease(
    redis_acks: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(acks, "ESCALATION_LEASE_SECONDS", 0.2)
    store = acks.RedisAcks("rtgw-acks-lease")
    message = {"group": "g", "tail": "{}", "event": "kds.ticket.created", "fields": {}}
    await store.mark_screens([DOWNTOWN])
    await store.record("evt-a", ticket_id="t", station="grill", location_id=DOWNTOWN, message=message)
    await asyncio.sleep(TIMEOUT_S * 3 + 0.1)
    for _ in range(3):
        await store.claim()
        await asyncio.sleep(TIMEOUT_S + 0.02)
    # The claimer "died" without finish_escalation: the lease runs out and the escalation is claimed again.
    await asyncio.sleep(0.25)
    _, escalations = await store.claim()
    assert [e.event_id for e in escalations] == ["evt-a"]
    await store.finish_escalation("evt-a")
    await asyncio.sleep(0.25)
    assert await store.claim() == ([], [])
