"""The gateway's one door into accounts: may this user read these streams?

Decided from the database at subscribe time, so an admin's change applies to the next subscribe. A location that
does not exist and one the user may not see give the same answer, so the error is no oracle for which exist.
"""

from __future__ import annotations

from channels.db import database_sync_to_async

from accounts import authz
from accounts.models import User
from realtime.errors import Unauthorized
from realtime.registry import ChannelSpec, Scope


def may_read(user: User, spec: ChannelSpec, scope_ids: tuple[str, ...]) -> bool:
    """True when ``user`` may read ``spec``'s streams for every one of ``scope_ids``."""
    if not user.is_active:
        return False
    if spec.scope is Scope.USER:
        if user.is_superuser:
            return True
        return scope_ids == (user.public_id,) and authz.has_permission_anywhere(user, spec.permission)
    return authz.has_permission_at(user, spec.permission, scope_ids)


def authorize(user: User, spec: ChannelSpec, scope_ids: tuple[str, ...]) -> None:
    if not may_read(user, spec, scope_ids):
        raise Unauthorized(spec.name, spec.permission)


def refresh_user(user: User) -> User | None:
    """Reload a connection's user, to notice deactivation; None when deleted."""
    return User.objects.filter(pk=user.pk).first()


aauthorize = database_sync_to_async(authorize)
amay_read = database_sync_to_async(may_read)
arefresh_user = database_sync_to_async(refresh_user)
