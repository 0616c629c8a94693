"""Every save of an Order, Table or KitchenTicket takes the next version, also from stale in-memory copies."""

from __future__ import annotations

from typing import Any

import pytest

from locations.models import KitchenTicket, Location, Order, Table
from tests.locations.test_receivers import DOWNTOWN, downtown, run, subscribe
from tests.support.asgi import open_client
from tests.support.services import require_postgres
from tests.support.threads import race


@pytest.mark.django_db
def test_each_model_starts_at_one_and_grows_by_one_per_save(world: Any) -> None:
    location = downtown()
    records = [
        Order.objects.create(location=location),
        Table.objects.create(location=location, label="T9"),
        KitchenTicket.objects.create(location=location, station="grill"),
    ]
    for record in records:
        assert record.version == 1
        record.save()
        record.save(update_fields=["status"])  # a partial save still counts
        record.save(update_fields=[])  # Django's "save nothing"
        record.refresh_from_db()
        assert record.version == 3


@pytest.mark.django_db
def test_saves_from_stale_copies_get_consecutive_versions(world: Any) -> None:
    ticket = KitchenTicket.objects.create(location=downtown(), station="grill")
    first, second = KitchenTicket.objects.get(pk=ticket.pk), KitchenTicket.objects.get(pk=ticket.pk)
    first.status = "late"
    first.save()
    second.status = "bumped"
    second.save()  # its copy still says version 1
    assert (first.version, second.version) == (2, 3)
    assert KitchenTicket.objects.get(pk=ticket.pk).version == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_saves_never_share_a_version(world: Any) -> None:
    require_postgres()  # concurrent writers need a database that takes row locks
    ticket = KitchenTicket.objects.create(location=Location.objects.get(public_id=DOWNTOWN), station="grill")
    copies = [KitchenTicket.objects.get(pk=ticket.pk) for _ in range(8)]
    seen: list[int] = []

    def save_three_times(copy: KitchenTicket) -> None:
        for _ in range(3):
            copy.save()
            seen.append(copy.version)

    race(save_three_times, copies)
    assert sorted(seen) == list(range(2, 2 + 3 * len(copies)))
    assert KitchenTicket.objects.get(pk=ticket.pk).version == 1 + 3 * len(copies)


@pytest.mark.django_db(transaction=True)
async def test_events_carry_the_version_of_the_save(token_for: Any) -> None:
    async with open_client(token_for("kim")) as client:
        await subscribe(client, "kds")
        ticket = await run(lambda: KitchenTicket.objects.create(location=downtown(), station="grill"))
        created = await client.recv()

        def bump() -> None:
            stale = KitchenTicket.objects.get(pk=ticket.pk)
            stale.status = "bumped"
            stale.save()

        await run(bump)
        bumped = await client.recv()
    assert (created["event"], created["data"]["version"]) == ("kds.ticket.created", 1)
    assert (bumped["event"], bumped["data"]["version"]) == ("kds.ticket.bumped", 2)
