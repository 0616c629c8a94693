"""One timer per event loop for every connection's token expiry, instead of a sleeping task per connection.

A sleeping task holds a coroutine frame, a future and a timer handle for the whole life of the token (15 minutes
by default), per connection: at 5,000 idle screens that is megabytes doing nothing. Here a connection is one heap
entry (when, a weak reference to it, what to call); one ``loop.call_at`` handle is armed for the earliest entry.
An entry whose connection is gone, or whose token was refreshed meanwhile, simply does nothing when it comes due
(the callback decides), so nothing has to be cancelled on disconnect; entries of closed connections (``closing``)
are swept out whenever the heap has doubled since the last sweep, so churn cannot grow it without bound.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)
Callback = Callable[[Any, float], None]
SWEEP_MIN_ENTRIES = 1024


class ExpiryTimer:
    """Calls ``callback(owner, argument)`` at wall-clock time ``when`` for each scheduled entry, in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, weakref.ref[Any], Callback, float]] = []
        self._order = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for = float("inf")
        self._sweep_at = SWEEP_MIN_ENTRIES

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, when: float, owner: Any, callback: Callback, argument: float) -> None:
        """At epoch time ``when`` call ``callback(owner, argument)``, unless ``owner`` is gone by then."""
        heapq.heappush(self._heap, (when, next(self._order), weakref.ref(owner), callback, argument))
        if len(self._heap) >= self._sweep_at:
            self._sweep()
        if when < self._armed_for:
            self._arm(when)

    def _sweep(self) -> None:
        """Drop the entries of connections that are gone or closing."""
        self._heap = [entry for entry in self._heap if _alive(entry[2]())]
        heapq.heapify(self._heap)
        self._sweep_at = max(SWEEP_MIN_ENTRIES, 2 * len(self._heap))

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_for = when
        self._handle = self._loop.call_at(self._loop.time() + max(0.0, when - time.time()), self._fire)

    def _fire(self) -> None:
        self._handle, self._armed_for = None, float("inf")
        now = time.time()
        while self._heap and self._heap[0][0] <= now:
            _, _, ref, callback, argument = heapq.heappop(self._heap)
            owner = ref()
            if owner is None:
                continue
            try:
                callback(owner, argument)
            except Exception:
                logger.exception("token expiry callback failed")
        if self._heap:
            self._arm(self._heap[0][0])


def _alive(owner: Any) -> bool:
    return owner is not None and not getattr(owner, "closing", False)


_timers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ExpiryTimer] = weakref.WeakKeyDictionary()


def get_timer() -> ExpiryTimer:
    """The running event loop's timer."""
    loop = asyncio.get_running_loop()
    timer = _timers.get(loop)
    if timer is None:
        timer = _timers[loop] = ExpiryTimer(loop)
    return timer
