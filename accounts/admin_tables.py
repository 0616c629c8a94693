"""Read-only access tables for the admin's user, location and role pages.

Each renders what ``accounts.authz`` computes (never a second reading of memberships), as plain admin tables with
``data-*`` attributes the browser tests read. Everything is escaped by ``format_html``.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlencode

from django.db.models import QuerySet
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from accounts import authz
from accounts.models import Membership, Role, User
from accounts.permissions import PERMISSION_DESCRIPTIONS, Perm
from locations.models import Location

NOT_THE_GATEWAY = (
    "Groups and user permissions decide only what this person may do in this admin. They never grant channel "
    "access: the gateway reads memberships (below) and the superuser flag, nothing else."
)


def _link(viewname: str, pk: object, text: str) -> SafeString:
    try:
        return format_html('<a href="{}">{}</a>', reverse(viewname, args=[pk]), text)
    except NoReverseMatch:
        return format_html("{}", text)


def _description(code: str) -> str:
    try:
        return PERMISSION_DESCRIPTIONS[Perm(code)]
    except ValueError:
        return ""


def _grant_cell(grant: authz.Grant, *, show_user: bool) -> SafeString:
    membership = grant.membership
    if membership is None:
        return mark_safe("superuser")
    scope = (
        format_html("through organization {}", membership.organization)
        if grant.through_organization
        else mark_safe("at this location")
    )
    text = format_html("{} {}", membership.role, scope)
    if show_user:
        user = membership.user
        inactive = mark_safe(" <strong>(inactive user)</strong>") if not user.is_active else ""
        who = _link("admin:accounts_user_change", user.pk, f"{user.username} ({user.public_id})")
        text = format_html("{}{}: {}", who, inactive, text)
    return text


def render_effective_access(user: User) -> SafeString:
    """The user page's table: for every location they may see, each permission held there and where it comes from."""
    access = authz.effective_access(user)
    notes = []
    if not user.is_active:
        notes.append("This user is inactive: the gateway refuses their connections, so nothing below is granted.")
    if user.is_superuser:
        notes.append("Superuser: every permission at every location.")
    if not access.locations:
        notes.append("No access: this user has no membership, so the gateway refuses every subscribe.")
    rows = []
    for location_access in access.locations:
        location = location_access.location
        if not location.is_active:
            status, status_html = "inactive location", mark_safe("<strong>inactive location</strong>: refused")
        elif not user.is_active:
            status, status_html = "user inactive", mark_safe("<strong>user inactive</strong>")
        else:
            status, status_html = "active", mark_safe("active")
        held = list(location_access.permissions.items())
        # One row a permission (what the tests and the eye look up), the location's cells spanning its rows.
        location_cells = format_html(
            '<td rowspan="{}">{}</td><td rowspan="{}">{}</td><td rowspan="{}">{}</td>',
            max(len(held), 1),
            _link("admin:locations_location_change", location.pk, str(location)),
            max(len(held), 1),
            location.organization,
            max(len(held), 1),
            status_html,
        )
        if not held:
            rows.append(
                format_html(
                    '<tr data-location="{}" data-permission="" data-effective="false" data-status="{}">{}'
                    "<td>(none: the role grants no catalog permission)</td><td></td></tr>",
                    location.public_id,
                    status,
                    location_cells,
                )
            )
        for index, (code, grants) in enumerate(held):
            rows.append(
                format_html(
                    '<tr data-location="{}" data-permission="{}" data-effective="{}" data-status="{}">{}'
                    '<td><code>{}</code> <span class="help">{}</span></td><td>{}</td></tr>',
                    location.public_id,
                    code,
                    "true" if location_access.effective else "false",
                    status,
                    location_cells if index == 0 else "",
                    code,
                    _description(code),
                    _join(_grant_cell(g, show_user=False) for g in grants),
                )
            )
    return format_html(
        '<div data-testid="effective-access">{}<table><thead><tr><th>Location</th><th>Organization</th>'
        "<th>Status</th><th>Permission</th><th>From</th></tr></thead><tbody>{}</tbody></table>{}</div>",
        format_html_join("", '<p class="help" data-testid="effective-access-note">{}</p>', ((n,) for n in notes)),
        mark_safe("".join(rows)),  # every row was built by format_html
        _check_link(f"Check a subscription for {user.username}", user=user.pk),
    )


def _check_link(text: str, **query: object) -> SafeString:
    """A link to the admin's "May this user subscribe?" page, prefilled."""
    try:
        url = reverse("admin-check-subscription")
    except NoReverseMatch:
        return mark_safe("")
    return format_html('<p><a href="{}?{}">{}</a></p>', url, urlencode(query), text)


def _join(cells: Iterable[SafeString]) -> SafeString:
    return mark_safe("<br>".join(cells))  # each cell was built by format_html


def render_holders(location: Location) -> SafeString:
    """The location page's table: who holds each permission here, directly or through the organization."""
    holders = authz.holders_at(location)
    notes = []
    if not location.is_active:
        notes.append("This location is inactive: the gateway refuses every subscribe to it.")
    if holders.superusers:
        names = ", ".join(u.username + ("" if u.is_active else " (inactive)") for u in holders.superusers)
        notes.append(f"Superusers hold every permission here too: {names}.")
    rows = [
        format_html(
            '<tr data-permission="{}"><td><code>{}</code> <span class="help">{}</span></td><td>{}</td></tr>',
            code,
            code,
            _description(code),
            _join(_grant_cell(g, show_user=True) for g in grants),
        )
        for code, grants in holders.permissions.items()
    ]
    if not rows:
        rows.append(mark_safe('<tr><td colspan="2">Nobody holds a permission here through a membership.</td></tr>'))
    return format_html(
        '<div data-testid="location-holders">{}<table><thead><tr><th>Permission</th><th>Held by</th></tr></thead>'
        "<tbody>{}</tbody></table>{}</div>",
        format_html_join("", '<p class="help">{}</p>', ((n,) for n in notes)),
        mark_safe("".join(rows)),  # every row was built by format_html
        _check_link("Check a subscription here", location=location.public_id),
    )


def role_memberships(role: Role) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(role=role)
        .select_related("user", "location", "organization")
        .order_by("user__username", "pk")
    )


def render_role_holders(role: Role) -> SafeString:
    """The role page's table: who holds this role, and where."""
    rows = []
    for membership in role_memberships(role):
        user = membership.user
        where = (
            _link("admin:locations_location_change", membership.location_id, str(membership.location))
            if membership.location_id
            else format_html(
                "every location of {}",
                _link("admin:locations_organization_change", membership.organization_id, str(membership.organization)),
            )
        )
        flags = []
        if not user.is_active:
            flags.append("inactive user")
        if membership.location is not None and not membership.location.is_active:
            flags.append("inactive location")
        rows.append(
            format_html(
                '<tr data-user="{}"><td>{}</td><td>{}</td><td>{}</td></tr>',
                user.public_id,
                _link("admin:accounts_user_change", user.pk, f"{user.username} ({user.public_id})"),
                where,
                ", ".join(flags),
            )
        )
    if not rows:
        rows.append(mark_safe('<tr><td colspan="3">Nobody holds this role.</td></tr>'))
    return format_html(
        '<div data-testid="role-holders"><table><thead><tr><th>User</th><th>Where</th><th></th></tr></thead>'
        "<tbody>{}</tbody></table></div>",
        mark_safe("".join(rows)),  # every row was built by format_html
    )


def render_admin_rights(user: User) -> SafeString:
    """Groups and user permissions, read-only, with the line that they do not touch the gateway."""
    groups = ", ".join(g.name for g in user.groups.all()) or "none"
    perms = []
    for perm in user.user_permissions.select_related("content_type").order_by("content_type__app_label", "codename"):
        label = f"{perm.content_type.app_label}.{perm.codename}"
        if perm.content_type.app_label == "accounts" and perm.codename in {p.value for p in Perm}:
            label += " (a catalog permission granted this way: no effect on the gateway)"
        perms.append(label)
    return format_html(
        '<div data-testid="admin-rights"><p><strong>{}</strong></p><p>Groups: {}</p><p>User permissions: {}</p></div>',
        NOT_THE_GATEWAY,
        groups,
        "; ".join(perms) or "none",
    )
