"""Organizations, their locations, and the restaurant records whose saves become events."""

from __future__ import annotations

import secrets
import zoneinfo
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"Unknown time zone: {value}")


def random_public_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


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


class Order(models.Model):
    public_id = models.CharField(max_length=64, unique=True, blank=True)
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="orders")
    type = models.CharField(max_length=16, choices=OrderType.choices, default=OrderType.DINE_IN)
    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.OPEN)
    total = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal("0.00"))
    table_label = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def save(self, *args: object, **kwargs: object) -> None:
        if not self.public_id:
            self.public_id = random_public_id("ord")
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return self.public_id


class TableStatus(models.TextChoices):
    AVAILABLE = "available"
    SEATED = "seated"
    RESERVED = "reserved"


class Table(models.Model):
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="tables")
    label = models.CharField(max_length=32)
    seats = models.PositiveSmallIntegerField(default=4)
    status = models.CharField(max_length=16, choices=TableStatus.choices, default=TableStatus.AVAILABLE)

    class Meta:
        ordering = ["location", "label"]
        constraints = [models.UniqueConstraint(fields=["location", "label"], name="unique_table_label")]

    def __str__(self) -> str:
        return f"{self.label} @ {self.location.public_id}"


class TicketStatus(models.TextChoices):
    NEW = "new"
    BUMPED = "bumped"
    LATE = "late"
    RECALLED = "recalled"


class KitchenTicket(models.Model):
    public_id = models.CharField(max_length=64, unique=True, blank=True)
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="kitchen_tickets")
    station = models.CharField(max_length=32)
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets")
    items = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=TicketStatus.choices, default=TicketStatus.NEW)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def save(self, *args: object, **kwargs: object) -> None:
        if not self.public_id:
            self.public_id = random_public_id("tkt")
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.station})"
