"""The connect path's principal cache (issue 13): no query per connect in the steady state, and it never outlives
an access change. Through the real ASGI application and the real database; queries are counted in the thread that
runs them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import jwt
import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import connection
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import Membership, User
from realtime import principals
from realtime.expiry import ExpiryTimer
from tests.support.asgi import open_client

pytestmark = pytest.mark.django_db(transaction=True)
AT = {"location_id": "loc-xyz789"}


@asynccontextmanager
async def counted_queries() -> AsyncIterator[list[str]]:
    """Every SQL statement the gateway runs meanwhile (it runs them in Channels' database thread)."""
    seen: list[str] = []

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    def install() -> None:  # looked up in the database thread: each thread has its own connection object
        connection.execute_wrappers.append(wrapper)

    def remove() -> None:
        connection.execute_wrappers.remove(wrapper)

    await database_sync_to_async(install)()
    try:
        yield seen
    finally:
        await database_sync_to_async(remove)()


async def connect_and_subscribe(token: str) -> None:
    async with open_client(token) as client:
        reply = await client.subscribe("orders", AT)
        assert reply["success"] is True, reply


async def test_only_the_first_connect_of_a_user_asks_the_database(token_for: Any) -> None:
    token = token_for("sarah")
    async with counted_queries() as first:
        await connect_and_subscribe(token)
    assert first, "the first connect loads the user and the grant"
    async with counted_queries() as later:
        for _ in range(5):
            await connect_and_subscribe(token)
        await connect_and_subscribe(token_for("sarah"))  # another token of the same user: same principal
    assert later == []


async def test_concurrent_first_connects_of_a_user_share_one_load(token_for: Any) -> None:
    token = token_for("sarah")
    async with counted_queries() as seen:
        await asyncio.gather(*(connect_and_subscribe(token) for _ in range(10)))
    users = [sql for sql in seen if 'FROM "accounts_user"' in sql and "accounts_membership" not in sql]
    assert len(users) == 1, seen


def forged(token: str) -> str:
    head, _, signature = token.rpartition(".")
    return f"{head}.{signature[:-4]}{'AAAA' if not signature.endswith('AAAA') else 'BBBB'}"


def expired_for(user: User) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=-60))
    return str(token)


def signed_with_another_key(user: User) -> str:
    claims = {"token_type": "access", "exp": int(time.time()) + 600, "jti": "x", "user_id": str(user.pk)}
    return jwt.encode(claims, "not-the-signing-key-" + "x" * 40, algorithm="HS256")


async def test_bad_tokens_cost_no_query_and_evict_nobody(token_for: Any, world: Any, settings: Any) -> None:
    settings.REALTIME = {"PRINCIPAL_CACHE_MAX_ENTRIES": 1}
    await connect_and_subscribe(token_for("sarah"))
    sarah = world["sarah"]
    bad = [forged(token_for("john")), expired_for(world["john"]), signed_with_another_key(world["john"]), "garbage"]
    async with counted_queries() as seen:
        for token in bad * 5:
            async with open_client(token, expect_connected=False) as client:
                error = await client.recv()
                assert error["code"] == "unauthenticated"
                assert (await client.ws.receive_output(timeout=2))["code"] == 4401
    assert seen == []
    assert principals.recall(sarah.pk) is not None  # still there: bad tokens never enter a bounded cache
    async with counted_queries() as later:
        await connect_and_subscribe(token_for("sarah"))
    assert later == []


async def test_the_cache_is_bounded_least_recently_used_out(token_for: Any, world: Any, settings: Any) -> None:
    settings.REALTIME = {"PRINCIPAL_CACHE_MAX_ENTRIES": 2}
    for username in ("sarah", "john", "kim"):
        await connect_and_subscribe(token_for(username))
    assert principals.size() == 2
    assert principals.recall(world["sarah"].pk) is None
    assert principals.recall(world["kim"].pk) is not None


async def test_a_deactivation_applies_to_the_next_connect_at_once(token_for: Any) -> None:
    token = token_for("sarah")
    await connect_and_subscribe(token)

    def deactivate() -> None:
        user = User.objects.get(username="sarah")
        user.is_active = False
        user.save()

    await sync_to_async(deactivate)()
    async with open_client(token, expect_connected=False) as client:
        error = await client.recv()
        assert error["code"] == "unauthenticated"


async def test_a_removed_grant_applies_to_the_next_subscribe_at_once(token_for: Any) -> None:
    token = token_for("sarah")
    await connect_and_subscribe(token)
    await sync_to_async(Membership.objects.filter(user__username="sarah").delete)()
    async with open_client(token) as client:
        reply = await client.subscribe("orders", AT)
        assert reply["code"] == "unauthorized"


async def test_a_signal_less_change_is_bounded_by_the_ttl(token_for: Any, settings: Any) -> None:
    """A queryset ``update()`` sends no signal: the cached principal lives until PRINCIPAL_CACHE_SECONDS."""
    settings.REALTIME = {"PRINCIPAL_CACHE_SECONDS": 0.5}
    token = token_for("sarah")
    await connect_and_subscribe(token)
    await User.objects.filter(username="sarah").aupdate(is_active=False)
    await connect_and_subscribe(token)  # within the TTL: the documented limit
    await asyncio.sleep(0.6)
    async with open_client(token, expect_connected=False) as client:
        assert (await client.recv())["code"] == "unauthenticated"


async def test_a_new_grant_is_seen_without_waiting(token_for: Any, world: Any) -> None:
    """Only grants are remembered, never refusals: a grant added after a refusal applies to the next subscribe."""
    token = token_for("kim")
    async with open_client(token) as client:
        assert (await client.subscribe("analytics", AT))["code"] == "unauthorized"
    memberships = Membership.objects.select_related("role", "organization", "location")
    manager = await memberships.filter(user__username="john").afirst()
    assert manager is not None
    await Membership.objects.acreate(
        user=world["kim"], role=manager.role, location=manager.location, organization=manager.organization
    )
    async with open_client(token) as client:
        assert (await client.subscribe("analytics", AT))["success"] is True


# -- the token-expiry timer -------------------------------------------------------------------------------------


class Owner:
    def __init__(self) -> None:
        self.closing = False
        self.calls: list[float] = []

    def due(self, argument: float) -> None:
        self.calls.append(argument)


async def test_the_expiry_timer_fires_in_order_and_skips_owners_that_are_gone() -> None:
    timer = ExpiryTimer(asyncio.get_running_loop())
    first, second, gone = Owner(), Owner(), Owner()
    now = time.time()
    timer.schedule(now + 0.2, second, Owner.due, 2.0)
    timer.schedule(now + 0.1, first, Owner.due, 1.0)
    timer.schedule(now + 0.1, gone, Owner.due, 3.0)
    del gone
    await asyncio.sleep(0.15)
    assert first.calls == [1.0] and second.calls == []
    await asyncio.sleep(0.15)
    assert second.calls == [2.0]
    assert len(timer) == 0


async def test_the_expiry_timer_sweeps_closed_connections() -> None:
    timer = ExpiryTimer(asyncio.get_running_loop())
    owners = [Owner() for _ in range(3000)]
    for owner in owners[:-1]:
        owner.closing = True
    for owner in owners:
        timer.schedule(time.time() + 3600, owner, Owner.due, 0.0)
    assert len(timer) < 1100  # swept as it grew: only the live one and the latest entries remain
