"""Organizations, their locations, and the restaurant records whose saves become events."""

from __future__ import annotations

import secrets
import zoneinfo
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, router, transaction
from django.db.models import F


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"Unknown time zone: {value}")


def random_public_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def claim_next_version(instance: models.Model, using: str) -> None:
    """Set ``instance.version`` to the stored version plus one; call inside the save's transaction.

    The increment is one ``UPDATE ... SET version = version + 1`` of the row (which takes the row's write lock until
    the transaction ends), read back in the same transaction. Two saves from stale in-memory copies therefore get
    consecutive versions instead of both writing their copy's number plus one, and everything the save reads after
    this (the receiver's "status before this save") is read under that lock. A new row starts at 1.
    """
    manager = type(instance)._default_manager.db_manager(using)
    if instance._state.adding or instance.pk is None:
        instance.version = 1  # type: ignore[attr-defined]
        return
    rows = manager.filter(pk=instance.pk)
    if not rows.update(version=F("version") + 1):
        instance.version = 1  # type: ignore[attr-defined]
        return  # an explicit pk that is not stored yet: this save is an insert
    instance.version = rows.values_list("version", flat=True).get()  # type: ignore[attr-defined]


def save_versioned(instance: models.Model, save: Any, kwargs: dict[str, Any]) -> None:
    """Run ``save`` (the model's ``super().save``) with the next version, in one transaction with the outbox rows
    its ``post_save`` receiver writes (``locations.receivers``), also in autocommit, where Django would commit the row
    before ``post_save`` writes its events.

    The version is claimed under the row's lock, so one record's saves commit in version order; the outbox relays
    each stream in commit order, so a stream never carries a record's version n after a version above n (the rule
    that lets a snapshot plus the events after its position be the current state, docs/protocol.md).
    """
    using = str(kwargs.get("using") or router.db_for_write(type(instance), instance=instance))
    update_fields = kwargs.get("update_fields")
    if update_fields is not None:
        if not update_fields:
            save(**kwargs)  # Django's "save nothing": no change, no version
            return
        kwargs["update_fields"] = {*update_fields, "version"}
    with transaction.atomic(using=using):
        claim_next_version(instance, using)
        save(**kwargs)


class SavedWithItsEvents(models.Model):
    """A record whose saves become events: each save is versioned and commits together with its events."""

    class Meta:
        abstract = True

    def save(self, **kwargs: Any) -> None:
        save_versioned(self, super().save, kwargs)


class Organization(models.Model):
    """A restaurant group; memberships at an organization cover all of its locations."""

    public_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Location(models.Model):
    """One restaurant; ``public_id`` (``loc-...``) is what the protocol shows."""

    public_id = models.CharField(
        max_length=64,
        unique=True,
        help_text="Public id of the form loc-<slug>, e.g. loc-xyz789.",
    )
    name = models.CharField(max_length=200)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="locations")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["organization__name", "name"]

    def clean(self) -> None:
        if not self.public_id.startswith("loc-"):
            raise ValidationError({"public_id": "A location's public id starts with 'loc-'."})

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"


class OrderType(models.TextChoices):
    DINE_IN = "dine_in"
    TAKEOUT = "takeout"
    DELIVERY = "delivery"
    DRIVE_THRU = "drive_thru"


class OrderStatus(models.TextChoices):
    OPEN = "open"
    PREPARING = "preparing"
    READY = "ready"
    SERVED = "served"
    PAID = "paid"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class Order(SavedWithItsEvents):
    public_id = models.CharField(max_length=64, unique=True, blank=True)
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="orders")
    type = models.CharField(max_length=16, choices=OrderType.choices, default=OrderType.DINE_IN)
    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.OPEN)
    total = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal("0.00"))
    table_label = models.CharField(max_length=32, blank=True)
    version = models.PositiveIntegerField(default=0, editable=False, help_text="Grows with every save.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def save(self, **kwargs: Any) -> None:
        if not self.public_id:
            self.public_id = random_public_id("ord")
        super().save(**kwargs)

    def __str__(self) -> str:
        return self.public_id


class TableStatus(models.TextChoices):
    AVAILABLE = "available"
    SEATED = "seated"
    RESERVED = "reserved"


class Table(SavedWithItsEvents):
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="tables")
    label = models.CharField(max_length=32)
    seats = models.PositiveSmallIntegerField(default=4)
    status = models.CharField(max_length=16, choices=TableStatus.choices, default=TableStatus.AVAILABLE)
    version = models.PositiveIntegerField(default=0, editable=False, help_text="Grows with every save.")

    class Meta:
        ordering = ["location", "label"]
        constraints = [models.UniqueConstraint(fields=["location", "label"], name="unique_table_label")]

    def __str__(self) -> str:
        return f"{self.label} @ {self.location.public_id}"


class Station(models.Model):
    """A kitchen station of one location (grill, fry, expo); screens declare theirs when they join presence."""

    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="stations")
    name = models.CharField(max_length=32, help_text="What tickets and screens call it, e.g. grill.")
    is_active = models.BooleanField(default=True, help_text="Only active stations raise dark-station alerts.")

    class Meta:
        ordering = ["location", "name"]
        constraints = [models.UniqueConstraint(fields=["location", "name"], name="unique_station_name")]

    def __str__(self) -> str:
        return f"{self.name} @ {self.location.public_id}"


class TicketStatus(models.TextChoices):
    NEW = "new"
    BUMPED = "bumped"
    LATE = "late"
    RECALLED = "recalled"


class KitchenTicket(SavedWithItsEvents):
    """A ticket on a kitchen screen; ``station`` is the name the wire shows, ``station_ref`` the Station row."""

    public_id = models.CharField(max_length=64, unique=True, blank=True)
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="kitchen_tickets")
    station = models.CharField(max_length=32)
    station_ref = models.ForeignKey(
        Station, null=True, blank=True, editable=False, on_delete=models.PROTECT, related_name="tickets"
    )
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets")
    items = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=TicketStatus.choices, default=TicketStatus.NEW)
    version = models.PositiveIntegerField(default=0, editable=False, help_text="Grows with every save.")
    created_at = models.DateTimeField(auto_now_add=True)
    acked_at = models.DateTimeField(null=True, blank=True, editable=False)
    acked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, editable=False, on_delete=models.SET_NULL, related_name="+"
    )
    acked_connection = models.CharField(max_length=64, blank=True, editable=False)
    unacknowledged_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When no screen acknowledged it after every redelivery."
    )

    class Meta:
        ordering = ["-created_at"]

    def save(self, **kwargs: Any) -> None:
        if not self.public_id:
            self.public_id = random_public_id("tkt")
        if self.station and (self.station_ref is None or self.station_ref.name != self.station):
            self.station_ref, _ = Station.objects.get_or_create(location_id=self.location_id, name=self.station)
        super().save(**kwargs)

    def __str__(self) -> str:
        return f"{self.public_id} ({self.station})"
