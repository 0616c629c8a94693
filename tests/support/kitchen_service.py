"""A kitchen in full service, as a process of its own: threads fire and work tickets through the ORM.

``python -m tests.support.kitchen_service THREADS TICKETS`` (with the gateways' environment: their database, Redis and
prefix) saves tickets the way the POS and the screens' back ends do, so their events are published after commit by
the model receivers, then prints the database's open tickets as one JSON line: ``{ticket_id: data}`` in the
``data`` shape of the ``kds`` events. Each thread fires its own tickets and works everyone's, each from the copy it
loaded first: copies go stale as other threads save, so saves of one ticket race (the versions must still grow, and
the stream must never take a ticket back). A stale save may keep the stored status: it spends a version and
publishes nothing.
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
    fired: list[int] = []  # every thread's tickets (list.append is atomic)

    def work(n: int) -> None:
        rng = random.Random(n)
        copies: dict[int, KitchenTicket] = {}
        try:
            start.wait()
            for i in range(tickets):
                ticket = KitchenTicket.objects.create(location=location, station=rng.choice(STATIONS), items=[n, i])
                copies[ticket.pk] = ticket
                fired.append(ticket.pk)
                for pk in rng.sample(fired, min(2, len(fired))):
                    copy = copies.get(pk) or copies.setdefault(pk, KitchenTicket.objects.get(pk=pk))
                    copy.status = rng.choice(NEXT_STATUS[copy.status])
                    copy.save()
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
