"""Who a token's user is and what they may read, remembered in-process so a connect costs no database round trip.

A *principal* is one user's active flag (the ``User`` row) and the grants the gateway has confirmed for them:
per permission, the location ids where the database said yes, and whether they hold it anywhere. It is loaded on
the first connect of that user (one query for the user, one per new (permission, locations) question), then
shared by every connection of the user in this process: the 5,000th connect of a user asks the database nothing.

Only *positive* answers are remembered. A location the principal does not know yet is asked of the database
(``accounts.authz``, the one place of the rule) and remembered if granted; a refusal is always the database's
current answer. So a new location or grant is visible at once, and a cached entry can only be too generous in one
way: access that was *removed*. Removals are what ``rt.access_changed`` announces (``accounts.receivers``): the
process that made the change forgets at commit, every other process when the control message arrives
(``realtime.hub`` -> ``stores.access_cache.forget``), and ``PRINCIPAL_CACHE_SECONDS`` bounds what a lost message
or a queryset ``update()`` (which sends no signal) can leave behind.

Only users of validly signed, unexpired tokens enter (the JWT is checked first, in-process), and the store holds
at most ``PRINCIPAL_CACHE_MAX_ENTRIES`` principals, least recently used out first: a flood of bad tokens costs no
query and evicts nobody. A load that started before a ``forget`` is not stored (a generation counter), so a
deactivation that lands while a connect is reading the user cannot be remembered as "still active".
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from channels.db import database_sync_to_async
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from accounts import authz
from accounts.models import User
from realtime.conf import realtime_settings


@dataclass(slots=True)
class Principal:
    user: User
    expires_at: float  # time.monotonic() after which the entry is reloaded
    locations: dict[str, set[str]] = field(default_factory=dict)  # permission -> location ids confirmed
    anywhere: set[str] = field(default_factory=set)  # permissions confirmed held at one location at least


_principals: OrderedDict[str, Principal] = OrderedDict()  # str(user pk) -> principal, least recently used first
_in_flight: dict[tuple[Any, ...], asyncio.Future[Any]] = {}  # (loop, question...) -> its pending answer
_generation = 0
T = TypeVar("T")
_lock = threading.Lock()  # forget() also runs in the thread that committed an access change


def _key(user_pk: Any) -> str:
    return str(user_pk)  # token claims carry the pk as a string


def _load_user(user_pk: Any) -> User | None:
    return User.objects.filter(**{jwt_settings.USER_ID_FIELD: user_pk}).first()


# Channels' wrapper, not plain sync_to_async: it closes connections past CONN_MAX_AGE around each call.
_aload_user = database_sync_to_async(_load_user)
_apermitted_location_ids = database_sync_to_async(authz.permitted_location_ids)
_ahas_permission_anywhere = database_sync_to_async(authz.has_permission_anywhere)


def recall(user_pk: Any) -> Principal | None:
    """The remembered, unexpired principal of ``user_pk``; no database."""
    key = _key(user_pk)
    with _lock:
        principal = _principals.get(key)
        if principal is None:
            return None
        if principal.expires_at < time.monotonic():
            del _principals[key]
            return None
        _principals.move_to_end(key)
        return principal


def _store(user: User, generation: int) -> Principal | None:
    """Remember ``user`` unless access changed since its load began (then the caller's answer is used once)."""
    ttl = realtime_settings.PRINCIPAL_CACHE_SECONDS
    limit = realtime_settings.PRINCIPAL_CACHE_MAX_ENTRIES
    key = _key(getattr(user, jwt_settings.USER_ID_FIELD))
    with _lock:
        if ttl <= 0 or limit <= 0 or generation != _generation:
            return None
        principal = Principal(user, time.monotonic() + ttl)
        _principals[key] = principal
        _principals.move_to_end(key)
        while len(_principals) > limit:
            _principals.popitem(last=False)
        return principal


async def _single_flight(key: tuple[Any, ...], load: Callable[[], Awaitable[T]]) -> T:
    """Run ``load`` once for concurrent callers with the same ``key`` (a reconnect storm asks the same question
    25 times at once per user): the others wait for its result. It runs as its own task, so a caller whose
    connection goes away meanwhile cancels only its own wait, not the others' answer."""
    flight = (asyncio.get_running_loop(), *key)
    task = _in_flight.get(flight)
    if task is None:
        task = _in_flight[flight] = asyncio.ensure_future(load())
        task.add_done_callback(lambda done: _land(flight, done))
    return cast(T, await asyncio.shield(task))


def _land(flight: tuple[Any, ...], done: asyncio.Future[Any]) -> None:
    _in_flight.pop(flight, None)
    if not done.cancelled():
        done.exception()  # mark it retrieved: the waiters re-raise it, and there may be none left


async def aget_user(user_pk: Any) -> User | None:
    """The user behind a verified token: from memory, else one query (concurrent misses share it)."""
    principal = recall(user_pk)
    if principal is not None:
        return principal.user

    async def load() -> User | None:
        from realtime.hub import aget_hub  # not at import time: the hub imports this module via access_cache

        await aget_hub()  # this process must hear access changes before it remembers anything
        generation = _generation
        user = await _aload_user(user_pk)
        if user is not None:
            _store(user, generation)
        return user

    return await _single_flight(("user", _key(user_pk)), load)


async def apermitted(user: User, permission: str, location_ids: Iterable[str]) -> set[str]:
    """Which of ``location_ids`` ``user`` holds ``permission`` at: confirmed ones from memory, the rest asked."""
    wanted = set(location_ids)
    user_pk = _key(getattr(user, jwt_settings.USER_ID_FIELD))
    principal = recall(user_pk)
    known = principal.locations.get(permission, set()) if principal is not None else set()
    unknown = wanted - known
    if not unknown:
        return wanted

    async def load() -> set[str]:
        generation = _generation
        granted = await _apermitted_location_ids(user, permission, among=unknown)
        if granted and principal is not None:
            with _lock:
                if generation == _generation:
                    principal.locations.setdefault(permission, set()).update(granted)
        return granted

    granted = await _single_flight(("locations", user_pk, bool(user.is_active), permission, frozenset(unknown)), load)
    return (wanted & known) | granted


async def aholds_anywhere(user: User, permission: str) -> bool:
    """True when ``user`` holds ``permission`` at one location at least (a yes is remembered)."""
    user_pk = _key(getattr(user, jwt_settings.USER_ID_FIELD))
    principal = recall(user_pk)
    if principal is not None and permission in principal.anywhere:
        return True

    async def load() -> bool:
        generation = _generation
        held = await _ahas_permission_anywhere(user, permission)
        if held and principal is not None:
            with _lock:
                if generation == _generation:
                    principal.anywhere.add(permission)
        return held

    return await _single_flight(("anywhere", user_pk, bool(user.is_active), permission), load)


def forget(public_ids: Iterable[str] | None) -> None:
    """Drop these users' principals (None: everybody's); loads under way are not stored."""
    global _generation
    with _lock:
        _generation += 1
        if public_ids is None:
            _principals.clear()
            return
        gone = set(public_ids)
        for key in [k for k, p in _principals.items() if p.user.public_id in gone]:
            del _principals[key]


def size() -> int:
    return len(_principals)
