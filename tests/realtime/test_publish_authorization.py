"""REST publish remembers a publisher's grant briefly, and forgets it the moment an administrator changes access."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from accounts.models import Membership
from realtime.stores import access_cache
from tests.support.asgi import access_token_for

pytestmark = pytest.mark.django_db(transaction=True)
BODY = {"channel": "orders", "event": "order.created", "location_id": "loc-xyz789", "data": {}}


async def post(client: AsyncClient, token: str) -> int:
    response = await client.post(
        "/v1/events", BODY, content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )
    return response.status_code


async def test_a_removed_publisher_is_refused_at_once_despite_the_memo(world):
    client = AsyncClient()
    token = access_token_for(world["john"])
    assert await post(client, token) == 202
    assert access_cache.recall(world["john"].pk, "orders:loc-xyz789") is True  # remembered
    await sync_to_async(Membership.objects.filter(user=world["john"]).delete)()
    for _ in range(50):  # the access-change broadcast reaches this process's hub
        if access_cache.recall(world["john"].pk, "orders:loc-xyz789") is None:
            break
        await asyncio.sleep(0.01)
    assert await post(client, token) == 403


async def test_a_deactivated_publisher_is_unauthenticated(world):
    client = AsyncClient()
    token = access_token_for(world["john"])
    assert await post(client, token) == 202
    john = world["john"]
    john.is_active = False
    await sync_to_async(john.save)()
    await asyncio.sleep(0.1)
    assert await post(client, token) == 401
