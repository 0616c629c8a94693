"""Users, roles, memberships, and the one function that answers "may U do P at L?"."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts import authz
from accounts.models import Membership, Role, User, catalog_permissions
from accounts.permissions import CATALOG, PERMISSION_DESCRIPTIONS, Perm
from locations.models import Location, Order, Organization, validate_time_zone
from realtime.authorization import authorize, may_read
from realtime.errors import Unauthorized
from realtime.registry import REGISTRY

pytestmark = pytest.mark.django_db

DOWNTOWN, UPTOWN, MAIN_STREET = "loc-xyz789", "loc-abc456", "loc-other1"
DEMO_LOCATIONS = {DOWNTOWN, UPTOWN}
ALL_LOCATIONS = {DOWNTOWN, UPTOWN, MAIN_STREET}


@pytest.fixture(autouse=True)
def fast_password_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def fresh(user: User) -> User:
    return User.objects.get(pk=user.pk)


# --- Models -------------------------------------------------------------------------------------------------------


def test_user_public_id_is_generated_from_the_username() -> None:
    user = User.objects.create_user("Maria Lopez", password="x")
    assert user.public_id == "user-maria-lopez"
    assert str(user) == "Maria Lopez"
    user.display_name = "Maria"
    assert str(user) == "Maria"


def test_user_public_id_is_kept_when_given_and_made_unique_on_collision() -> None:
    first = User.objects.create_user("pat", password="x", public_id="user-custom")
    assert first.public_id == "user-custom"
    second = User.objects.create_user("Pat!", password="x")
    third = User.objects.create_user("pat.", password="x")
    assert second.public_id == "user-pat"
    assert third.public_id.startswith("user-pat-") and third.public_id != second.public_id


def test_user_public_id_for_an_unsluggable_username() -> None:
    user = User.objects.create_user("!!!", password="x")
    assert user.public_id.startswith("user-") and len(user.public_id) > len("user-")


def test_catalog_permissions_exist_with_descriptions() -> None:
    rows = {p.codename: p.name for p in catalog_permissions()}
    assert set(rows) == CATALOG
    assert rows["orders.read"] == PERMISSION_DESCRIPTIONS[Perm.ORDERS_READ]


def test_every_read_channel_permission_is_in_the_catalog() -> None:
    assert {spec.permission for spec in REGISTRY.values()} <= CATALOG
    assert Perm.EVENTS_PUBLISH in CATALOG


def test_role_permission_codes(world: Any) -> None:
    assert Role.objects.get(name="server").permission_codes() == ["notifications.read", "orders.read", "tables.read"]
    assert str(Role.objects.get(name="kitchen")) == "kitchen"


def test_membership_covers_a_location_or_an_organization_never_both_or_neither(world: Any) -> None:
    role = Role.objects.get(name="server")
    location = Location.objects.get(public_id=UPTOWN)
    with transaction.atomic(), pytest.raises(IntegrityError):
        Membership.objects.create(user=world["olga"], role=role, location=location, organization=location.organization)
    with transaction.atomic(), pytest.raises(IntegrityError):
        Membership.objects.create(user=world["olga"], role=role)
    member = Membership.objects.create(user=world["olga"], role=role, location=location)
    assert member.scope_label == f"location {location}"
    assert str(member) == "Olga Owner as server at location Uptown (loc-abc456)"
    org_member = Membership.objects.get(user=world["john"])
    assert org_member.scope_label == "organization Demo Bistro Group"


def test_membership_is_unique_per_user_role_and_scope(world: Any) -> None:
    existing = Membership.objects.get(user=world["sarah"])
    with transaction.atomic(), pytest.raises(IntegrityError):
        Membership.objects.create(user=world["sarah"], role=existing.role, location=existing.location)


def test_role_in_use_cannot_be_deleted(world: Any) -> None:
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        Role.objects.get(name="server").delete()


def test_location_validation() -> None:
    org = Organization.objects.create(public_id="org-x", name="X")
    location = Location(public_id="xyz", name="Bad", organization=org)
    with pytest.raises(ValidationError) as caught:
        location.full_clean()
    assert "public_id" in caught.value.message_dict
    with pytest.raises(ValidationError):
        validate_time_zone("Mars/Olympus")
    validate_time_zone("Europe/Paris")
    Location(public_id="loc-good", name="Good", organization=org, time_zone="Europe/Paris").full_clean()


def test_seed_is_idempotent(world: Any) -> None:
    from django.core.management import call_command

    counts = (User.objects.count(), Membership.objects.count(), Location.objects.count(), Role.objects.count())
    call_command("seed_demo", stdout=io.StringIO())
    assert counts == (User.objects.count(), Membership.objects.count(), Location.objects.count(), Role.objects.count())
    assert counts == (5, 4, 3, 3)


def test_order_public_id_is_generated(world: Any) -> None:
    order = Order.objects.create(location=Location.objects.get(public_id=DOWNTOWN))
    assert order.public_id.startswith("ord-") and str(order) == order.public_id


# --- Permission resolution ------------------------------------------------------------------------------------


def test_membership_at_a_location_covers_only_that_location(world: Any) -> None:
    sarah = world["sarah"]
    assert authz.permitted_location_ids(sarah, "orders.read") == {DOWNTOWN}
    assert authz.permitted_location_ids(sarah, "tables.read") == {DOWNTOWN}
    assert authz.permitted_location_ids(sarah, "kds.read") == set()
    assert authz.has_permission_at(sarah, "orders.read", [DOWNTOWN])
    assert not authz.has_permission_at(sarah, "orders.read", [UPTOWN])


def test_membership_at_an_organization_covers_all_its_locations(world: Any) -> None:
    john = world["john"]
    for perm in Perm:
        assert authz.permitted_location_ids(john, perm) == DEMO_LOCATIONS
    assert authz.has_permission_at(john, "voice.read", [DOWNTOWN, UPTOWN])
    assert not authz.has_permission_at(john, "voice.read", [DOWNTOWN, MAIN_STREET])
    assert authz.permitted_location_ids(world["olga"], "orders.read") == {MAIN_STREET}


def test_new_location_of_an_organization_is_covered_at_once(world: Any) -> None:
    Location.objects.create(
        public_id="loc-new", name="New", organization=Organization.objects.get(public_id="org-demo-bistro")
    )
    assert authz.permitted_location_ids(world["john"], "orders.read") == {*DEMO_LOCATIONS, "loc-new"}
    assert authz.permitted_location_ids(world["sarah"], "orders.read") == {DOWNTOWN}


def test_location_and_organization_memberships_add_up(world: Any) -> None:
    kitchen = Role.objects.get(name="kitchen")
    Membership.objects.create(
        user=world["sarah"], role=kitchen, organization=Organization.objects.get(public_id="org-other-diner")
    )
    sarah = fresh(world["sarah"])
    assert authz.permitted_location_ids(sarah, "orders.read") == {DOWNTOWN, MAIN_STREET}
    assert authz.permitted_location_ids(sarah, "kds.read") == {MAIN_STREET}
    assert authz.permissions_at(sarah, MAIN_STREET) == {"kds.read", "orders.read", "inventory.read"}


def test_superuser_may_do_everything_at_every_active_location(world: Any) -> None:
    admin = world["admin"]
    assert not Membership.objects.filter(user=admin).exists()
    assert authz.permitted_location_ids(admin, "kds.read") == ALL_LOCATIONS
    assert authz.permissions_at(admin, MAIN_STREET) == set(CATALOG)
    Location.objects.filter(public_id=MAIN_STREET).update(is_active=False)
    assert authz.permitted_location_ids(admin, "kds.read") == DEMO_LOCATIONS


def test_inactive_user_may_do_nothing(world: Any) -> None:
    for username in ("john", "admin"):
        user = world[username]
        user.is_active = False
        user.save()
        assert authz.permitted_location_ids(user, "orders.read") == set()
        assert not authz.has_permission_at(user, "orders.read", [DOWNTOWN])
        assert not authz.has_permission_anywhere(user, "orders.read")
        assert authz.permissions_at(user, DOWNTOWN) == set()
        assert not may_read(user, REGISTRY["orders"], (DOWNTOWN,))
        assert not may_read(user, REGISTRY["notifications"], (user.public_id,))


def test_inactive_location_is_never_permitted(world: Any) -> None:
    Location.objects.filter(public_id=DOWNTOWN).update(is_active=False)
    assert authz.permitted_location_ids(world["sarah"], "orders.read") == set()
    assert not authz.is_member_at(world["sarah"], DOWNTOWN)


def test_unknown_and_empty_location_lists_fail_closed(world: Any) -> None:
    admin = world["admin"]
    assert not authz.has_permission_at(admin, "orders.read", [])
    assert not authz.has_permission_at(admin, "orders.read", ["loc-nope"])
    assert not authz.has_permission_at(admin, "orders.read", [DOWNTOWN, "loc-nope"])
    assert authz.permitted_location_ids(admin, "orders.read", among=[DOWNTOWN, "loc-nope"]) == {DOWNTOWN}


def test_role_change_takes_effect_on_the_next_check(world: Any) -> None:
    sarah = world["sarah"]
    server = Role.objects.get(name="server")
    orders_read = catalog_permissions().get(codename="orders.read")
    kds_read = catalog_permissions().get(codename="kds.read")
    assert authz.has_permission_at(sarah, "orders.read", [DOWNTOWN])
    server.permissions.remove(orders_read)
    server.permissions.add(kds_read)
    assert not authz.has_permission_at(sarah, "orders.read", [DOWNTOWN])
    assert authz.has_permission_at(sarah, "kds.read", [DOWNTOWN])
    with pytest.raises(Unauthorized):
        authorize(sarah, REGISTRY["orders"], (DOWNTOWN,))
    authorize(sarah, REGISTRY["kds"], (DOWNTOWN,))


def test_membership_change_takes_effect_on_the_next_check(world: Any) -> None:
    sarah = world["sarah"]
    membership = Membership.objects.get(user=sarah)
    membership.role = Role.objects.get(name="kitchen")
    membership.save()
    assert authz.permissions_at(sarah, DOWNTOWN) == {"kds.read", "orders.read", "inventory.read"}
    membership.delete()
    assert authz.permissions_at(sarah, DOWNTOWN) == set()
    assert not authz.has_permission_anywhere(sarah, "orders.read")


def test_permissions_at_and_membership(world: Any) -> None:
    assert authz.permissions_at(world["sarah"], DOWNTOWN) == {"orders.read", "tables.read", "notifications.read"}
    assert authz.permissions_at(world["sarah"], UPTOWN) == set()
    assert authz.permissions_at(world["john"], UPTOWN) == set(CATALOG)
    assert authz.is_member_at(world["john"], UPTOWN)
    assert not authz.is_member_at(world["olga"], UPTOWN)


def test_notifications_are_readable_only_by_their_user_or_a_superuser(world: Any) -> None:
    spec = REGISTRY["notifications"]
    assert may_read(world["sarah"], spec, ("user-sarah",))
    assert not may_read(world["sarah"], spec, ("user-john",))
    assert not may_read(world["kim"], spec, ("user-kim",))  # the kitchen role lacks notifications.read
    assert may_read(world["admin"], spec, ("user-sarah",))


@pytest.mark.parametrize("username", ["sarah", "john", "admin", "kim", "olga"])
def test_permitted_location_ids_is_one_query(world: Any, username: str, django_assert_num_queries: Any) -> None:
    user = fresh(world[username])
    with django_assert_num_queries(1):
        authz.permitted_location_ids(user, "orders.read")
    with django_assert_num_queries(1):
        authz.permitted_location_ids(user, "orders.read", among=[DOWNTOWN, UPTOWN])
    with django_assert_num_queries(1):
        authz.has_permission_at(user, "orders.read", [DOWNTOWN, UPTOWN])


def test_subscribe_authorization_is_one_query(world: Any, django_assert_num_queries: Any) -> None:
    john = fresh(world["john"])
    with django_assert_num_queries(1):
        authorize(john, REGISTRY["orders"], (DOWNTOWN, UPTOWN))


def test_inactive_user_needs_no_query(world: Any, django_assert_num_queries: Any) -> None:
    user = fresh(world["sarah"])
    user.is_active = False
    with django_assert_num_queries(0):
        assert authz.permitted_location_ids(user, "orders.read") == set()
