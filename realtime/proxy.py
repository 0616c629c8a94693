"""The client's address, taken from ``X-Forwarded-For`` only when the direct peer is a trusted proxy.

Login throttling counts failures per client address, so the address must not be something a client can write.
nginx appends the peer it saw (``$proxy_add_x_forwarded_for``); walking the header from the right and skipping
trusted proxies finds the first address no trusted hop vouches less for. From any other peer the header is ignored
and the peer itself is the client. One ASGI wrapper does this for HTTP and WebSocket under uvicorn and daphne alike
(``realtime.serve`` turns both servers' own proxy-header handling off, daphne's trusted every peer)::

    TRUSTED_PROXIES=127.0.0.1,::1,10.0.0.0/8      peer 127.0.0.1, X-Forwarded-For: 6.6.6.6, 203.0.113.9
                                                  -> client 203.0.113.9 (6.6.6.6 is what the client claimed)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``TRUSTED_PROXIES`` entries (addresses or CIDR networks) as networks; a typo fails start-up loudly."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip())


def is_trusted(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(peer: str, forwarded_for: str | None, networks: tuple[IPNetwork, ...]) -> str:
    """The client's address for a request from ``peer`` carrying ``forwarded_for``."""
    if not forwarded_for or not is_trusted(peer, networks):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop, networks):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage where an address should be: trust nothing the header says
    return hops[0] if hops else peer  # every hop is a trusted proxy: the first one is the client


class TrustedProxyHeaders:
    """ASGI wrapper: rewrite ``scope["client"]`` from ``X-Forwarded-For`` when the peer is a trusted proxy."""

    def __init__(self, app: Any, trusted: Iterable[str] | None = None) -> None:
        self.app = app
        self._trusted = None if trusted is None else parse_networks(trusted)

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        if self._trusted is None:
            from django.conf import settings

            self._trusted = parse_networks(settings.TRUSTED_PROXIES)
        return self._trusted

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in {"http", "websocket"} and scope.get("client"):
            peer = scope["client"][0]
            forwarded = [value for name, value in scope.get("headers", []) if name == b"x-forwarded-for"]
            header = b",".join(forwarded).decode("latin-1") if forwarded else None
            address = client_address(peer, header, self.networks)
            if address != peer:
                scope = {**scope, "client": (address, 0)}
        await self.app(scope, receive, send)
