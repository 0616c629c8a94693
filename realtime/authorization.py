"""The gateway's one door into accounts: may this user read these streams?

The sync functions ask the database; the async ones (what the consumer awaits) answer confirmed grants from the
process's principal cache (``realtime.principals``) and ask the database only what it has not confirmed, so a
refusal is always current and a removal applies as soon as ``rt.access_changed`` is heard (at once in the process
that made it). A location that does not exist and one the user may not see give the same answer, so the error is
no oracle for which exist.
"""

from __future__ import annotations

from accounts import authz
from accounts.models import User
from realtime import principals
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


async def amay_read(user: User, spec: ChannelSpec, scope_ids: tuple[str, ...]) -> bool:
    """``may_read`` (the same rule), with confirmed grants from the principal cache: no query on a hit."""
    if not user.is_active:
        return False
    if spec.scope is Scope.USER:
        if user.is_superuser:
            return True
        return scope_ids == (user.public_id,) and await principals.aholds_anywhere(user, spec.permission)
    wanted = set(scope_ids)
    return bool(wanted) and await principals.apermitted(user, spec.permission, wanted) == wanted


async def aauthorize(user: User, spec: ChannelSpec, scope_ids: tuple[str, ...]) -> None:
    if not await amay_read(user, spec, scope_ids):
        raise Unauthorized(spec.name, spec.permission)


async def arefresh_user(user: User) -> User | None:
    """The user as the database has it now (called after an access change forgot the cached one); None if deleted."""
    return await principals.aget_user(user.pk)
