import pytest
from asgiref.sync import sync_to_async

from realtime.publishing import apublish
from tests.support.asgi import open_client

pytestmark = pytest.mark.django_db(transaction=True)


async def test_subscribe_and_receive_event(token_for):
    async with open_client(token_for("sarah")) as client:
        reply = await client.subscribe("orders", {"location_id": "loc-xyz789"}, "req-001")
        assert reply["success"] is True and reply["id"] == "req-001"
        await apublish("orders", "order.created", location_id="loc-xyz789", data={"status": "open"})
        event = await client.recv()
        assert event["type"] == "event"
        assert event["subscription_id"] == reply["subscription_id"]


async def test_order_save_publishes_after_commit(token_for):
    from locations.models import Location, Order

    async with open_client(token_for("sarah")) as client:
        await client.subscribe("orders", {"location_id": "loc-xyz789"})
        location = await Location.objects.aget(public_id="loc-xyz789")
        order = await sync_to_async(Order.objects.create)(location=location, type="takeout")
        event = await client.recv()
        assert event["event"] == "order.created"
        assert event["data"]["order_id"] == order.public_id
