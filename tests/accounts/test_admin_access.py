"""The admin as the one place to grant access: no dead permission widgets, effective access, holders, history."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse

from accounts import authz
from accounts.admin_tables import NOT_THE_GATEWAY
from accounts.models import Membership, Role, User, catalog_permissions
from locations.models import Location, Organization

pytestmark = pytest.mark.django_db

DOWNTOWN, UPTOWN, MAIN_STREET = "loc-xyz789", "loc-abc456", "loc-other1"


@pytest.fixture
def admin_client(world: Any) -> Client:
    client = Client()
    client.force_login(world["admin"])
    return client


def url(model: type, view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def loc(public_id: str) -> Location:
    return Location.objects.get(public_id=public_id)


def user_change_data(client: Client, user: User) -> dict[str, Any]:
    """The user change form as the browser would post it back, unchanged."""
    response = client.get(url(User, "change", user.pk))
    form = response.context["adminform"].form
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if name == "password" or value is None:
            continue
        if isinstance(value, bool):
            if value:
                data[name] = "on"
            continue
        data[name] = value
    data.pop("last_login", None)
    data["date_joined_0"], data["date_joined_1"] = user.date_joined.strftime("%Y-%m-%d"), "00:00:00"
    formset = response.context["inline_admin_formsets"][0].formset
    data.update({f"{formset.prefix}-{k}": v for k, v in formset.management_form.initial.items()})
    for index, inline_form in enumerate(formset.forms):
        for name in ("user", "role", "location", "organization"):
            value = inline_form.initial.get(name)
            data[f"{formset.prefix}-{index}-{name}"] = "" if value is None else value
        data[f"{formset.prefix}-{index}-id"] = inline_form.instance.pk
    return data


def history(model: type, obj: Any) -> list[LogEntry]:
    content_type = ContentType.objects.get_for_model(model)
    return list(LogEntry.objects.filter(content_type=content_type, object_id=str(obj.pk)).order_by("pk"))


# --- One way to grant access ---------------------------------------------------------------------------------------


def test_user_page_has_no_groups_or_permission_pickers_and_says_why(admin_client: Client, world: Any) -> None:
    response = admin_client.get(url(User, "change", world["sarah"].pk))
    form = response.context["adminform"].form
    assert "groups" not in form.fields and "user_permissions" not in form.fields
    assert {"is_active", "is_staff", "is_superuser"} <= set(form.fields)  # the flags stay
    page = response.content.decode()
    assert NOT_THE_GATEWAY in page
    assert 'name="user_permissions"' not in page and 'name="groups"' not in page


def test_posting_permissions_to_the_user_page_changes_nothing(admin_client: Client, world: Any) -> None:
    sarah = world["sarah"]
    kds = catalog_permissions().get(codename="kds.read")
    support = Group.objects.create(name="support")
    data = user_change_data(admin_client, sarah)
    data["user_permissions"] = [kds.pk]
    data["groups"] = [support.pk]
    response = admin_client.post(url(User, "change", sarah.pk), data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    assert not sarah.user_permissions.exists() and not sarah.groups.exists()


def test_a_catalog_permission_granted_the_old_way_is_shown_as_doing_nothing(admin_client: Client, world: Any) -> None:
    sarah = world["sarah"]
    sarah.user_permissions.add(catalog_permissions().get(codename="kds.read"))
    page = admin_client.get(url(User, "change", sarah.pk)).content.decode()
    assert "accounts.kds.read (a catalog permission granted this way: no effect on the gateway)" in page
    assert not authz.has_permission_at(User.objects.get(pk=sarah.pk), "kds.read", [DOWNTOWN])
    assert 'data-location="loc-xyz789" data-permission="kds.read"' not in page


def test_group_page_grants_admin_rights_only_and_edits_members(admin_client: Client, world: Any) -> None:
    response = admin_client.get(url(Group, "add"))
    choices = response.context["adminform"].form.fields["permissions"].queryset
    assert not choices.filter(
        content_type__app_label="accounts", codename__in=[p.codename for p in catalog_permissions()]
    )
    assert choices.filter(codename="change_membership").exists()
    change_membership = Permission.objects.get(codename="change_membership")
    response = admin_client.post(
        url(Group, "add"),
        {"name": "floor leads", "permissions": [change_membership.pk], "members": [world["kim"].pk]},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    kim = User.objects.get(username="kim")
    assert [g.name for g in kim.groups.all()] == ["floor leads"]
    kim.is_staff = True
    kim.save()
    assert User.objects.get(pk=kim.pk).has_perm("accounts.change_membership")
    catalog_pk = catalog_permissions().get(codename="kds.read").pk
    refused = admin_client.post(url(Group, "add"), {"name": "sneaky", "permissions": [catalog_pk], "members": []})
    assert refused.status_code == 200 and "permissions" in refused.context["adminform"].form.errors


# --- Effective access, and the other side --------------------------------------------------------------------------


def rows(page: str, testid: str) -> list[str]:
    block = page.split(f'data-testid="{testid}"', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr data-[^>]*>.*?</tr>", block, flags=re.S)


def test_user_page_shows_effective_access_with_its_source(admin_client: Client, world: Any) -> None:
    john = world["john"]
    Membership.objects.create(user=john, role=Role.objects.get(name="server"), location=loc(MAIN_STREET))
    Location.objects.filter(public_id=UPTOWN).update(is_active=False)
    page = admin_client.get(url(User, "change", john.pk)).content.decode()
    table = rows(page, "effective-access")
    downtown = [r for r in table if 'data-location="loc-xyz789"' in r]
    assert len(downtown) == 9  # every catalog permission, each from the organization-wide membership
    assert all("manager through organization Demo Bistro Group" in r and 'data-effective="true"' in r for r in downtown)
    uptown = [r for r in table if 'data-location="loc-abc456"' in r]
    assert uptown and all('data-effective="false" data-status="inactive location"' in r for r in uptown)
    assert "<strong>inactive location</strong>" in uptown[0]
    main = {re.search(r'data-permission="([^"]+)"', r).group(1): r for r in table if "loc-other1" in r}  # type: ignore[union-attr]
    assert set(main) == {"orders.read", "tables.read", "notifications.read"}
    assert "server at this location" in main["orders.read"]
    assert reverse("admin-check-subscription") + f"?user={john.pk}" in page


def test_user_page_marks_an_inactive_user_and_a_user_without_access(admin_client: Client, world: Any) -> None:
    sarah = world["sarah"]
    sarah.is_active = False
    sarah.save()
    page = admin_client.get(url(User, "change", sarah.pk)).content.decode()
    assert "This user is inactive: the gateway refuses their connections" in page
    assert all('data-effective="false" data-status="user inactive"' in r for r in rows(page, "effective-access"))
    nobody = User.objects.create_user("nobody", password="x")
    page = admin_client.get(url(User, "change", nobody.pk)).content.decode()
    assert "No access: this user has no membership" in page


def test_location_page_lists_who_holds_each_permission(admin_client: Client, world: Any) -> None:
    world["kim"].is_active = False
    world["kim"].save()
    page = admin_client.get(url(Location, "change", loc(DOWNTOWN).pk)).content.decode()
    table = {re.search(r'data-permission="([^"]+)"', r).group(1): r for r in rows(page, "location-holders")}  # type: ignore[union-attr]
    assert "sarah (user-sarah)</a>: server at this location" in table["orders.read"]
    assert "kim (user-kim)</a> <strong>(inactive user)</strong>: kitchen at this location" in table["kds.read"]
    assert "john (user-john)</a>: manager through organization Demo Bistro Group" in table["analytics.read"]
    assert "sarah" not in table["analytics.read"]
    assert "Superusers hold every permission here too: admin." in page
    assert reverse("admin-check-subscription") + "?location=loc-xyz789" in page
    other = admin_client.get(url(Location, "change", loc(MAIN_STREET).pk)).content.decode()
    assert "olga (user-olga)" in other and "sarah (user-sarah)" not in other


def test_role_page_lists_who_holds_it_where(admin_client: Client, world: Any) -> None:
    manager = Role.objects.get(name="manager")
    page = admin_client.get(url(Role, "change", manager.pk)).content.decode()
    table = rows(page, "role-holders")
    assert [re.search(r'data-user="([^"]+)"', r).group(1) for r in table] == ["user-john", "user-olga"]  # type: ignore[union-attr]
    assert "every location of" in table[0] and "Demo Bistro Group" in table[0]
    listing = admin_client.get(url(Role, "changelist"))
    counts = {role.name: role.membership_count for role in listing.context["cl"].result_list}
    assert counts == {"kitchen": 1, "manager": 2, "server": 1}
    server = Role.objects.get(name="server")
    page = admin_client.get(url(Role, "change", server.pk)).content.decode()
    assert "Downtown (loc-xyz789)" in rows(page, "role-holders")[0]


# --- History --------------------------------------------------------------------------------------------------------


def test_membership_added_on_the_membership_page_shows_in_user_and_location_history(
    admin_client: Client, world: Any
) -> None:
    olga, uptown = world["olga"], loc(UPTOWN)
    response = admin_client.post(
        url(Membership, "add"),
        {"user": olga.pk, "role": Role.objects.get(name="server").pk, "location": uptown.pk, "organization": ""},
    )
    assert response.status_code == 302
    for model, obj in ((User, olga), (Location, uptown)):
        entries = history(model, obj)
        assert [(e.user.username, e.change_message) for e in entries] == [
            ("admin", "Added membership “Olga Owner as server at location Uptown (loc-abc456)”.")
        ]
        page = admin_client.get(url(model, "history", obj.pk)).content.decode()
        assert "Added membership “Olga Owner as server at location Uptown (loc-abc456)”." in page


def test_membership_moved_and_deleted_on_the_membership_page(admin_client: Client, world: Any) -> None:
    sarah = world["sarah"]
    membership = Membership.objects.get(user=sarah)
    response = admin_client.post(
        url(Membership, "change", membership.pk),
        {"user": sarah.pk, "role": membership.role_id, "location": loc(UPTOWN).pk, "organization": ""},
    )
    assert response.status_code == 302
    moved = (
        "Changed membership “Sarah Server as server at location Downtown (loc-xyz789)” "
        "to “Sarah Server as server at location Uptown (loc-abc456)”."
    )
    for obj in (loc(DOWNTOWN), loc(UPTOWN)):
        assert [e.change_message for e in history(Location, obj)] == [moved]
    response = admin_client.post(url(Membership, "delete", membership.pk), {"post": "yes"})
    assert response.status_code == 302
    deleted = "Deleted membership “Sarah Server as server at location Uptown (loc-abc456)”."
    assert [e.change_message for e in history(User, sarah)] == [moved, deleted]
    assert [e.change_message for e in history(Location, loc(UPTOWN))] == [moved, deleted]


def test_bulk_delete_action_is_logged_too(admin_client: Client, world: Any) -> None:
    pks = list(Membership.objects.filter(location__public_id=DOWNTOWN).values_list("pk", flat=True))
    response = admin_client.post(
        url(Membership, "changelist"), {"action": "delete_selected", "_selected_action": pks, "post": "yes"}
    )
    assert response.status_code == 302
    (entry,) = history(Location, loc(DOWNTOWN))  # one entry for the one action, naming both memberships
    assert entry.user.username == "admin"
    assert "Deleted membership “Sarah Server as server at location Downtown (loc-xyz789)”." in entry.change_message
    assert "Deleted membership “Kim Kitchen as kitchen at location Downtown (loc-xyz789)”." in entry.change_message
    assert [e.user.username for e in history(User, world["kim"])] == ["admin"]


def test_membership_removed_in_the_user_inline_shows_in_the_location_history(admin_client: Client, world: Any) -> None:
    sarah = world["sarah"]
    data = user_change_data(admin_client, sarah)
    data["memberships-0-DELETE"] = "on"
    response = admin_client.post(url(User, "change", sarah.pk), data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    assert not Membership.objects.filter(user=sarah).exists()
    (entry,) = history(Location, loc(DOWNTOWN))
    assert entry.user.username == "admin"
    assert entry.change_message == "Deleted membership “Sarah Server as server at location Downtown (loc-xyz789)”."
    user_entries = history(User, sarah)  # Django's own entry for the page it was made on, not a second one
    assert len(user_entries) == 1 and "Deleted membership" in user_entries[0].get_change_message()


def test_organization_membership_added_in_the_location_inline_reaches_user_and_every_location(
    admin_client: Client, world: Any
) -> None:
    org = Organization.objects.get(public_id="org-demo-bistro")
    kim = world["kim"]
    response = admin_client.get(url(Organization, "change", org.pk))
    data: dict[str, Any] = {"public_id": org.public_id, "name": org.name}
    for formset in (f.formset for f in response.context["inline_admin_formsets"]):
        data.update({f"{formset.prefix}-{k}": v for k, v in formset.management_form.initial.items()})
        for index, form in enumerate(formset.forms):
            for name, value in form.initial.items():
                if isinstance(value, bool):
                    if value:
                        data[f"{formset.prefix}-{index}-{name}"] = "on"
                elif value is not None:
                    data[f"{formset.prefix}-{index}-{name}"] = value
            data[f"{formset.prefix}-{index}-id"] = form.instance.pk
            data[f"{formset.prefix}-{index}-{formset.fk.name}"] = org.pk
        if formset.model is Membership:
            index = formset.total_form_count()
            data[f"{formset.prefix}-TOTAL_FORMS"] = index + 1
            data[f"{formset.prefix}-{index}-user"] = kim.pk
            data[f"{formset.prefix}-{index}-role"] = Role.objects.get(name="manager").pk
    response = admin_client.post(url(Organization, "change", org.pk), data)
    assert response.status_code == 302, [f.formset.errors for f in response.context["inline_admin_formsets"]]
    line = "Added membership “Kim Kitchen as manager at organization Demo Bistro Group”."
    assert [e.change_message for e in history(User, kim)] == [line]
    for public_id in (DOWNTOWN, UPTOWN):
        assert [(e.user.username, e.change_message) for e in history(Location, loc(public_id))] == [("admin", line)]
    assert history(Location, loc(MAIN_STREET)) == []
    assert len(history(Organization, org)) == 1  # Django's own entry only


def test_role_permission_change_shows_in_holders_and_locations_history(admin_client: Client, world: Any) -> None:
    server = Role.objects.get(name="server")
    perms = {p.codename: p.pk for p in catalog_permissions()}
    response = admin_client.post(
        url(Role, "change", server.pk),
        {
            "name": "server",
            "description": server.description,
            "permissions": [perms["orders.read"], perms["kds.read"], perms["notifications.read"]],
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    line = "Role “server” changed: added kds.read; removed tables.read."
    assert [(e.user.username, e.change_message) for e in history(User, world["sarah"])] == [("admin", line)]
    assert [e.change_message for e in history(Location, loc(DOWNTOWN))] == [line]
    assert history(User, world["kim"]) == []
    assert "Changed" in history(Role, server)[0].get_change_message()
