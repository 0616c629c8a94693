"""SendQueue: order, backpressure bounds, and close, against a send that the test holds (a peer that lags)."""

from __future__ import annotations

import asyncio
from typing import Any

from realtime.sendqueue import SendQueue


class Peer:
    """An ASGI ``send`` that suspends while ``held`` (the socket is backed up) and records what it sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.open = asyncio.Event()
        self.open.set()

    async def send(self, message: dict[str, Any]) -> None:
        if not self.open.is_set():
            await self.open.wait()
        self.sent.append(message)

    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send"]


def make_queue(peer: Peer, max_frames: int = 3, max_bytes: int = 1000) -> tuple[SendQueue, list[int]]:
    overflows: list[int] = []
    queue = SendQueue(peer.send, max_frames, max_bytes, lambda: overflows.append(len(overflows)))
    return queue, overflows


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_frames_go_out_at_once_while_the_peer_keeps_up() -> None:
    peer = Peer()
    queue, overflows = make_queue(peer)
    for text in ("a", "b", "c", "d", "e"):
        queue.put_text(text)
    assert peer.texts() == ["a", "b", "c", "d", "e"]  # sent synchronously: nothing ever waited
    assert len(queue) == 0 and overflows == []


async def test_a_lagging_peer_gets_its_frames_in_order_once_it_drains() -> None:
    peer = Peer()
    peer.open.clear()
    queue, overflows = make_queue(peer)
    for text in ("1", "2", "3", "4"):
        queue.put_text(text)
    assert peer.texts() == [] and len(queue) == 4  # one in flight, three waiting
    peer.open.set()
    await settle()
    assert peer.texts() == ["1", "2", "3", "4"] and len(queue) == 0 and overflows == []


async def test_more_frames_than_the_bound_tell_the_owner_and_are_not_queued() -> None:
    peer = Peer()
    peer.open.clear()
    queue, overflows = make_queue(peer, max_frames=2)
    for text in ("in-flight", "w1", "w2"):
        queue.put_text(text)
    assert overflows == []
    queue.put_text("one too many")
    assert overflows == [0] and len(queue) == 3
    peer.open.set()
    await settle()
    assert peer.texts() == ["in-flight", "w1", "w2"]


async def test_more_bytes_than_the_bound_tell_the_owner() -> None:
    peer = Peer()
    peer.open.clear()
    queue, overflows = make_queue(peer, max_frames=100, max_bytes=10)
    queue.put_text("x" * 50)  # in flight: the bound counts what waits behind it
    queue.put_text("y" * 6)
    assert overflows == []
    queue.put_text("z" * 5)  # 6 + 5 > 10
    assert overflows == [0] and len(queue) == 2
    queue.drop_pending()
    queue.put_text("z" * 5)  # room again once the waiting frames are forgotten
    assert overflows == [0] and len(queue) == 2
    peer.open.set()
    await settle()
    assert peer.texts() == ["x" * 50, "z" * 5]


async def test_nothing_follows_a_close_frame() -> None:
    peer = Peer()
    peer.open.clear()
    queue, _ = make_queue(peer)
    queue.put_text("last words")
    queue.put_close(4408)
    queue.put_text("too late")
    queue.put_close(1000)
    assert queue.closed and queue.close_code == 4408  # the first close wins
    peer.open.set()
    await settle()
    assert peer.sent == [{"type": "websocket.send", "text": "last words"}, {"type": "websocket.close", "code": 4408}]


async def test_cancel_stops_the_frame_in_flight_and_forgets_the_rest() -> None:
    peer = Peer()
    peer.open.clear()
    queue, _ = make_queue(peer)
    queue.put_text("stuck")
    queue.put_text("waiting")
    queue.cancel()
    peer.open.set()
    await settle()
    assert peer.sent == [] and queue.closed and len(queue) == 0


async def test_a_failing_send_closes_the_queue() -> None:
    calls: list[dict[str, Any]] = []

    async def broken(message: dict[str, Any]) -> None:
        calls.append(message)
        raise ConnectionError("peer went away")

    queue = SendQueue(broken, 10, 1000, lambda: None)
    queue.put_text("a")
    queue.put_text("b")
    assert queue.closed and [m["text"] for m in calls] == ["a"]
