"""The admin's "may U subscribe to C at L?" gives the gateway's answer: checked against a real subscribe."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission
from django.test import Client as DjangoClient
from django.urls import reverse

from accounts.models import User
from locations.models import Location
from realtime.subscribe_check import SubscribeAnswer, check_subscribe
from tests.support.asgi import access_token_for, open_client

pytestmark = pytest.mark.django_db(transaction=True)

CHECK_URL = reverse("admin-check-subscription")

# (user, channel, location or None, other params): allowed and refused, direct and through the organization.
CASES = [
    pytest.param("sarah", "orders", "loc-xyz789", {}, id="sarah-orders-at-her-location"),
    pytest.param("sarah", "tables", "loc-xyz789", {"statuses": ["seated"]}, id="sarah-tables-filtered"),
    pytest.param("sarah", "analytics", "loc-xyz789", {}, id="sarah-lacks-analytics"),
    pytest.param("sarah", "orders", "loc-abc456", {}, id="sarah-at-another-location"),
    pytest.param("john", "kds", "loc-abc456", {}, id="john-through-his-organization"),
    pytest.param("olga", "orders", "loc-xyz789", {}, id="olga-other-organization"),
    pytest.param("kim", "kds", "loc-xyz789", {"station": "grill"}, id="kim-kds-station"),
    pytest.param("kim", "orders", "loc-xyz789", {"statuses": ["bogus"]}, id="bad-filter-value"),
    pytest.param("kim", "orders", None, {}, id="no-location"),
    pytest.param("sarah", "notifications", None, {}, id="own-notifications"),
    pytest.param("sarah", "notifications", None, {"user_id": "user-john"}, id="someone-elses-notifications"),
    pytest.param("admin", "voice", "loc-other1", {}, id="superuser"),
    pytest.param("sarah", "orders", "loc-nope", {}, id="unknown-location"),
]


def subscribe_params(channel: str, location: str | None, extra: dict[str, Any]) -> dict[str, Any]:
    return {**extra, **({"location_id": location} if location and channel != "notifications" else {})}


def essentials(frame: dict[str, Any]) -> dict[str, Any]:
    """What must be equal: success or code, message, required permission, and the echoed params."""
    if frame.get("type") == "response":
        return {"success": True, "channel": frame["channel"], "params": frame["params"]}
    return {key: frame.get(key) for key in ("code", "message", "channel", "required_permission")}


async def gateway_answer(user: User, channel: str, params: dict[str, Any]) -> dict[str, Any]:
    async with open_client(access_token_for(user)) as client:
        return await client.subscribe(channel, params)


@pytest.mark.parametrize(("username", "channel", "location", "extra"), CASES)
async def test_check_gives_the_gateways_answer(
    world: Any, username: str, channel: str, location: str | None, extra: dict[str, Any]
) -> None:
    user = world[username]
    params = subscribe_params(channel, location, extra)
    real = await gateway_answer(user, channel, params)
    checked = await sync_to_async(check_subscribe)(user, channel, params)
    assert essentials(checked.frame) == essentials(real)
    assert checked.allowed == (real["type"] == "response")
    if real["type"] == "error" and real["code"] == "unauthorized":
        assert checked.required_permission == real["required_permission"] == f"{channel}.read"


async def test_inactive_location_is_refused_like_the_gateway(world: Any) -> None:
    await Location.objects.filter(public_id="loc-xyz789").aupdate(is_active=False)
    real = await gateway_answer(world["sarah"], "orders", {"location_id": "loc-xyz789"})
    checked = await sync_to_async(check_subscribe)(world["sarah"], "orders", {"location_id": "loc-xyz789"})
    assert real["code"] == "unauthorized" and essentials(checked.frame) == essentials(real)


async def test_inactive_user_gets_the_connections_answer(world: Any) -> None:
    sarah = world["sarah"]
    token = access_token_for(sarah)
    await User.objects.filter(pk=sarah.pk).aupdate(is_active=False)
    sarah = await User.objects.aget(pk=sarah.pk)
    async with open_client(token, expect_connected=False) as client:
        refused = await client.recv()
    checked = await sync_to_async(check_subscribe)(sarah, "orders", {"location_id": "loc-xyz789"})
    assert refused["code"] == "unauthenticated" == checked.frame["code"]
    assert not checked.allowed


# --- The admin page ------------------------------------------------------------------------------------------------


def ask(client: DjangoClient, **query: Any) -> Any:
    return client.get(CHECK_URL, query)


def page_answer(response: Any) -> SubscribeAnswer:
    assert response.status_code == 200, response.content.decode()[:2000]
    answer = response.context["answer"]
    assert isinstance(answer, SubscribeAnswer)
    return answer


async def test_admin_page_answers_as_the_gateway(world: Any) -> None:
    admin = DjangoClient()
    await sync_to_async(admin.force_login)(world["admin"])
    sarah = world["sarah"]

    allowed = await sync_to_async(ask)(admin, user=sarah.pk, channel="orders", location="loc-xyz789")
    real = await gateway_answer(sarah, "orders", {"location_id": "loc-xyz789"})
    answer = page_answer(allowed)
    assert answer.allowed and real["type"] == "response" and essentials(answer.frame) == essentials(real)
    page = allowed.content.decode()
    assert 'data-allowed="true"' in page and 'data-required-permission="orders.read"' in page
    assert "<code>orders:loc-xyz789</code>" in page

    refused = await sync_to_async(ask)(admin, user=sarah.pk, channel="analytics", location="loc-xyz789")
    real = await gateway_answer(sarah, "analytics", {"location_id": "loc-xyz789"})
    answer = page_answer(refused)
    assert not answer.allowed and essentials(answer.frame) == essentials(real)
    page = refused.content.decode()
    assert 'data-allowed="false"' in page and 'data-required-permission="analytics.read"' in page
    assert "Refused: unauthorized" in page

    filtered = await sync_to_async(ask)(
        admin, user=sarah.pk, channel="orders", location="loc-xyz789", filters='{"statuses": ["bogus"]}'
    )
    real = await gateway_answer(sarah, "orders", {"location_id": "loc-xyz789", "statuses": ["bogus"]})
    assert essentials(page_answer(filtered).frame) == essentials(real) and real["code"] == "invalid_params"


def test_admin_page_form_errors_and_who_may_use_it(world: Any) -> None:
    admin = DjangoClient()
    admin.force_login(world["admin"])
    blank = admin.get(CHECK_URL, {"user": world["sarah"].pk})
    assert blank.status_code == 200 and blank.context["answer"] is None  # the user page's link: form prefilled
    assert blank.context["form"].initial["user"] == str(world["sarah"].pk)
    bad = admin.get(CHECK_URL, {"user": world["sarah"].pk, "channel": "orders", "filters": "[1"})
    assert bad.context["answer"] is None and "filters" in bad.context["form"].errors

    outsider = DjangoClient()
    outsider.force_login(world["sarah"])  # not staff: sent to the admin login
    response = outsider.get(CHECK_URL, {"user": world["sarah"].pk, "channel": "orders"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]

    kim = world["kim"]
    kim.is_staff = True
    kim.save()
    staff = DjangoClient()
    staff.force_login(kim)
    assert staff.get(CHECK_URL).status_code == 403  # staff, but may not look at users
    kim.user_permissions.add(Permission.objects.get(codename="view_user"))
    assert staff.get(CHECK_URL).status_code == 200
