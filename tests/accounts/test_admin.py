"""The Django admin: every registered model's pages open for a superuser, and the gateway's own admin features work."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from accounts.models import LoginLockout, Membership, Role, User
from locations.models import KitchenTicket, Location, Order, Table

pytestmark = pytest.mark.django_db

MODELS = [pytest.param(model, id=f"{model._meta.app_label}.{model._meta.model_name}") for model in admin.site._registry]


@pytest.fixture(autouse=True)
def fast_password_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def admin_client_for_world(world: Any) -> Client:
    client = Client()
    client.force_login(world["admin"])
    downtown = Location.objects.get(public_id="loc-xyz789")
    order = Order.objects.create(location=downtown, type="takeout", table_label="T1")
    KitchenTicket.objects.create(location=downtown, station="grill", order=order, items=[{"name": "burger"}])
    Group.objects.create(name="support")
    now = timezone.now()
    LoginLockout.objects.create(kind="username", identity="john", failures=10, locked_at=now, locked_until=now)
    return client


def url(model: type, view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def test_every_gateway_model_is_registered() -> None:
    registered = set(admin.site._registry)
    assert {User, Role, Membership, Location, Order, Table, KitchenTicket} <= registered


@pytest.mark.parametrize("model", MODELS)
def test_admin_pages_open(admin_client_for_world: Client, model: type) -> None:
    """Changelist, changelist search, add form and change form of every registered model answer 200."""
    instance = model._default_manager.first()
    assert instance is not None, f"the fixture must create a {model.__name__}"
    pages = [
        (url(model, "changelist"), {}),
        (url(model, "changelist"), {"q": "loc"}),
        (url(model, "change", instance.pk), {}),
    ]
    request = RequestFactory().get("/admin/")
    request.user = User.objects.filter(is_superuser=True).first()
    if admin.site._registry[model].has_add_permission(request):  # read-only admins (login lockouts) have no form
        pages.append((url(model, "add"), {}))
    statuses = {f"{path}?{query}": admin_client_for_world.get(path, query).status_code for path, query in pages}
    assert set(statuses.values()) == {200}, statuses


def test_user_changelist_filters_by_role(admin_client_for_world: Client) -> None:
    server = Role.objects.get(name="server")
    response = admin_client_for_world.get(url(User, "changelist"), {"memberships__role__id__exact": server.pk})
    assert response.status_code == 200
    assert [u.username for u in response.context["cl"].result_list] == ["sarah"]


def test_role_changelist_shows_its_permissions(admin_client_for_world: Client) -> None:
    response = admin_client_for_world.get(url(Role, "changelist"))
    assert "notifications.read, orders.read, tables.read" in response.content.decode()


def test_role_permission_choices_are_the_catalog_only(admin_client_for_world: Client) -> None:
    response = admin_client_for_world.get(url(Role, "add"))
    choices = {p.codename for p in response.context["adminform"].form.fields["permissions"].queryset}
    from accounts.permissions import CATALOG

    assert choices == set(CATALOG)


@pytest.mark.parametrize(
    ("model", "field"),
    [("membership", "role"), ("membership", "location"), ("membership", "organization"), ("membership", "user")],
)
def test_membership_autocomplete_works(admin_client_for_world: Client, model: str, field: str) -> None:
    response = admin_client_for_world.get(
        "/admin/autocomplete/", {"app_label": "accounts", "model_name": model, "field_name": field, "term": ""}
    )
    assert response.status_code == 200
    assert response.json()["results"]


def test_add_membership_through_the_admin(admin_client_for_world: Client, world: Any) -> None:
    response = admin_client_for_world.post(
        url(Membership, "add"),
        {
            "user": world["olga"].pk,
            "role": Role.objects.get(name="server").pk,
            "location": Location.objects.get(public_id="loc-abc456").pk,
            "organization": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Membership.objects.filter(user=world["olga"], location__public_id="loc-abc456").exists()


def test_add_user_through_the_admin_generates_its_public_id(admin_client_for_world: Client) -> None:
    response = admin_client_for_world.post(
        url(User, "add"),
        {
            "username": "newbie",
            "password1": "a-long-password-123",
            "password2": "a-long-password-123",
            "usable_password": "true",
            "public_id": "",
            "display_name": "New Bie",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert User.objects.get(username="newbie").public_id == "user-newbie"


def test_non_staff_user_is_sent_to_the_login_page(world: Any) -> None:
    client = Client()
    client.force_login(world["sarah"])
    response = client.get(url(Order, "changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_ticket_admin_shows_who_acknowledged_a_ticket_and_which_were_never_acknowledged(
    admin_client_for_world: Client, world: Any
) -> None:
    downtown = Location.objects.get(public_id="loc-xyz789")
    now = timezone.now()
    acked = KitchenTicket.objects.create(location=downtown, station="grill")
    KitchenTicket.objects.filter(pk=acked.pk).update(acked_at=now, acked_by=world["kim"], acked_connection="conn-1")
    lost = KitchenTicket.objects.create(location=downtown, station="fryer")
    KitchenTicket.objects.filter(pk=lost.pk).update(unacknowledged_at=now)
    recalled = KitchenTicket.objects.create(location=downtown, station="expo")  # acked once, its recall never
    KitchenTicket.objects.filter(pk=recalled.pk).update(
        acked_at=now - timedelta(minutes=5), acked_by=world["kim"], unacknowledged_at=now
    )
    admin_view = admin.site._registry[KitchenTicket]
    recalled.refresh_from_db()
    assert admin_view.ack_state(recalled) == "unacknowledged: managers alerted"  # type: ignore[attr-defined]
    page = admin_client_for_world.get(url(KitchenTicket, "changelist")).content.decode()
    assert "acked by kim" in page and "unacknowledged: managers alerted" in page
    detail = admin_client_for_world.get(url(KitchenTicket, "change", acked.pk)).content.decode()
    assert "conn-1" in detail
    never = admin_client_for_world.get(url(KitchenTicket, "changelist"), {"acked_at__isempty": "1"})
    assert acked not in never.context["cl"].result_list and lost in never.context["cl"].result_list
