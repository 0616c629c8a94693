"""The admin's "Live connections" page: every open connection of every gateway process, and how to end one.

Staff only (``admin.site.admin_view``). It reads the live-connections directory (``realtime.stores.live``: Redis when
``REDIS_URL`` is set, this process otherwise), shows, for one location or all, who is connected from where with
which subscriptions and presence, and counts the connected screens per channel at each location, zero included,
so a location with no screens stands out. Its actions disconnect one connection or all of a user's, with a reason,
wherever they live; deactivating the user as well (``accounts.change_user``) keeps their clients from coming back.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from accounts.models import User
from locations.models import Location
from realtime.registry import CHANNELS, Scope
from realtime.stores import live
from realtime.streams import scope_of, split_stream

# The admin index links the page (realtime/templates/admin/realtime/index.html adds a "Realtime gateway" box).
admin.site.index_template = "admin/realtime/index.html"

LOCATION_CHANNELS = tuple(spec.name for spec in CHANNELS if spec.scope is Scope.LOCATION)


ANY_CHANNEL = "*"


def screens_per_channel(connections: list[live.LiveConnection], location_ids: list[str]) -> dict[str, dict[str, int]]:
    """For each location, how many connections read each location channel there (subscribed or present).

    ``ANY_CHANNEL`` counts the distinct connections at the location over all channels.
    """
    counts: dict[str, dict[str, set[str]]] = {loc: defaultdict(set) for loc in location_ids}
    for connection in connections:
        for stream in connection.streams:
            channel, location_id = split_stream(stream)
            if location_id in counts and channel in LOCATION_CHANNELS:
                counts[location_id][channel].add(connection.connection_id)
                counts[location_id][ANY_CHANNEL].add(connection.connection_id)
    return {
        loc: {ch: len(by_channel[ch]) for ch in (*LOCATION_CHANNELS, ANY_CHANNEL)} for loc, by_channel in counts.items()
    }


def _location_of_interest(connection: live.LiveConnection, location_id: str) -> bool:
    return any(scope_of(stream) == location_id for stream in connection.streams)


def _disconnect(request: HttpRequest) -> str:
    """Carry out the posted action; return what to tell the operator."""
    reason = request.POST.get("reason", "").strip() or "Disconnected by an operator"
    action = request.POST.get("action")
    if action == "disconnect_connection":
        connection_id = request.POST.get("connection_id", "")
        if not connection_id.startswith("conn-"):
            raise ValueError("Choose a connection to disconnect")
        live.request_disconnect(connection_ids=[connection_id], reason=reason)
        return f"Disconnecting {connection_id}: {reason}"
    if action == "disconnect_user":
        user = User.objects.filter(public_id=request.POST.get("user_id", "")).first()
        if user is None:
            raise ValueError("No such user")
        live.request_disconnect(user_ids=[user.public_id], reason=reason)  # first: the clients hear the reason
        said = f"Disconnecting every connection of {user.username}: {reason}"
        if request.POST.get("deactivate") == "on":
            if not request.user.has_perm("accounts.change_user"):
                raise PermissionError("You may not change users, so the user was not deactivated")
            user.is_active = False
            user.save(update_fields=["is_active"])
            said += f"; {user.username} is deactivated and cannot reconnect"
        return said
    raise ValueError("Unknown action")


@require_http_methods(["GET", "POST"])
def live_connections(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        try:
            messages.success(request, _disconnect(request))
        except (ValueError, PermissionError) as exc:
            messages.error(request, str(exc))
        query = request.GET.urlencode()
        return HttpResponseRedirect(reverse("live_connections") + (f"?{query}" if query else ""))

    processes = live.list_processes()
    connections = sorted(
        (c for entries in processes.values() for c in entries), key=lambda c: (c.username, c.since, c.connection_id)
    )
    locations = list(Location.objects.select_related("organization").order_by("organization__name", "name"))
    chosen = request.GET.get("location", "")
    if chosen:
        locations = [loc for loc in locations if loc.public_id == chosen]
        connections = [c for c in connections if _location_of_interest(c, chosen)]
    counts = screens_per_channel(connections, [loc.public_id for loc in locations])
    context: dict[str, Any] = {
        **admin.site.each_context(request),
        "title": "Live connections",
        "chosen_location": chosen,
        "all_locations": Location.objects.order_by("name").values_list("public_id", "name"),
        "connections": connections,
        "process_count": len(processes),
        "user_count": len({c.user_id for c in connections}),
        "channels": LOCATION_CHANNELS,
        "location_rows": [
            {
                "location": loc,
                "counts": [counts[loc.public_id][ch] for ch in LOCATION_CHANNELS],
                "screens": counts[loc.public_id][ANY_CHANNEL],
            }
            for loc in locations
        ],
        "may_deactivate": request.user.has_perm("accounts.change_user"),
    }
    return TemplateResponse(request, "admin/realtime/live_connections.html", context)
