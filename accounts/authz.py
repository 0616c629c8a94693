"""The one place that answers "may user U do permission P at location L?".

Both the WebSocket layer and the REST API ask here. Each question is one database query: memberships at a location
and memberships at the location's organization are matched in a single ``Location`` query, never a loop.
The admin's effective-access, holders and subscribe-check views read the same rule (``effective_access``,
``holders_at`` below), so what the admin shows is what the gateway decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from accounts.models import Membership, User
from accounts.permissions import CATALOG, Perm
from locations.models import Location


def _grants(user: User, permission: str) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user, role__permissions__codename=permission)


def _covering(grants: QuerySet[Membership]) -> Q:
    """The locations these memberships cover: their own location, or every location of their organization."""
    return Q(pk__in=grants.filter(location__isnull=False).values("location_id")) | Q(
        organization_id__in=grants.filter(organization__isnull=False).values("organization_id")
    )


def permitted_locations(user: User, permission: str) -> QuerySet[Location]:
    """Active locations where ``user`` holds ``permission`` (all of them for a superuser)."""
    active = Location.objects.filter(is_active=True)
    if not user.is_active:
        return active.none()
    if user.is_superuser:
        return active
    return active.filter(_covering(_grants(user, permission)))


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
        _covering(Membership.objects.filter(user=user)), public_id=location_id, is_active=True
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


# --- Effective access: the same rule, laid out for people ---------------------------------------------------------
#
# The admin shows what the gateway decides, so these read the same memberships and apply the same rule as the
# functions above: a membership covers its own location, or every location of its organization; a superuser holds
# every permission everywhere; an inactive user or location is granted nothing. Loading is a fixed number of
# queries, however many memberships and locations there are. tests/accounts/test_effective_access.py checks the
# two agree for every user, location and permission of the seeded world and of the edge cases.


@dataclass(frozen=True)
class Grant:
    """Why a permission is held at a location: a membership (there, or through the organization), or superuser."""

    membership: Membership | None  # None: the superuser flag

    @property
    def through_organization(self) -> bool:
        return self.membership is not None and self.membership.organization_id is not None

    @property
    def label(self) -> str:
        if self.membership is None:
            return "superuser"
        if self.through_organization:
            return f"{self.membership.role} through {self.membership.organization}"
        return f"{self.membership.role} at this location"


@dataclass(frozen=True)
class LocationAccess:
    """One location a user may see, each catalog permission held there, and the grants it comes from."""

    location: Location
    permissions: dict[str, tuple[Grant, ...]]
    effective: bool  # False when the user or the location is inactive: the gateway grants nothing here

    @property
    def granted(self) -> set[str]:
        """What the gateway allows here (nothing when the user or the location is inactive)."""
        return set(self.permissions) if self.effective else set()


@dataclass(frozen=True)
class EffectiveAccess:
    user: User
    locations: tuple[LocationAccess, ...]

    def at(self, location_id: str) -> LocationAccess | None:
        return next((a for a in self.locations if a.location.public_id == location_id), None)


def covers(membership: Membership, location: Location) -> bool:
    """True when ``membership`` reaches ``location``: the rule ``permitted_locations`` states in SQL."""
    if membership.location_id is not None:
        return bool(membership.location_id == location.pk)
    return bool(membership.organization_id == location.organization_id)


def _catalog_order(codes: Iterable[str]) -> list[str]:
    wanted = set(codes)
    return [p.value for p in Perm if p.value in wanted]


def _role_codes(membership: Membership) -> list[str]:
    """The catalog permissions of the membership's role, from the prefetched ``role__permissions``."""
    return _catalog_order(p.codename for p in membership.role.permissions.all())


def _loaded_memberships(memberships: QuerySet[Membership]) -> list[Membership]:
    return list(
        memberships.select_related("user", "role", "location", "organization").prefetch_related("role__permissions")
    )


def effective_access(user: User) -> EffectiveAccess:
    """Every location ``user`` may see (inactive ones too, marked), what is held there and why; 3 queries at most."""
    memberships = _loaded_memberships(Membership.objects.filter(user=user).order_by("pk"))
    locations = Location.objects.select_related("organization").order_by("organization__name", "name", "pk")
    if not user.is_superuser:
        locations = locations.filter(_covering(Membership.objects.filter(user=user)))
    rows = []
    for location in locations:
        held: dict[str, list[Grant]] = {code: [Grant(None)] for code in CATALOG} if user.is_superuser else {}
        for membership in memberships:
            if covers(membership, location):
                for code in _role_codes(membership):
                    held.setdefault(code, []).append(Grant(membership))
        permissions = {code: tuple(held[code]) for code in _catalog_order(held)}
        rows.append(LocationAccess(location, permissions, effective=user.is_active and location.is_active))
    return EffectiveAccess(user, tuple(rows))


@dataclass(frozen=True)
class LocationHolders:
    """Who holds each catalog permission at a location, and through which membership; superusers hold them all."""

    location: Location
    permissions: dict[str, tuple[Grant, ...]]
    superusers: tuple[User, ...]


def holders_at(location: Location) -> LocationHolders:
    """The other side of ``effective_access``: every grant that reaches ``location``; at most three queries."""
    memberships = _loaded_memberships(
        Membership.objects.filter(Q(location=location) | Q(organization_id=location.organization_id)).order_by(
            "user__username", "pk"
        )
    )
    held: dict[str, list[Grant]] = {}
    for membership in memberships:
        if covers(membership, location):
            for code in _role_codes(membership):
                held.setdefault(code, []).append(Grant(membership))
    superusers = tuple(User.objects.filter(is_superuser=True).order_by("username"))
    return LocationHolders(location, {code: tuple(held[code]) for code in _catalog_order(held)}, superusers)


KITCHEN_MANAGER_PERMISSIONS = (Perm.KDS_READ, Perm.EVENTS_PUBLISH)


def kitchen_managers_at(location: Location) -> list[User]:
    """The active users a location's kitchen alerts go to: members holding ``kds.read`` and ``events.publish`` there.

    Superusers are not included by their flag alone: an operator of every location would get every kitchen's alerts.
    """
    holders = holders_at(location).permissions
    users_by_permission = [
        {grant.membership.user for grant in holders.get(code, ()) if grant.membership is not None}
        for code in KITCHEN_MANAGER_PERMISSIONS
    ]
    managers = set.intersection(*users_by_permission)
    return sorted((user for user in managers if user.is_active), key=lambda user: user.username)
