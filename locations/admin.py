from django.contrib import admin
from django.utils.safestring import SafeString

from accounts.admin import MembershipHistoryMixin
from accounts.admin_tables import render_holders
from accounts.models import Membership
from locations.models import KitchenTicket, Location, Order, Organization, Station, Table


class LocationStaffInline(admin.TabularInline):
    model = Membership
    fk_name = "location"
    extra = 0
    fields = ["user", "role"]
    autocomplete_fields = ["user", "role"]
    verbose_name_plural = "Staff at this location"


class OrganizationStaffInline(LocationStaffInline):
    fk_name = "organization"
    verbose_name_plural = "Staff across this organization"


class LocationInline(admin.TabularInline):
    model = Location
    extra = 0
    fields = ["public_id", "name", "time_zone", "is_active"]


@admin.register(Organization)
class OrganizationAdmin(MembershipHistoryMixin, admin.ModelAdmin):
    list_display = ["name", "public_id"]
    search_fields = ["name", "public_id"]
    inlines = [LocationInline, OrganizationStaffInline]


@admin.register(Location)
class LocationAdmin(MembershipHistoryMixin, admin.ModelAdmin):
    list_display = ["public_id", "name", "organization", "time_zone", "is_active"]
    list_filter = ["organization", "is_active", "time_zone"]
    search_fields = ["public_id", "name", "organization__name"]
    inlines = [LocationStaffInline]
    readonly_fields = ["holders"]

    @admin.display(description="Who holds each permission here")
    def holders(self, location: Location) -> SafeString | str:
        return render_holders(location) if location.pk else "-"


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["public_id", "location", "type", "status", "total", "updated_at"]
    list_filter = ["location", "type", "status"]
    search_fields = ["public_id", "table_label"]
    readonly_fields = ["public_id", "created_at", "updated_at"]


@admin.register(Table)
class TableAdmin(admin.ModelAdmin):
    list_display = ["label", "location", "seats", "status"]
    list_filter = ["location", "status"]
    search_fields = ["label"]


@admin.register(KitchenTicket)
class KitchenTicketAdmin(admin.ModelAdmin):
    list_display = ["public_id", "location", "station", "status", "created_at", "ack_state", "acked_by", "acked_at"]
    list_filter = ["location", "station", "status", ("acked_at", admin.EmptyFieldListFilter), "unacknowledged_at"]
    search_fields = ["public_id", "station"]
    readonly_fields = [
        "public_id",
        "created_at",
        "ack_state",
        "acked_at",
        "acked_by",
        "acked_connection",
        "unacknowledged_at",
    ]

    @admin.display(description="Acknowledged")
    def ack_state(self, ticket: KitchenTicket) -> str:
        """What a kitchen manager asks first (issue 16): did a screen show it, and who saw it."""
        alerted = ticket.unacknowledged_at
        # Both times are kept: an ack older than the alert was of an earlier event (a recall nobody acked since).
        if ticket.acked_at is not None and (alerted is None or ticket.acked_at >= alerted):
            late = " (after the managers were alerted)" if alerted else ""
            who = ticket.acked_by.get_username() if ticket.acked_by is not None else "a deleted user"
            return f"acked by {who}{late}"
        if ticket.unacknowledged_at is not None:
            return "unacknowledged: managers alerted"
        return "-"


@admin.register(Station)
class StationAdmin(admin.ModelAdmin):
    list_display = ["name", "location", "is_active"]
    list_filter = ["location", "is_active"]
    search_fields = ["name", "location__public_id"]
