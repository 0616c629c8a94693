from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.http import HttpRequest

from accounts.models import LoginLockout, Membership, Role, User


class MembershipInline(admin.TabularInline):
    model = Membership
    fk_name = "user"
    extra = 0
    autocomplete_fields = ["role", "location", "organization"]


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ["username", "public_id", "display_name", "email", "is_active", "is_staff", "is_superuser"]
    list_filter = ["is_active", "is_staff", "is_superuser", "memberships__role"]
    search_fields = ["username", "public_id", "display_name", "email"]
    inlines = [MembershipInline]
    fieldsets = (
        *(DjangoUserAdmin.fieldsets or ()),
        ("Gateway identity", {"fields": ("public_id", "display_name")}),
    )
    add_fieldsets = (
        *DjangoUserAdmin.add_fieldsets,
        ("Gateway identity", {"fields": ("public_id", "display_name")}),
    )


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "permission_list"]
    search_fields = ["name", "description"]
    filter_horizontal = ["permissions"]

    @admin.display(description="Permissions")
    def permission_list(self, role: Role) -> str:
        return ", ".join(role.permission_codes())


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "role", "location", "organization", "created_at"]
    list_filter = ["role", "organization", "location"]
    search_fields = ["user__username", "user__public_id", "location__public_id", "organization__name"]
    autocomplete_fields = ["user", "role", "location", "organization"]


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
