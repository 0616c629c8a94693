"""One connection's send queue: frames in order, sent at once when nothing is in flight, bounded when the peer lags.

Replies and events share this path, so a reply never overtakes an event matched before it (and no event follows an
unsubscribe's reply). A send that suspends (the peer's socket is backed up) holds the frames behind it; past
``max_frames`` of them or ``max_bytes`` of text the owner is told, and closes the connection as a slow consumer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from realtime.eager import start_eagerly

logger = logging.getLogger(__name__)
Send = Callable[[dict[str, Any]], Awaitable[None]]


class SendQueue:
    # One per connection: slots keep it to its fields (issue 13, idle memory per connection).
    __slots__ = (
        "_inflight",
        "_max_bytes",
        "_max_frames",
        "_on_overflow",
        "_queue",
        "_queued_bytes",
        "_send",
        "close_code",
        "closed",
    )

    def __init__(self, send: Send, max_frames: int, max_bytes: int, on_overflow: Callable[[], None]) -> None:
        self._send = send
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._on_overflow = on_overflow
        self._queue: deque[dict[str, Any]] = deque()
        self._queued_bytes = 0
        self._inflight: asyncio.Task[Any] | None = None
        self.closed = False  # a close frame was queued: nothing may follow it
        self.close_code: int | None = None  # the code of the close frame queued, for metrics and logs

    def __len__(self) -> int:
        return len(self._queue) + (self._inflight is not None)

    def put_text(self, text: str) -> None:
        self._put({"type": "websocket.send", "text": text})

    def put_close(self, code: int) -> None:
        if not self.closed:
            self.close_code = int(code)
        self._put({"type": "websocket.close", "code": int(code)})
        self.closed = True

    def drop_pending(self) -> None:
        """Forget what has not been handed to the server yet (a slow consumer resumes from its last seq)."""
        self._queue.clear()
        self._queued_bytes = 0

    def cancel(self) -> None:
        self.closed = True
        self.drop_pending()
        if self._inflight is not None:
            self._inflight.cancel()

    def _put(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        if self._inflight is None and not self._queue:
            self._start(message)
        else:
            size = len(message.get("text", ""))
            if len(self._queue) >= self._max_frames or self._queued_bytes + size > self._max_bytes:
                self._on_overflow()
                return
            self._queue.append(message)
            self._queued_bytes += size

    def _start(self, message: dict[str, Any]) -> None:
        try:
            task = start_eagerly(self._send(message))  # type: ignore[arg-type]
        except Exception:
            logger.debug("send failed; the connection is going away", exc_info=True)
            self.cancel()
            return
        if task is not None:
            self._inflight = task
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[Any]) -> None:
        self._inflight = None
        if task.cancelled():
            return
        if task.exception() is not None:
            logger.debug("send failed; the connection is going away", exc_info=task.exception())
            self.cancel()
            return
        while self._queue and self._inflight is None:
            message = self._queue.popleft()
            self._queued_bytes -= len(message.get("text", ""))
            self._start(message)
