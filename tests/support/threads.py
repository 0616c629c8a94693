"""Database writers racing each other: each in a thread of its own, all released at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from django.db import connection

T = TypeVar("T")


def race(work: Callable[[T], None], each: Sequence[T]) -> None:
    """Run ``work(item)`` for every item at the same moment, one thread each (its own connection, closed after)."""
    start = threading.Barrier(len(each))

    def run(item: T) -> None:
        try:
            start.wait()
            work(item)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(item,)) for item in each]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
