"""Run a coroutine synchronously until it first suspends; only then hand the rest to a task.

Sending a frame through the ASGI server almost never suspends (daphne's ``send`` never does; uvicorn's only when the
socket is backed up), so fanning an event out to a thousand connections through a thousand task wake-ups costs more
than the sends themselves. Python 3.12's ``eager_task_factory`` does this for every task; this is the same idea for
the one hot call, on Python 3.11.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def start_eagerly(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
    """Drive ``coro`` now; return None if it finished, else a task that finishes it (exceptions propagate)."""
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_resume(coro, yielded))


async def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    """Continue a coroutine that suspended on ``yielded`` (a future, or None for a bare yield), as a task would."""
    while True:
        try:
            if yielded is None:
                await asyncio.sleep(0)
                value = None
            else:
                # The coroutine's own ``await`` marked the future as blocking; a Task clears that mark before waiting
                # on it, and so must we (the C future refuses a second ``await`` while it is set).
                yielded._asyncio_future_blocking = False
                value = await yielded
        except BaseException as exc:  # deliver the future's failure (or our cancellation) into the coroutine
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            yielded = coro.send(value)
        except StopIteration as stop:
            return stop.value
