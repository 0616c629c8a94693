"""Cross-tenant isolation on every channel: each user receives exactly the streams they may read, nothing more."""

from __future__ import annotations

import pytest

from realtime.publishing import apublish
from realtime.registry import CHANNELS, Scope
from tests.support.asgi import open_client

pytestmark = pytest.mark.django_db(transaction=True)
LOCATION_CHANNELS = [spec for spec in CHANNELS if spec.scope is Scope.LOCATION]
ALL_LOCATIONS = ["loc-xyz789", "loc-abc456", "loc-other1"]


async def drain(client) -> list[dict]:
    frames = []
    while not await client.nothing(timeout=0.3):
        frames.append(await client.recv())
    return frames


async def test_every_channel_delivers_only_within_the_tenant(token_for):
    async with open_client(token_for("john")) as john, open_client(token_for("olga")) as olga:
        for spec in LOCATION_CHANNELS:
            assert (await john.subscribe(spec.name, {"location_ids": ["loc-xyz789", "loc-abc456"]}))["success"]
            assert (await olga.subscribe(spec.name, {"location_id": "loc-other1"}))["success"]
            for forbidden in ("loc-xyz789", "loc-abc456"):
                refused = await olga.subscribe(spec.name, {"location_ids": ["loc-other1", forbidden]})
                assert refused["code"] == "unauthorized"
            assert (await john.subscribe(spec.name, {"location_id": "loc-other1"}))["code"] == "unauthorized"
        for spec in LOCATION_CHANNELS:
            for location in ALL_LOCATIONS:
                await apublish(spec.name, spec.events[0], location_id=location, data={"probe": location})
        john_seen = {(f["channel"], f["location_id"]) for f in await drain(john)}
        olga_seen = {(f["channel"], f["location_id"]) for f in await drain(olga)}
    assert john_seen == {(s.name, loc) for s in LOCATION_CHANNELS for loc in ("loc-xyz789", "loc-abc456")}
    assert olga_seen == {(s.name, "loc-other1") for s in LOCATION_CHANNELS}


async def test_notifications_reach_only_their_user(token_for):
    async with open_client(token_for("sarah")) as sarah, open_client(token_for("john")) as john:
        assert (await sarah.subscribe("notifications", {}))["params"] == {"user_id": "user-sarah"}
        assert (await john.subscribe("notifications", {}))["params"] == {"user_id": "user-john"}
        assert (await john.subscribe("notifications", {"user_id": "user-sarah"}))["code"] == "unauthorized"
        await apublish("notifications", "notification.alert", user_id="user-sarah", data={"to": "sarah"})
        await apublish("notifications", "notification.alert", user_id="user-john", data={"to": "john"})
        assert [f["data"]["to"] for f in await drain(sarah)] == ["sarah"]
        assert [f["data"]["to"] for f in await drain(john)] == ["john"]
