"""Effective access as the admin shows it: the gateway's own rule (accounts.authz), laid out per location."""

from __future__ import annotations

from typing import Any

import pytest

from accounts import admin_tables, authz
from accounts.models import Membership, Role, User
from accounts.permissions import CATALOG, Perm
from locations.models import Location, Organization
from realtime.authorization import may_read
from realtime.registry import CHANNELS, Scope

pytestmark = pytest.mark.django_db

DOWNTOWN, UPTOWN, MAIN_STREET = "loc-xyz789", "loc-abc456", "loc-other1"


def loc(public_id: str) -> Location:
    return Location.objects.get(public_id=public_id)


def edge_cases(world: dict[str, Any]) -> None:
    """The seeded world plus what the rule must get right: overlaps, inactive rows, no access at all."""
    kitchen, server = Role.objects.get(name="kitchen"), Role.objects.get(name="server")
    other = Organization.objects.get(public_id="org-other-diner")
    # kim: kitchen at Downtown (seed) and server across the other organization (overlapping catalog codes).
    Membership.objects.create(user=world["kim"], role=server, organization=other)
    # sarah: kitchen at Uptown too, which then becomes inactive.
    Membership.objects.create(user=world["sarah"], role=kitchen, location=loc(UPTOWN))
    Location.objects.filter(public_id=UPTOWN).update(is_active=False)
    # olga: a manager who has left.
    User.objects.filter(username="olga").update(is_active=False)
    User.objects.create_user("nobody", password="x")
    empty = Role.objects.create(name="empty")
    User.objects.create_user("hollow", password="x")
    Membership.objects.create(user=User.objects.get(username="hollow"), role=empty, location=loc(DOWNTOWN))


def test_effective_access_agrees_with_the_gateway_for_every_user_location_and_permission(world: Any) -> None:
    """The table the admin shows is what the gateway decides: checked cell by cell, also for inactive rows."""
    edge_cases(world)
    locations = list(Location.objects.all())
    checked = 0
    for user in User.objects.all():
        access = authz.effective_access(user)
        for location in locations:
            row = access.at(location.public_id)
            shown = row.granted if row is not None else set()
            for perm in CATALOG:
                assert (perm in shown) == authz.has_permission_at(user, perm, [location.public_id]), (
                    user.username,
                    location.public_id,
                    perm,
                )
                checked += 1
            for spec in CHANNELS:
                if spec.scope is Scope.LOCATION:
                    assert (spec.permission in shown) == may_read(user, spec, (location.public_id,))
    assert checked == User.objects.count() * len(locations) * len(CATALOG)


def test_each_permission_names_the_membership_it_comes_from(world: Any) -> None:
    edge_cases(world)
    kim = authz.effective_access(User.objects.get(username="kim"))
    downtown = kim.at(DOWNTOWN)
    assert downtown is not None and downtown.effective
    assert set(downtown.permissions) == {"kds.read", "orders.read", "inventory.read"}
    assert [g.label for g in downtown.permissions["orders.read"]] == ["kitchen at this location"]
    main_street = kim.at(MAIN_STREET)
    assert main_street is not None
    assert [g.label for g in main_street.permissions["orders.read"]] == ["server through Other Diner"]
    assert kim.at(UPTOWN) is None  # kim may not see it: it is not listed at all

    john = authz.effective_access(User.objects.get(username="john"))
    assert [a.location.public_id for a in john.locations] == [DOWNTOWN, UPTOWN]
    uptown = john.at(UPTOWN)
    assert uptown is not None and not uptown.effective and uptown.granted == set()  # inactive: shown, not granted
    assert set(uptown.permissions) == set(CATALOG)
    assert all(g.through_organization for grants in uptown.permissions.values() for g in grants)


def test_overlapping_memberships_are_all_named(world: Any) -> None:
    sarah = world["sarah"]
    Membership.objects.create(
        user=sarah,
        role=Role.objects.get(name="kitchen"),
        organization=Organization.objects.get(name="Demo Bistro Group"),
    )
    downtown = authz.effective_access(sarah).at(DOWNTOWN)
    assert downtown is not None
    assert [g.label for g in downtown.permissions["orders.read"]] == [
        "server at this location",
        "kitchen through Demo Bistro Group",
    ]
    assert [g.label for g in downtown.permissions["kds.read"]] == ["kitchen through Demo Bistro Group"]
    assert list(downtown.permissions)[:2] == [Perm.ORDERS_READ.value, Perm.KDS_READ.value]  # catalog order


def test_superuser_and_inactive_user(world: Any) -> None:
    admin = authz.effective_access(world["admin"])
    assert {a.location.public_id for a in admin.locations} == {DOWNTOWN, UPTOWN, MAIN_STREET}
    assert all(a.granted == set(CATALOG) for a in admin.locations)
    assert all(g.label == "superuser" for a in admin.locations for gs in a.permissions.values() for g in gs)

    olga = world["olga"]
    olga.is_active = False
    olga.save()
    access = authz.effective_access(olga)
    row = access.at(MAIN_STREET)
    assert row is not None and set(row.permissions) == set(CATALOG) and row.granted == set()


@pytest.mark.parametrize("extra_memberships", [0, 8])
def test_effective_access_is_three_queries_however_many_memberships(
    world: Any, django_assert_num_queries: Any, extra_memberships: int
) -> None:
    """One query for memberships, one for their roles' permissions, one for the locations they cover."""
    org = Organization.objects.create(public_id="org-big", name="Big Group")
    roles = [Role.objects.get(name=n) for n in ("kitchen", "server", "manager")]
    john = User.objects.get(username="john")
    for i in range(extra_memberships):
        place = Location.objects.create(public_id=f"loc-big{i}", name=f"Big {i}", organization=org)
        Membership.objects.create(user=john, role=roles[i % 3], location=place)
    if extra_memberships:
        Membership.objects.create(user=john, role=roles[0], organization=org)
    john = User.objects.get(pk=john.pk)
    with django_assert_num_queries(3):
        access = authz.effective_access(john)
    assert len(access.locations) == 2 + extra_memberships
    with django_assert_num_queries(3):  # the admin's table renders from the same three queries
        html = admin_tables.render_effective_access(john)
    assert html.count("<tr data-location=") >= len(access.locations)


def test_holders_at_lists_direct_and_organization_grants(world: Any, django_assert_num_queries: Any) -> None:
    downtown = loc(DOWNTOWN)
    with django_assert_num_queries(3):
        holders = authz.holders_at(downtown)
    orders = {(g.membership.user.username, g.label) for g in holders.permissions["orders.read"] if g.membership}
    assert orders == {
        ("sarah", "server at this location"),
        ("kim", "kitchen at this location"),
        ("john", "manager through Demo Bistro Group"),
    }
    assert {g.membership.user.username for g in holders.permissions["analytics.read"] if g.membership} == {"john"}
    assert [u.username for u in holders.superusers] == ["admin"]
    main_street = authz.holders_at(loc(MAIN_STREET))
    assert {g.membership.user.username for g in main_street.permissions["orders.read"] if g.membership} == {"olga"}


def test_kitchen_managers_are_the_members_holding_kds_read_and_publish_there(world: dict[str, Any]) -> None:
    """John manages the Demo Bistro Group (both permissions); Kim reads kds but cannot publish; Olga is elsewhere."""
    assert [user.username for user in authz.kitchen_managers_at(loc(DOWNTOWN))] == ["john"]
    world["john"].is_active = False
    world["john"].save()
    assert authz.kitchen_managers_at(loc(DOWNTOWN)) == []
    assert [user.username for user in authz.kitchen_managers_at(loc(MAIN_STREET))] == ["olga"]
