"""A kitchen in full service, as a process of its own: threads fire and work tickets through the ORM.

``python -m tests.e2e.kitchen_service THREADS TICKETS`` (with the gateways' environment: their database, Redis and
prefix) saves tickets the way the POS and the screens' back ends do, so their events are published after commit by
the model receivers, then prints the database's open tickets as one JSON line: ``{ticket_id: data}`` in the
``data`` shape of the ``kds`` events. Every save changes the status, so each save publishes one event.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
from typing import Any

STATIONS = ("grill", "fry", "salad")
NEXT_STATUS = {"new": ("late", "bumped"), "late": ("bumped",), "bumped": ("recalled",), "recalled": ("bumped", "late")}


def main(threads: int, tickets: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connection

    from locations.events import ticket_data
    from locations.models import KitchenTicket, Location

    location = Location.objects.get(public_id="loc-xyz789")
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def work(n: int) -> None:
        rng = random.Random(n)
        mine: list[KitchenTicket] = []
        try:
            start.wait()
            for i in range(tickets):
                mine.append(KitchenTicket.objects.create(location=location, station=rng.choice(STATIONS), items=[i]))
                for ticket in rng.sample(mine, min(2, len(mine))):
                    ticket.status = rng.choice(NEXT_STATUS[ticket.status])
                    ticket.save()
        except BaseException as exc:  # reported below: a writer that dies must fail the test
            failures.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise failures[0]
    rows = KitchenTicket.objects.filter(location=location).exclude(status="bumped").select_related("order")
    state: dict[str, Any] = {ticket.public_id: ticket_data(ticket) for ticket in rows}
    print(json.dumps(state), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
