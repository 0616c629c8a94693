"""Create the benchmark's world in a fresh, migrated database and write the tokens the generator needs.

One organization, ``--locations`` locations (``loc-bench-000`` ...), one ``manager`` per location (every catalog
permission at that location), and a publisher (``bench-publisher``, manager of the whole organization) whose
password the harness exchanges for a token through ``POST /v1/auth/token``. Screen tokens are minted here with
simplejwt, because 200 password hashes through the token endpoint would cost a minute of server CPU.

Run: ``DJANGO_SETTINGS_MODULE=config.settings python -m bench.setup_db --locations 200 --out world.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PUBLISHER_USERNAME = "bench-publisher"
PUBLISHER_PASSWORD = "bench-pass-123"
MANAGER_ROLE = "manager"


def location_id(number: int) -> str:
    return f"loc-bench-{number:03d}"


def build_world(location_count: int) -> dict[str, object]:
    """Create (or reuse) the organization, locations, role, users and memberships; return ids and tokens."""
    from django.contrib.auth.hashers import make_password
    from django.db import transaction
    from rest_framework_simplejwt.tokens import AccessToken

    from accounts.models import Membership, Role, User, catalog_permissions
    from locations.models import Location, Organization

    with transaction.atomic():
        organization, _ = Organization.objects.get_or_create(public_id="org-bench", defaults={"name": "Bench Org"})
        role, _ = Role.objects.get_or_create(name=MANAGER_ROLE, defaults={"description": "All permissions"})
        role.permissions.add(*catalog_permissions())
        Location.objects.bulk_create(
            [
                Location(public_id=location_id(n), name=f"Bench {n:03d}", organization=organization)
                for n in range(location_count)
            ],
            ignore_conflicts=True,
        )
        locations = {loc.public_id: loc for loc in Location.objects.filter(organization=organization)}
        unusable = make_password(None)
        User.objects.bulk_create(
            [
                User(username=f"bench-mgr-{n:03d}", public_id=f"user-bench-mgr-{n:03d}", password=unusable)
                for n in range(location_count)
            ],
            ignore_conflicts=True,
        )
        managers = {u.username: u for u in User.objects.filter(username__startswith="bench-mgr-")}
        Membership.objects.bulk_create(
            [
                Membership(user=managers[f"bench-mgr-{n:03d}"], role=role, location=locations[location_id(n)])
                for n in range(location_count)
            ],
            ignore_conflicts=True,
        )
        publisher, created = User.objects.get_or_create(
            username=PUBLISHER_USERNAME, defaults={"public_id": "user-bench-publisher"}
        )
        if created:
            publisher.set_password(PUBLISHER_PASSWORD)
            publisher.save()
        Membership.objects.get_or_create(user=publisher, role=role, organization=organization)

    return {
        "locations": [location_id(n) for n in range(location_count)],
        "tokens": {
            location_id(n): str(AccessToken.for_user(managers[f"bench-mgr-{n:03d}"])) for n in range(location_count)
        },
        "publisher": {"username": PUBLISHER_USERNAME, "password": PUBLISHER_PASSWORD},
        "publisher_token": str(AccessToken.for_user(publisher)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locations", type=int, default=200)
    parser.add_argument("--out", type=Path, required=True)
    arguments = parser.parse_args()
    import django

    django.setup()
    arguments.out.write_text(json.dumps(build_world(arguments.locations)))


if __name__ == "__main__":
    main()
