"""Access changes made in the admin, written into the history of every user and location they touch.

Django's admin logs a change on the page it was made on: a membership added in the user's inline shows in the
user's history only, one added on the Membership page in neither the user's nor the location's. A manager asking
"who gave sarah the kitchen screen, and when?" looks at sarah's or Downtown's history, so every membership and role
change made in the admin is also logged there (an organization-wide membership: on the organization and each of its
locations), with the admin user who made it. The page the change was made on keeps Django's own entry only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.http import HttpRequest

from accounts.models import Membership, Role, User
from locations.models import Location, Organization


@dataclass(frozen=True)
class MembershipFacts:
    """What a membership was at one moment, kept by value: after a delete the row is gone."""

    pk: int
    user_id: int
    label: str
    location_id: int | None
    organization_id: int | None


def snapshot(pks: Iterable[object]) -> dict[int, MembershipFacts]:
    """The memberships with these primary keys, as they are in the database now."""
    wanted = [int(str(pk)) for pk in pks if pk is not None]
    if not wanted:
        return {}
    rows = Membership.objects.filter(pk__in=wanted).select_related("user", "role", "location", "organization")
    return {m.pk: MembershipFacts(m.pk, m.user_id, str(m), m.location_id, m.organization_id) for m in rows}


def _scope_objects(location_ids: set[int], organization_ids: set[int]) -> list[models.Model]:
    """The locations and organizations a change reaches: an organization brings every one of its locations."""
    objects: list[models.Model] = list(Organization.objects.filter(pk__in=organization_ids))
    objects += Location.objects.filter(models.Q(pk__in=location_ids) | models.Q(organization_id__in=organization_ids))
    return objects


def _write(request: HttpRequest, messages: dict[tuple[type[models.Model], int], list[str]], skip: object) -> None:
    """One history entry per object, its messages joined; ``skip`` is the page's own object (Django logs it)."""
    admin_user_id = getattr(request.user, "pk", None)
    if not messages or admin_user_id is None:
        return
    skipped = (type(skip), getattr(skip, "pk", None)) if skip is not None else None
    entries = []
    for (model, pk), lines in messages.items():
        if (model, pk) == skipped:
            continue
        obj = model._default_manager.filter(pk=pk).first()
        if obj is None:
            continue
        entries.append(
            LogEntry(
                user_id=admin_user_id,
                content_type=ContentType.objects.get_for_model(model),
                object_id=str(pk),
                object_repr=str(obj)[:200],
                action_flag=CHANGE,
                change_message=" ".join(lines),
            )
        )
    LogEntry.objects.bulk_create(entries)


def record_membership_changes(
    request: HttpRequest,
    before: dict[int, MembershipFacts],
    after: dict[int, MembershipFacts],
    *,
    skip: object = None,
) -> None:
    """Log what changed between two snapshots on each user, location and organization it touched."""
    messages: dict[tuple[type[models.Model], int], list[str]] = {}

    def note(facts: MembershipFacts, line: str) -> None:
        targets: list[tuple[type[models.Model], int]] = [(User, facts.user_id)]
        scopes = _scope_objects(
            {facts.location_id} if facts.location_id else set(),
            {facts.organization_id} if facts.organization_id else set(),
        )
        targets += [(type(obj), obj.pk) for obj in scopes]
        for target in targets:
            lines = messages.setdefault(target, [])
            if line not in lines:  # a moved membership reaches its user from both sides
                lines.append(line)

    for pk in sorted(set(before) | set(after)):
        old, new = before.get(pk), after.get(pk)
        if old is None and new is not None:
            note(new, f"Added membership “{new.label}”.")
        elif new is None and old is not None:
            note(old, f"Deleted membership “{old.label}”.")
        elif old is not None and new is not None and old != new:
            line = f"Changed membership “{old.label}” to “{new.label}”."
            note(old, line)
            moved = (new.user_id, new.location_id, new.organization_id) != (
                old.user_id,
                old.location_id,
                old.organization_id,
            )
            if moved:
                note(new, line)
    _write(request, messages, skip)


def record_role_permission_change(request: HttpRequest, role: Role, before: set[str], after: set[str]) -> None:
    """Log a role's new permissions on every user holding it and every location where it is held."""
    added, removed = sorted(after - before), sorted(before - after)
    if not added and not removed:
        return
    parts = []
    if added:
        parts.append(f"added {', '.join(added)}")
    if removed:
        parts.append(f"removed {', '.join(removed)}")
    line = f"Role “{role}” changed: {'; '.join(parts)}."
    holders = list(Membership.objects.filter(role=role).values_list("user_id", "location_id", "organization_id"))
    messages: dict[tuple[type[models.Model], int], list[str]] = {}
    for user_id in {h[0] for h in holders}:
        messages[(User, user_id)] = [line]
    scopes = _scope_objects({h[1] for h in holders if h[1]}, {h[2] for h in holders if h[2]})
    for obj in scopes:
        messages[(type(obj), obj.pk)] = [line]
    _write(request, messages, skip=role)
