"""Access changes -> a control message, so every gateway process re-checks the affected live connections."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.dispatch import receiver

from accounts.models import Membership, Role, User
from locations.models import Location
from realtime.publishing import broadcast_control
from realtime.stores import access_cache


def announce_access_change(user_ids: list[str] | None) -> None:
    """After commit, tell every process that these users' access changed (None: everybody's)."""

    def send() -> None:
        access_cache.forget(user_ids)  # this process at once; the others when the control message arrives
        broadcast_control({"type": "rt.access_changed", "user_ids": user_ids})

    transaction.on_commit(send, robust=True)


@receiver(post_save, sender=Membership)
@receiver(post_delete, sender=Membership)
def membership_changed(sender: type, instance: Membership, **kwargs: Any) -> None:
    user = User.objects.filter(pk=instance.user_id).values_list("public_id", flat=True).first()
    announce_access_change([user] if user else None)


@receiver(m2m_changed, sender=Role.permissions.through)
def role_permissions_changed(sender: type, instance: Any, action: str, **kwargs: Any) -> None:
    if action in {"post_add", "post_remove", "post_clear"} and isinstance(instance, Role):
        holders = list(User.objects.filter(memberships__role=instance).values_list("public_id", flat=True).distinct())
        if holders:
            announce_access_change(holders)


@receiver(pre_save, sender=User)
def remember_user_access(sender: type, instance: User, **kwargs: Any) -> None:
    if instance.pk:
        before = User.objects.filter(pk=instance.pk).values_list("is_active", "is_superuser").first()
        instance.__dict__["_access_before"] = before


@receiver(post_save, sender=User)
def user_access_changed(sender: type, instance: User, created: bool, **kwargs: Any) -> None:
    before = instance.__dict__.pop("_access_before", None)
    if not created and before is not None and before != (instance.is_active, instance.is_superuser):
        announce_access_change([instance.public_id])


@receiver(post_delete, sender=User)
def user_deleted(sender: type, instance: User, **kwargs: Any) -> None:
    announce_access_change([instance.public_id])


@receiver(pre_save, sender=Location)
def remember_location_access(sender: type, instance: Location, **kwargs: Any) -> None:
    if instance.pk:
        before = Location.objects.filter(pk=instance.pk).values_list("is_active", "organization_id").first()
        instance.__dict__["_access_before"] = before


@receiver(post_save, sender=Location)
def location_access_changed(sender: type, instance: Location, created: bool, **kwargs: Any) -> None:
    """A location closed or moved: grants cached for it (``realtime.principals``) must not outlive that."""
    before = instance.__dict__.pop("_access_before", None)
    if not created and before is not None and before != (instance.is_active, instance.organization_id):
        announce_access_change(None)


@receiver(post_delete, sender=Location)
def location_deleted(sender: type, instance: Location, **kwargs: Any) -> None:
    announce_access_change(None)
