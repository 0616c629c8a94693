"""Model saves become events after commit (through the outbox and its relay); a rolled-back save sends nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction

from locations.models import KitchenTicket, Location, Order, Table
from realtime.models import OutboxEvent
from tests.support.asgi import Client, open_client
from tests.support.outbox import drain_outbox

pytestmark = pytest.mark.django_db(transaction=True)

DOWNTOWN, UPTOWN = "loc-xyz789", "loc-abc456"


async def run(fn: Callable[[], Any]) -> Any:
    """Run ORM code the way a view does (in a thread, in autocommit), then let the relay publish what it committed."""
    result = await sync_to_async(fn)()
    await drain_outbox()
    return result


async def events_until_quiet(client: Client, timeout: float = 0.1) -> list[dict[str, Any]]:
    frames = []
    while not await client.nothing(timeout):
        frames.append(await client.recv())
    return frames


async def subscribe(client: Client, channel: str, location: str = DOWNTOWN) -> str:
    reply = await client.subscribe(channel, {"location_id": location})
    assert reply["success"] is True, reply
    return reply["subscription_id"]  # type: ignore[no-any-return]


def downtown() -> Location:
    return Location.objects.get(public_id=DOWNTOWN)


# --- Orders -------------------------------------------------------------------------------------------------------


async def test_order_create_publishes_order_created(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        sub = await subscribe(client, "orders")
        order = await run(
            lambda: Order.objects.create(location=downtown(), type="takeout", total=Decimal("12.50"), table_label="T2")
        )
        event = await client.recv()
        assert event["subscription_id"] == sub and event["event"] == "order.created"
        assert event["location_id"] == DOWNTOWN and event["stream"] == f"orders:{DOWNTOWN}"
        data = event["data"]
        assert {k: data[k] for k in ("order_id", "location_id", "type", "status", "total", "table")} == {
            "order_id": order.public_id,
            "location_id": DOWNTOWN,
            "type": "takeout",
            "status": "open",
            "total": "12.50",
            "table": "T2",
        }
        assert data["created_at"].endswith("Z") and data["updated_at"].endswith("Z")
        assert await client.nothing(0.05)


async def test_order_status_change_publishes_updated_status_changed_and_paid(token_for: Any) -> None:
    order = await run(lambda: Order.objects.create(location=downtown()))
    async with open_client(token_for("sarah")) as client:
        await subscribe(client, "orders")

        def pay() -> None:
            loaded = Order.objects.get(pk=order.pk)
            loaded.status = "paid"
            loaded.save()

        await run(pay)
        frames = await events_until_quiet(client)
    assert [f["event"] for f in frames] == ["order.updated", "order.status_changed", "order.paid"]
    assert frames[1]["data"]["previous_status"] == "open"
    assert frames[1]["data"]["status"] == "paid"
    assert "previous_status" not in frames[0]["data"] and "previous_status" not in frames[2]["data"]
    assert [f["seq"] for f in frames] == sorted(f["seq"] for f in frames)


async def test_order_closed_and_intermediate_statuses(token_for: Any) -> None:
    order = await run(lambda: Order.objects.create(location=downtown()))
    async with open_client(token_for("sarah")) as client:
        await subscribe(client, "orders")

        def advance(status: str) -> Callable[[], None]:
            def save() -> None:
                order.status = status
                order.save()

            return save

        await run(advance("preparing"))
        preparing = await events_until_quiet(client, 0.05)
        await run(advance("closed"))
        closed = await events_until_quiet(client, 0.05)
    assert [f["event"] for f in preparing] == ["order.updated", "order.status_changed"]
    assert [f["event"] for f in closed] == ["order.updated", "order.status_changed", "order.closed"]
    assert closed[1]["data"]["previous_status"] == "preparing"  # the same instance saved twice


async def test_order_save_without_status_change_is_only_an_update(token_for: Any) -> None:
    order = await run(lambda: Order.objects.create(location=downtown()))
    async with open_client(token_for("sarah")) as client:
        await subscribe(client, "orders")

        def retotal() -> None:
            order.total = Decimal("3.00")
            order.save()

        await run(retotal)
        frames = await events_until_quiet(client, 0.05)
    assert [f["event"] for f in frames] == ["order.updated"]
    assert frames[0]["data"]["total"] == "3.00"


async def test_refreshed_order_reports_no_stale_status_change(token_for: Any) -> None:
    order = await run(lambda: Order.objects.create(location=downtown()))
    await run(lambda: Order.objects.filter(pk=order.pk).update(status="paid"))  # someone else paid it
    async with open_client(token_for("sarah")) as client:
        await subscribe(client, "orders")

        def refresh_and_retotal() -> None:
            order.refresh_from_db()
            order.total = Decimal("9.00")
            order.save()

        await run(refresh_and_retotal)
        frames = await events_until_quiet(client, 0.05)
    assert [f["event"] for f in frames] == ["order.updated"]


async def test_order_events_go_only_to_their_location(token_for: Any) -> None:
    async with open_client(token_for("john")) as client:
        uptown_sub = await subscribe(client, "orders", UPTOWN)
        await run(lambda: Order.objects.create(location=downtown()))
        await run(lambda: Order.objects.create(location=Location.objects.get(public_id=UPTOWN)))
        frames = await events_until_quiet(client, 0.05)
    assert [(f["subscription_id"], f["location_id"]) for f in frames] == [(uptown_sub, UPTOWN)]


# --- Tables -------------------------------------------------------------------------------------------------------


async def test_table_status_changes_publish_seated_cleared_reserved(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        await subscribe(client, "tables")
        table = await run(lambda: Table.objects.get(location__public_id=DOWNTOWN, label="T1"))
        seen = []
        for status in ("seated", "available", "reserved"):

            def save(status: str = status) -> None:
                table.status = status
                table.save()

            await run(save)
            seen.extend(await events_until_quiet(client, 0.05))
    assert [(f["event"], f["data"]["previous_status"], f["data"]["status"]) for f in seen] == [
        ("table.seated", "available", "seated"),
        ("table.cleared", "seated", "available"),
        ("table.reserved", "available", "reserved"),
    ]
    assert seen[0]["data"]["table_id"] == "T1" and seen[0]["data"]["seats"] == 4


async def test_table_create_and_unchanged_save(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        await subscribe(client, "tables")
        table = await run(lambda: Table.objects.create(location=downtown(), label="T9"))
        assert await client.nothing(0.05)  # a new, available table is no event

        def reseat() -> None:
            table.seats = 6
            table.save()

        await run(reseat)
        assert await client.nothing(0.05)  # nor is a save that leaves the status alone
        await run(lambda: Table.objects.create(location=downtown(), label="T10", status="reserved"))
        event = await client.recv()
    assert event["event"] == "table.reserved" and event["data"]["previous_status"] is None


# --- Kitchen tickets ----------------------------------------------------------------------------------------------


async def test_ticket_created_and_bumped(token_for: Any) -> None:
    async with open_client(token_for("kim")) as client:
        await subscribe(client, "kds")

        def create() -> KitchenTicket:
            order = Order.objects.create(location=downtown())
            return KitchenTicket.objects.create(location=order.location, station="grill", order=order, items=["fries"])

        ticket = await run(create)
        created = await client.recv()
        assert created["event"] == "kds.ticket.created"
        assert created["data"] == {
            "ticket_id": ticket.public_id,
            "station": "grill",
            "order_id": ticket.order.public_id,
            "items": ["fries"],
            "status": "new",
            "version": 1,
        }

        def bump() -> None:
            ticket.status = "bumped"
            ticket.save()

        await run(bump)
        bumped = await client.recv()
        assert bumped["event"] == "kds.ticket.bumped" and bumped["data"]["status"] == "bumped"

        def resave() -> None:
            ticket.items = ["fries", "shake"]
            ticket.save()

        await run(resave)
        assert await client.nothing(0.05)


async def test_ticket_station_filter_applies_to_signal_events(token_for: Any) -> None:
    async with open_client(token_for("kim")) as client:
        reply = await client.subscribe("kds", {"location_id": DOWNTOWN, "station": "fryer"})
        await run(lambda: KitchenTicket.objects.create(location=downtown(), station="grill"))
        await run(lambda: KitchenTicket.objects.create(location=downtown(), station="fryer"))
        event = await client.recv()
        assert event["subscription_id"] == reply["subscription_id"] and event["data"]["station"] == "fryer"
        assert await client.nothing(0.05)


# --- After commit only --------------------------------------------------------------------------------------------


class Boom(Exception):
    pass


async def test_rolled_back_saves_publish_nothing(token_for: Any) -> None:
    async with open_client(token_for("john")) as client:
        await subscribe(client, "orders")
        await subscribe(client, "tables")
        await subscribe(client, "kds")

        def save_then_fail() -> None:
            with transaction.atomic():
                order = Order.objects.create(location=downtown())
                order.status = "paid"
                order.save()
                table = Table.objects.get(location__public_id=DOWNTOWN, label="T2")
                table.status = "seated"
                table.save()
                KitchenTicket.objects.create(location=order.location, station="grill", order=order)
                raise Boom

        with pytest.raises(Boom):
            await run(save_then_fail)
        assert await client.nothing(0.2)
        assert not await run(lambda: Order.objects.exists())


async def test_inner_rollback_drops_only_its_own_events(token_for: Any) -> None:
    async with open_client(token_for("sarah")) as client:
        await subscribe(client, "orders")

        def outer() -> str:
            with transaction.atomic():
                kept = Order.objects.create(location=downtown(), type="takeout")
                try:
                    with transaction.atomic():
                        Order.objects.create(location=downtown(), type="delivery")
                        raise Boom
                except Boom:
                    pass
                return kept.public_id

        kept_id = await run(outer)
        frames = await events_until_quiet(client, 0.1)
    assert [(f["event"], f["data"]["order_id"]) for f in frames] == [("order.created", kept_id)]


async def test_events_wait_for_the_commit(token_for: Any, outbox_relay: Any) -> None:
    """With a relay running, nothing of an open transaction is sent; all of it is once it commits."""
    inside, commit = threading.Event(), threading.Event()

    def create_and_wait() -> None:
        try:
            with transaction.atomic():
                Order.objects.create(location=downtown())
                Order.objects.create(location=downtown())
                inside.set()
                assert commit.wait(10)
        finally:
            connections.close_all()

    async with open_client(token_for("sarah")) as client:
        await subscribe(client, "orders")
        writer = threading.Thread(target=create_and_wait)
        writer.start()
        assert await sync_to_async(inside.wait)(10)
        outbox_relay.wake()
        assert await client.nothing(0.3)  # written in the transaction, not published before it commits
        commit.set()
        await sync_to_async(writer.join)(10)
        frames = [await client.recv(5), await client.recv(5)]
    assert [f["event"] for f in frames] == ["order.created", "order.created"]


async def test_a_save_writes_its_event_and_the_row_together_in_autocommit(token_for: Any) -> None:
    """The reported bug: Order.objects.create() in autocommit with no publisher reachable still writes its event."""
    order = await sync_to_async(lambda: Order.objects.create(location=downtown(), type="takeout"))()
    rows = await sync_to_async(lambda: list(OutboxEvent.objects.values_list("stream", "event", "sent_at", "source")))()
    assert rows == [(f"orders:{DOWNTOWN}", "order.created", None, "model")]
    async with open_client(token_for("sarah")) as client:
        await subscribe(client, "orders")
        await drain_outbox()
        event = await client.recv()
    assert event["event"] == "order.created" and event["data"]["order_id"] == order.public_id
