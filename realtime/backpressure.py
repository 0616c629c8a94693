"""Bound what daphne buffers for a client that stops reading.

Daphne's ASGI ``send`` never waits: a frame for a client that does not read piles up in Twisted's transport buffer,
without limit. This wraps daphne's ``serverSend`` so that once a connection has more than
``MAX_SEND_BUFFER_BYTES`` waiting, it is closed with 4408 (slow consumer) and dropped after a short grace, instead
of growing the server's memory or slowing anyone else. The client reconnects and resumes from its last ``seq``.
Under uvicorn the same bound comes from ``send`` waiting on the socket and the consumer's bounded outbox.
"""

from __future__ import annotations

import logging
from typing import Any

from realtime.conf import realtime_settings
from realtime.errors import CloseCode

logger = logging.getLogger(__name__)
ABORT_AFTER_SECONDS = 5.0


def buffered_bytes(transport: Any) -> int:
    """Bytes a Twisted TCP transport holds that the kernel has not taken yet."""
    data_buffer = getattr(transport, "dataBuffer", b"")
    offset = getattr(transport, "offset", 0)
    return len(data_buffer) - offset + int(getattr(transport, "_tempDataLen", 0))


def install_daphne_send_buffer_limit() -> bool:
    """Install the bound on daphne's WebSocket protocol; False when daphne is not the server library here."""
    try:
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:
        return False
    if getattr(WebSocketProtocol, "_realtime_send_limit", False):
        return True
    original_send = WebSocketProtocol.serverSend

    def server_send(self: Any, content: Any, binary: bool = False) -> None:
        limit = int(realtime_settings.MAX_SEND_BUFFER_BYTES)
        transport = getattr(self, "transport", None)
        if limit > 0 and transport is not None and buffered_bytes(transport) > limit:
            if not getattr(self, "_realtime_overflowed", False):
                self._realtime_overflowed = True
                logger.info("closing slow consumer %s: %d bytes unsent", self.client_addr, buffered_bytes(transport))
                self.sendClose(code=int(CloseCode.SLOW_CONSUMER), reason="slow consumer")
                from twisted.internet import reactor

                reactor.callLater(ABORT_AFTER_SECONDS, transport.abortConnection)  # type: ignore[attr-defined,arg-type]
            return
        original_send(self, content, binary)

    WebSocketProtocol.serverSend = server_send
    WebSocketProtocol._realtime_send_limit = True
    return True
