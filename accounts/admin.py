from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from accounts.models import Membership, Role, User


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
