"""The admin as the one place to grant access: memberships grant channel access, nothing else pretends to.

Groups and user permissions stay Django's (they decide what a staff member may do in this admin) but are read-only
on the user page, with a line saying they do not affect the gateway; groups are edited on the group page, whose
permission list leaves out the catalog (see docs/admin.md for why). Every membership and role change made here is
written into the history of the users and locations it touches (``accounts.admin_history``).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group, Permission
from django.db.models import Count, Model, QuerySet
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest
from django.utils.safestring import SafeString

from accounts import admin_history, admin_tables
from accounts.models import LoginLockout, Membership, Role, User
from accounts.permissions import CATALOG


class MembershipInline(admin.TabularInline):
    model = Membership
    fk_name = "user"
    extra = 0
    autocomplete_fields = ["role", "location", "organization"]


class MembershipHistoryMixin:
    """Log membership changes made in an inline on the users and locations they touch."""

    def save_formset(self, request: HttpRequest, form: ModelForm, formset: BaseInlineFormSet, change: bool) -> None:
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)  # type: ignore[misc]
            return
        before = admin_history.snapshot(f.instance.pk for f in formset.initial_forms)
        super().save_formset(request, form, formset, change)  # type: ignore[misc]
        after = admin_history.snapshot([*before, *(obj.pk for obj in formset.new_objects)])
        admin_history.record_membership_changes(request, before, after, skip=form.instance)


def _without_groups_and_permissions(fieldsets: Any) -> tuple[Any, ...]:
    """Django's user fieldsets, with the groups and user-permissions pickers replaced by a read-only summary."""
    result = []
    for name, options in fieldsets:
        fields = tuple(options.get("fields", ()))
        if "user_permissions" in fields or "groups" in fields:
            kept = tuple(f for f in fields if f not in {"groups", "user_permissions"})
            options = {**options, "fields": (*kept, "admin_rights")}
        result.append((name, options))
    return tuple(result)


@admin.register(User)
class UserAdmin(MembershipHistoryMixin, DjangoUserAdmin):
    list_display = ["username", "public_id", "display_name", "email", "is_active", "is_staff", "is_superuser"]
    list_filter = ["is_active", "is_staff", "is_superuser", "memberships__role"]
    search_fields = ["username", "public_id", "display_name", "email"]
    inlines = [MembershipInline]
    readonly_fields = ["admin_rights", "effective_access"]
    fieldsets = (
        *_without_groups_and_permissions(DjangoUserAdmin.fieldsets or ()),
        ("Gateway identity", {"fields": ("public_id", "display_name")}),
        (
            "Effective gateway access",
            {
                "fields": ("effective_access",),
                "description": "What the gateway allows now, from the memberships below: read-only. "
                "Change access by editing the memberships.",
            },
        ),
    )
    add_fieldsets = (
        *DjangoUserAdmin.add_fieldsets,
        ("Gateway identity", {"fields": ("public_id", "display_name")}),
    )
    filter_horizontal = ()

    @admin.display(description="Admin rights")
    def admin_rights(self, user: User) -> SafeString:
        return admin_tables.render_admin_rights(user)

    @admin.display(description="Access by location")
    def effective_access(self, user: User) -> SafeString:
        return admin_tables.render_effective_access(user)


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "permission_list", "holder_count"]
    search_fields = ["name", "description"]
    filter_horizontal = ["permissions"]
    readonly_fields = ["holders"]
    fields = ["name", "description", "permissions", "holders"]

    @admin.display(description="Permissions")
    def permission_list(self, role: Role) -> str:
        return ", ".join(role.permission_codes())

    def get_queryset(self, request: HttpRequest) -> QuerySet[Role]:
        return super().get_queryset(request).annotate(membership_count=Count("memberships")).order_by("name")

    @admin.display(description="Memberships", ordering="membership_count")
    def holder_count(self, role: Role) -> int:
        return int(getattr(role, "membership_count", 0))

    @admin.display(description="Held by")
    def holders(self, role: Role) -> SafeString | str:
        return admin_tables.render_role_holders(role) if role.pk else "-"

    def save_related(self, request: HttpRequest, form: ModelForm, formsets: Any, change: bool) -> None:
        role: Role = form.instance
        before = set(role.permission_codes()) if change else set()
        super().save_related(request, form, formsets, change)
        admin_history.record_role_permission_change(request, role, before, set(role.permission_codes()))


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "role", "location", "organization", "created_at"]
    list_filter = ["role", "organization", "location"]
    search_fields = ["user__username", "user__public_id", "location__public_id", "organization__name"]
    autocomplete_fields = ["user", "role", "location", "organization"]

    def save_model(self, request: HttpRequest, obj: Membership, form: ModelForm, change: bool) -> None:
        before = admin_history.snapshot([obj.pk]) if change else {}
        super().save_model(request, obj, form, change)
        admin_history.record_membership_changes(request, before, admin_history.snapshot([obj.pk]), skip=obj)

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        before = admin_history.snapshot([obj.pk])
        super().delete_model(request, obj)
        admin_history.record_membership_changes(request, before, {})

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        before = admin_history.snapshot(queryset.values_list("pk", flat=True))
        super().delete_queryset(request, queryset)
        admin_history.record_membership_changes(request, before, {})


def admin_permissions() -> QuerySet[Permission]:
    """Every permission but the catalog's: what a group can grant is admin rights, never channel access."""
    return (
        Permission.objects.exclude(content_type__app_label="accounts", codename__in=CATALOG)
        .select_related("content_type")
        .order_by("content_type__app_label", "content_type__model", "codename")
    )


class GroupForm(forms.ModelForm):
    """A group's admin rights and its members, edited in one place (the user page shows groups read-only)."""

    members = forms.ModelMultipleChoiceField(
        queryset=User.objects.order_by("username"),
        required=False,
        widget=FilteredSelectMultiple("members", is_stacked=False),
        help_text="Staff who get this group's admin rights. Groups never grant channel access.",
    )

    class Meta:
        model = Group
        fields = ["name", "permissions", "members"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        permissions = self.fields["permissions"]
        assert isinstance(permissions, forms.ModelMultipleChoiceField)
        permissions.queryset = admin_permissions()
        permissions.help_text = "Admin rights only; channel access comes from memberships."
        if self.instance.pk:
            self.fields["members"].initial = list(self.instance.user_set.values_list("pk", flat=True))


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(DjangoGroupAdmin):
    form = GroupForm
    fields = ["name", "permissions", "members"]

    def save_related(self, request: HttpRequest, form: ModelForm, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        group: Model = form.instance
        assert isinstance(group, Group)
        group.user_set.set(form.cleaned_data["members"])


@admin.register(LoginLockout)
class LoginLockoutAdmin(admin.ModelAdmin):
    """Who is locked out of ``POST /v1/auth/token``; delete a row to let that username or address try again."""

    list_display = ["identity", "kind", "failures", "locked_at", "locked_until", "active"]
    list_filter = ["kind"]
    search_fields = ["identity"]
    readonly_fields = ["kind", "identity", "failures", "locked_at", "locked_until"]
    actions = ["delete_selected"]

    @admin.display(boolean=True, description="still locked")
    def active(self, lockout: LoginLockout) -> bool:
        return lockout.is_active

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: LoginLockout | None = None) -> bool:
        return False
