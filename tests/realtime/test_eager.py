"""start_eagerly: finished coroutines cost no task; suspended ones finish in a task with results and errors intact."""

from __future__ import annotations

import asyncio

import pytest

from realtime.eager import start_eagerly


async def test_a_coroutine_that_never_suspends_runs_at_once() -> None:
    ran = []

    async def send() -> None:
        ran.append(1)

    assert start_eagerly(send()) is None
    assert ran == [1]


async def test_a_coroutine_that_waits_on_a_future_is_finished_by_a_task() -> None:
    ready = asyncio.Event()
    steps = []

    async def send() -> str:
        steps.append("before")
        await ready.wait()
        await asyncio.sleep(0)  # a bare yield too
        steps.append("after")
        return "done"

    task = start_eagerly(send())
    assert task is not None and steps == ["before"]
    ready.set()
    assert await asyncio.wait_for(task, 1) == "done"
    assert steps == ["before", "after"]


async def test_errors_of_the_awaited_future_reach_the_coroutine() -> None:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def send() -> str:
        try:
            await future
        except ValueError:
            return "handled"
        return "not reached"

    task = start_eagerly(send())
    assert task is not None
    future.set_exception(ValueError("boom"))
    assert await asyncio.wait_for(task, 1) == "handled"


async def test_an_error_raised_before_suspending_propagates_at_once() -> None:
    async def send() -> None:
        raise ConnectionError("gone")

    with pytest.raises(ConnectionError):
        start_eagerly(send())
