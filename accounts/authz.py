"""The one place that answers "may user U do permission P at location L?".

Both the WebSocket layer and the REST API ask here. Each question is one database query: memberships at a location
and memberships at the location's organization are matched in a single ``Location`` query, never a loop.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Q, QuerySet

from accounts.models import Membership, User
from accounts.permissions import CATALOG
from locations.models import Location


def _grants(user: User, permission: str) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user, role__permissions__codename=permission)


def permitted_locations(user: User, permission: str) -> QuerySet[Location]:
    """Active locations where ``user`` holds ``permission`` (all of them for a superuser)."""
    active = Location.objects.filter(is_active=True)
    if not user.is_active:
        return active.none()
    if user.is_superuser:
        return active
    grants = _grants(user, permission)
    return active.filter(
        Q(pk__in=grants.filter(location__isnull=False).values("location_id"))
        | Q(organization_id__in=grants.filter(organization__isnull=False).values("organization_id"))
    )


def permitted_location_ids(user: User, permission: str, among: Iterable[str] | None = None) -> set[str]:
    """Public ids of the locations (optionally only among ``among``) where ``user`` holds ``permission``."""
    locations = permitted_locations(user, permission)
    if among is not None:
        locations = locations.filter(public_id__in=list(among))
    return set(locations.values_list("public_id", flat=True))


def has_permission_at(user: User, permission: str, location_ids: Iterable[str]) -> bool:
    """True when ``user`` holds ``permission`` at every one of ``location_ids`` (unknown ids fail closed)."""
    wanted = set(location_ids)
    if not wanted:
        return False
    return permitted_location_ids(user, permission, among=wanted) == wanted


def has_permission_anywhere(user: User, permission: str) -> bool:
    """True when ``user`` holds ``permission`` at one location at least."""
    return permitted_locations(user, permission).exists()


def is_member_at(user: User, location_id: str) -> bool:
    """True when ``user`` has any membership covering ``location_id``."""
    return Location.objects.filter(
        Q(memberships__user=user) | Q(organization__memberships__user=user), public_id=location_id, is_active=True
    ).exists()


def permissions_at(user: User, location_id: str) -> set[str]:
    """Every catalog permission ``user`` holds at ``location_id``."""
    if not user.is_active:
        return set()
    if user.is_superuser:
        return set(CATALOG)
    grants = Membership.objects.filter(user=user).filter(
        Q(location__public_id=location_id) | Q(organization__locations__public_id=location_id)
    )
    return {code for code in grants.values_list("role__permissions__codename", flat=True) if code}
