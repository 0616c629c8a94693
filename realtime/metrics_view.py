"""``GET /metrics``: this process's Prometheus metrics, for its loopback (or ``METRICS_ALLOWED_IPS``) or a token.

Answered only to a client address in ``METRICS_ALLOWED_IPS`` (addresses or networks; default loopback) or to a
request carrying ``Authorization: Bearer <METRICS_TOKEN>``; anyone else gets 403. Async, so the live-state gauges
are read on the event loop that owns the connections. 404 when ``REALTIME_METRICS_ENABLED`` is off.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from functools import cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from realtime import metrics
from realtime.errors import Forbidden, MethodNotAllowed, NotFound

logger = logging.getLogger(__name__)


@cache
def _networks(allowed: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in allowed)


def address_allowed(address: str, allowed: list[str]) -> bool:
    """True when ``address`` falls in one of ``allowed`` (IPv4-mapped IPv6 addresses count as IPv4)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # a unix socket or garbage: not an address we can vouch for
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    try:
        networks = _networks(tuple(allowed))
    except ValueError:
        logger.error("METRICS_ALLOWED_IPS is not a list of addresses or networks: %r; refusing", allowed)
        return False  # fail closed
    return any(ip.version == net.version and ip in net for net in networks)


def token_allowed(request: HttpRequest, expected: str) -> bool:
    kind, _, presented = request.headers.get("Authorization", "").partition(" ")
    if not expected or kind.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), expected.encode())


async def metrics_endpoint(request: HttpRequest) -> HttpResponse:
    if not metrics.enabled():
        return JsonResponse(NotFound("Metrics are disabled on this process").as_body(), status=404)
    if request.method not in ("GET", "HEAD"):
        error = MethodNotAllowed(str(request.method), ["GET", "HEAD"])
        return JsonResponse(error.as_body(), status=405, headers={"Allow": "GET, HEAD"})
    if not (
        address_allowed(request.META.get("REMOTE_ADDR", ""), settings.METRICS_ALLOWED_IPS)
        or token_allowed(request, settings.METRICS_TOKEN)
    ):
        return JsonResponse(Forbidden("Metrics are not served to this client").as_body(), status=403)
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
