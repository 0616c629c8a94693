"""Users, roles and memberships: who you are and what your role lets you do where."""

from __future__ import annotations

import secrets

from django.contrib.auth.models import AbstractUser, Permission
from django.db import models
from django.utils.text import slugify

from accounts.permissions import CATALOG, PERMISSION_DESCRIPTIONS


def make_public_id(prefix: str, hint: str) -> str:
    """Build a stable public id like ``user-sarah`` from a hint, with a random tail when the hint is empty."""
    slug = slugify(hint)[:40] or secrets.token_hex(4)
    return f"{prefix}-{slug}"


class User(AbstractUser):
    """A person or service account; the protocol shows ``public_id``, never the database id."""

    public_id = models.CharField(
        max_length=64,
        unique=True,
        blank=True,
        help_text="Stable id shown on the wire, e.g. user-sarah. Generated from the username when left blank.",
    )
    display_name = models.CharField(max_length=150, blank=True)

    def save(self, *args: object, **kwargs: object) -> None:
        if not self.public_id:
            candidate = make_public_id("user", self.username)
            if User.objects.filter(public_id=candidate).exclude(pk=self.pk).exists():
                candidate = f"{candidate}-{secrets.token_hex(3)}"
            self.public_id = candidate
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return self.display_name or self.username


def catalog_permissions() -> models.QuerySet[Permission]:
    """The ``Permission`` rows of the catalog (created by migrate from ``Role.Meta.permissions``)."""
    return Permission.objects.filter(content_type__app_label="accounts", codename__in=CATALOG)


class Role(models.Model):
    """A named set of catalog permissions, granted to users through memberships."""

    name = models.CharField(max_length=64, unique=True)
    description = models.CharField(max_length=255, blank=True)
    permissions = models.ManyToManyField(
        Permission,
        blank=True,
        related_name="gateway_roles",
        limit_choices_to={"content_type__app_label": "accounts", "codename__in": sorted(CATALOG)},
    )

    class Meta:
        ordering = ["name"]
        permissions = [(perm.value, text) for perm, text in PERMISSION_DESCRIPTIONS.items()]

    def __str__(self) -> str:
        return self.name

    def permission_codes(self) -> list[str]:
        return sorted(self.permissions.values_list("codename", flat=True))


class Membership(models.Model):
    """Gives a user a role at one location, or at a whole organization (all of its locations)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="memberships")
    location = models.ForeignKey(
        "locations.Location", null=True, blank=True, on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(
        "locations.Organization", null=True, blank=True, on_delete=models.CASCADE, related_name="memberships"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(location__isnull=False, organization__isnull=True)
                    | models.Q(location__isnull=True, organization__isnull=False)
                ),
                name="membership_scope_is_location_xor_organization",
                violation_error_message="A membership covers either one location or one organization.",
            ),
            models.UniqueConstraint(fields=["user", "role", "location"], name="unique_role_per_location"),
            models.UniqueConstraint(fields=["user", "role", "organization"], name="unique_role_per_organization"),
        ]

    @property
    def scope_label(self) -> str:
        return f"location {self.location}" if self.location_id else f"organization {self.organization}"

    def __str__(self) -> str:
        return f"{self.user} as {self.role} at {self.scope_label}"


class LoginLockout(models.Model):
    """A username or client address that reached its login failure limit (the counts live in the shared cache).

    Written when a lockout begins, so operators can see it; deleting the row in the admin clears the count at once.
    """

    class Kind(models.TextChoices):
        USERNAME = "username", "username"
        ADDRESS = "address", "client address"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    identity = models.CharField(max_length=150, help_text="The username tried, or the client's IP address.")
    failures = models.PositiveIntegerField(help_text="Failures counted when the limit was reached.")
    locked_at = models.DateTimeField()
    locked_until = models.DateTimeField()

    class Meta:
        ordering = ["-locked_at"]
        constraints = [models.UniqueConstraint(fields=["kind", "identity"], name="one_lockout_per_identity")]

    @property
    def is_active(self) -> bool:
        from django.utils import timezone

        return self.locked_until > timezone.now()

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.identity} until {self.locked_until:%Y-%m-%d %H:%M:%S}"
