"""What daphne needs beyond plain ASGI: a bound on what it buffers per client, and RFC 6455's server close codes.

Daphne's ASGI ``send`` never waits: a frame for a client that does not read piles up in Twisted's transport buffer,
without limit. This wraps daphne's ``serverSend`` so that once a connection has more than
``MAX_SEND_BUFFER_BYTES`` waiting, it is closed with 4408 (slow consumer) and dropped after a short grace, instead
of growing the server's memory or slowing anyone else. The client reconnects and resumes from its last ``seq``.
Under uvicorn the same bound comes from ``send`` waiting on the socket and the consumer's bounded send queue.

Autobahn, under daphne, lets an application close only with 1000 or 3000-4999 and raises on anything else, so the
RFC codes a server is meant to send (1008 policy, 1009 too big, 1012 restart, ...) would never leave; they are sent
as close frames directly.
"""

from __future__ import annotations

import logging
from typing import Any

from realtime.conf import realtime_settings
from realtime.errors import CloseCode

logger = logging.getLogger(__name__)


def buffered_bytes(transport: Any) -> int:
    """Bytes a Twisted TCP transport holds that the kernel has not taken yet."""
    data_buffer = getattr(transport, "dataBuffer", b"")
    offset = getattr(transport, "offset", 0)
    return len(data_buffer) - offset + int(getattr(transport, "_tempDataLen", 0))


# RFC 6455 section 7.4.1 codes that a server sends for its own reasons.
SERVER_CLOSE_CODES = frozenset({1001, 1008, 1009, 1011, 1012, 1013, 1014})


def install_daphne_support() -> bool:
    """Patch daphne's WebSocket protocol (once); False when daphne is not installed here."""
    try:
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:
        return False
    if getattr(WebSocketProtocol, "_realtime_send_limit", False):
        return True
    original_send = WebSocketProtocol.serverSend

    def server_send(self: Any, content: Any, binary: bool = False) -> None:
        limit = realtime_settings.MAX_SEND_BUFFER_BYTES
        transport = getattr(self, "transport", None)
        if limit > 0 and transport is not None and buffered_bytes(transport) > limit:
            if not getattr(self, "_realtime_overflowed", False):
                self._realtime_overflowed = True
                logger.info("closing slow consumer %s: %d bytes unsent", self.client_addr, buffered_bytes(transport))
                abort_after = realtime_settings.SLOW_CONSUMER_ABORT_SECONDS
                # Autobahn would drop the peer after its 1 s close-handshake timeout, losing the 4408 frame that
                # waits behind the backlog; give a late reader the same grace as our own abort below.
                self.closeHandshakeTimeout = abort_after
                self.sendClose(code=int(CloseCode.SLOW_CONSUMER), reason="slow consumer")
                from twisted.internet import reactor

                reactor.callLater(abort_after, transport.abortConnection)  # type: ignore[attr-defined,arg-type]
            return
        original_send(self, content, binary)

    original_close = WebSocketProtocol.serverClose

    def server_close(self: Any, code: int | None = None) -> None:
        if code in SERVER_CLOSE_CODES:
            self.sendCloseFrame(code=code, isReply=False)
        else:
            original_close(self, code)

    WebSocketProtocol.serverSend = server_send
    WebSocketProtocol.serverClose = server_close
    WebSocketProtocol._realtime_send_limit = True
    return True
