"""Create the demo world of the protocol document; safe to run again (it converges, never duplicates)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Membership, Role, User, catalog_permissions
from accounts.permissions import Perm
from locations.models import Location, Organization, Table

DEMO_PASSWORD = "demo-pass-123"
READ_ALL = [p for p in Perm if p.value.endswith(".read")]
ROLES: dict[str, tuple[str, list[Perm]]] = {
    "manager": ("Runs locations: reads every channel and publishes events", [*READ_ALL, Perm.EVENTS_PUBLISH]),
    "server": ("Front of house", [Perm.ORDERS_READ, Perm.TABLES_READ, Perm.NOTIFICATIONS_READ]),
    "kitchen": ("Back of house", [Perm.KDS_READ, Perm.ORDERS_READ, Perm.INVENTORY_READ]),
}
USERS = [
    # username, public id, display name, role, org name or None, location id or None
    ("john", "user-john", "John Manager", "manager", "Demo Bistro Group", None),
    ("sarah", "user-sarah", "Sarah Server", "server", None, "loc-xyz789"),
    ("kim", "user-kim", "Kim Kitchen", "kitchen", None, "loc-xyz789"),
    ("olga", "user-olga", "Olga Owner", "manager", "Other Diner", None),
]


class Command(BaseCommand):
    help = "Create the demo organizations, locations, roles and users (idempotent)."

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        demo, _ = Organization.objects.update_or_create(
            public_id="org-demo-bistro", defaults={"name": "Demo Bistro Group"}
        )
        other, _ = Organization.objects.update_or_create(public_id="org-other-diner", defaults={"name": "Other Diner"})
        orgs = {demo.name: demo, other.name: other}
        for public_id, name, org, tz in [
            ("loc-xyz789", "Downtown", demo, "America/New_York"),
            ("loc-abc456", "Uptown", demo, "America/New_York"),
            ("loc-other1", "Main Street", other, "America/Chicago"),
        ]:
            location, _ = Location.objects.update_or_create(
                public_id=public_id, defaults={"name": name, "organization": org, "time_zone": tz, "is_active": True}
            )
            for label in ("T1", "T2", "T3"):
                Table.objects.get_or_create(location=location, label=label)
        perms = {p.codename: p for p in catalog_permissions()}
        roles = {}
        for name, (description, grants) in ROLES.items():
            role, _ = Role.objects.update_or_create(name=name, defaults={"description": description})
            role.permissions.set([perms[g.value] for g in grants])
            roles[name] = role
        for username, public_id, display, role_name, org_name, location_id in USERS:
            user = self._user(username, public_id, display)
            scope = (
                {"organization": orgs[org_name]}
                if org_name
                else {"location": Location.objects.get(public_id=location_id)}
            )
            Membership.objects.get_or_create(user=user, role=roles[role_name], **scope)
        admin = self._user("admin", "user-admin", "Admin")
        if not admin.is_superuser:
            admin.is_superuser = admin.is_staff = True
            admin.save()
        self.stdout.write(self.style.SUCCESS(f"Demo data ready. Logins (password {DEMO_PASSWORD}):"))
        for username, public_id, display, role_name, org_name, location_id in USERS:
            self.stdout.write(f"  {username:6} {public_id:11} {display:13} {role_name} at {org_name or location_id}")
        self.stdout.write(f"  {'admin':6} {'user-admin':11} superuser (Django admin)")

    def _user(self, username: str, public_id: str, display: str) -> User:
        user, created = User.objects.get_or_create(
            username=username, defaults={"public_id": public_id, "display_name": display}
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
        return user
