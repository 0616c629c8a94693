"""The contract every registered channel keeps, walked from ``realtime.registry.CHANNELS``.

Adding a channel without a filter sample here fails ``test_every_filter_has_a_sample``: a new filter is not done until
it has a matching and a non-matching event.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from channels.layers import BaseChannelLayer

from accounts.models import Role, catalog_permissions
from accounts.permissions import CATALOG
from realtime import checks as realtime_checks
from realtime.checks import check_channel_registry
from realtime.publishing import apublish
from realtime.registry import (
    CHANNELS,
    ChannelParams,
    ChannelSpec,
    EventNameFilter,
    FieldFilter,
    LocationParams,
    OrdersParams,
    Scope,
)
from realtime.streams import group_for_stream
from tests.support.asgi import open_client

LOCATION = "loc-xyz789"
LONGEST_PUBLIC_ID = "loc-" + "x" * 60

# (channel, param) -> (param value, data of a matching event, data of a non-matching event)
FIELD_FILTER_SAMPLES: dict[tuple[str, str], tuple[Any, dict[str, Any], dict[str, Any]]] = {
    ("orders", "types"): (["takeout"], {"type": "takeout"}, {"type": "dine_in"}),
    ("orders", "statuses"): (["open", "preparing"], {"status": "preparing"}, {"status": "paid"}),
    ("kds", "station"): ("grill", {"station": "grill"}, {"station": "fryer"}),
    ("tables", "statuses"): (["seated"], {"status": "seated"}, {"status": "reserved"}),
    ("analytics", "metrics"): (["revenue"], {"metric": "revenue"}, {"metric": "avg_ticket"}),
    ("delivery", "platforms"): (["doordash"], {"platform": "doordash"}, {"platform": "ubereats"}),
    ("voice", "lane"): (1, {"lane": 1}, {"lane": 2}),
}
# (channel, param) -> (param value, a matching event name, a non-matching event name)
EVENT_NAME_FILTER_SAMPLES: dict[tuple[str, str], tuple[Any, str, str]] = {
    ("inventory", "alert_types"): (["low_stock"], "inventory.low_stock", "inventory.out_of_stock"),
}

FILTER_CASES = [
    pytest.param(spec, flt, id=f"{spec.name}.{flt.param}")
    for spec in CHANNELS
    for flt in (*spec.field_filters, *spec.event_name_filters)
]
CHANNEL_CASES = [pytest.param(spec, id=spec.name) for spec in CHANNELS]


@pytest.fixture(autouse=True)
def fast_password_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def base_params(spec: ChannelSpec) -> dict[str, Any]:
    return {} if spec.scope is Scope.USER else {"location_id": LOCATION}


def publish_target(spec: ChannelSpec, user_id: str) -> dict[str, str]:
    return {"user_id": user_id} if spec.scope is Scope.USER else {"location_id": LOCATION}


# --- Static contract --------------------------------------------------------------------------------------------


def test_channel_names_are_unique_and_match_the_seed() -> None:
    assert [spec.name for spec in CHANNELS] == [
        "orders",
        "kds",
        "inventory",
        "tables",
        "analytics",
        "delivery",
        "notifications",
        "voice",
    ]


@pytest.mark.parametrize("spec", CHANNEL_CASES)
def test_channel_has_a_strict_params_schema(spec: ChannelSpec) -> None:
    assert issubclass(spec.params, ChannelParams)
    assert spec.params.model_config.get("extra") == "forbid"
    schema = spec.params.model_json_schema()
    assert schema["additionalProperties"] is False
    assert "events" in schema["properties"]
    for flt in (*spec.field_filters, *spec.event_name_filters):
        assert flt.param in schema["properties"]
    if spec.scope is Scope.LOCATION:
        assert issubclass(spec.params, LocationParams)
        assert {"location_id", "location_ids"} <= set(schema["properties"])
    else:
        assert "user_id" in schema["properties"]


@pytest.mark.parametrize("spec", CHANNEL_CASES)
def test_channel_permission_is_in_the_catalog(spec: ChannelSpec) -> None:
    assert spec.permission == f"{spec.name}.read"
    assert spec.permission in CATALOG


@pytest.mark.django_db
def test_every_catalog_permission_exists_as_a_permission_row() -> None:
    assert set(catalog_permissions().values_list("codename", flat=True)) == set(CATALOG)


@pytest.mark.parametrize("spec", CHANNEL_CASES)
def test_channel_has_events_in_its_own_namespace(spec: ChannelSpec) -> None:
    """Every event is in its channel's namespace; a user's notifications also carry the kitchen's alerts (kds.*)."""
    assert spec.events and len(set(spec.events)) == len(spec.events)
    prefixes = {spec.events[0].split(".")[0], *(("kds",) if spec.name == "notifications" else ())}
    assert all(event.split(".")[0] in prefixes for event in spec.events)


@pytest.mark.parametrize("spec", CHANNEL_CASES)
def test_channel_group_names_are_valid_for_channels(spec: ChannelSpec) -> None:
    layer = BaseChannelLayer()
    for scope_id in ("loc-xyz789", "user-sarah", LONGEST_PUBLIC_ID, "A.b_c-9"):
        group = group_for_stream(spec.stream(scope_id))
        assert group == f"rt.{spec.name}.{scope_id}"
        assert layer.require_valid_group_name(group)
        assert len(group) < BaseChannelLayer.MAX_NAME_LENGTH


@pytest.mark.parametrize("stream", ["orders:", "orders:loc xyz", "orders:loc/1", "orders:" + "x" * 100, "orders:lé"])
def test_group_for_stream_refuses_what_channels_would_refuse(stream: str) -> None:
    with pytest.raises(ValueError):
        group_for_stream(stream)


def test_group_for_stream_refuses_a_trailing_newline() -> None:
    with pytest.raises(ValueError):
        group_for_stream("orders:loc-1\n")


def test_every_filter_has_a_sample() -> None:
    declared = {(spec.name, flt.param) for spec in CHANNELS for flt in (*spec.field_filters, *spec.event_name_filters)}
    assert declared == set(FIELD_FILTER_SAMPLES) | set(EVENT_NAME_FILTER_SAMPLES)


# --- The system check -------------------------------------------------------------------------------------------


def test_system_check_passes_on_the_registry() -> None:
    assert check_channel_registry() == []


def broken_registry_errors(monkeypatch: pytest.MonkeyPatch, *extra: ChannelSpec) -> set[str]:
    monkeypatch.setattr(realtime_checks, "CHANNELS", (*CHANNELS, *extra))
    return {error.id for error in check_channel_registry()}  # type: ignore[misc]


def test_system_check_catches_a_duplicate_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    assert broken_registry_errors(monkeypatch, CHANNELS[0]) == {"realtime.E001"}


def test_system_check_catches_a_bad_name_and_an_uncatalogued_permission(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = dataclasses.replace(CHANNELS[0], name="Bad Channel")
    assert broken_registry_errors(monkeypatch, broken) == {"realtime.E002", "realtime.E003", "realtime.E009"}


def test_system_check_catches_missing_events(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = dataclasses.replace(CHANNELS[0], name="orders", events=())
    monkeypatch.setattr(realtime_checks, "CHANNELS", (broken, *CHANNELS[1:]))
    assert {e.id for e in check_channel_registry()} == {"realtime.E004"}


def test_system_check_catches_params_that_do_not_fit_the_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = dataclasses.replace(CHANNELS[0], scope=Scope.USER, params=ChannelParams, field_filters=())
    broken_location = dataclasses.replace(CHANNELS[1], params=ChannelParams, field_filters=())
    monkeypatch.setattr(realtime_checks, "CHANNELS", (broken, broken_location, *CHANNELS[2:]))
    assert {e.id for e in check_channel_registry()} == {"realtime.E006"}


def test_system_check_catches_filters_on_unknown_params(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = dataclasses.replace(
        CHANNELS[0],
        params=OrdersParams,
        field_filters=(FieldFilter("statues", "status"),),
        event_name_filters=(EventNameFilter("types", "nothing."),),
    )
    monkeypatch.setattr(realtime_checks, "CHANNELS", (broken, *CHANNELS[1:]))
    assert {e.id for e in check_channel_registry()} == {"realtime.E007", "realtime.E008"}


# --- Live contract: allowed and refused subscribes, a filter test for each filter -------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("spec", CHANNEL_CASES)
async def test_channel_allows_an_authorized_subscriber(spec: ChannelSpec, token_for: Any, world: Any) -> None:
    async with open_client(token_for("john")) as client:
        reply = await client.subscribe(spec.name, base_params(spec), "req-ok")
        assert reply["success"] is True, reply
        assert reply["channel"] == spec.name
        await apublish(spec.name, spec.events[0], **publish_target(spec, world["john"].public_id), data={})
        event = await client.recv()
        assert event["subscription_id"] == reply["subscription_id"] and event["event"] == spec.events[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("spec", CHANNEL_CASES)
async def test_channel_refuses_another_organizations_user(spec: ChannelSpec, token_for: Any) -> None:
    params = {"user_id": "user-john"} if spec.scope is Scope.USER else {"location_id": LOCATION}
    async with open_client(token_for("olga")) as client:
        reply = await client.subscribe(spec.name, params, "req-no")
        assert reply == {
            "type": "error",
            "id": "req-no",
            "code": "unauthorized",
            "message": "Not authorized to subscribe to this channel",
            "channel": spec.name,
            "required_permission": spec.permission,
        }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("spec", CHANNEL_CASES)
async def test_channel_follows_the_role_of_a_location_member(spec: ChannelSpec, token_for: Any) -> None:
    server_grants = {
        code async for code in Role.objects.filter(name="server").values_list("permissions__codename", flat=True)
    }
    async with open_client(token_for("sarah")) as client:
        reply = await client.subscribe(spec.name, base_params(spec), "req")
    if spec.permission in server_grants:
        assert reply["type"] == "response" and reply["success"] is True, reply
    else:
        assert reply["code"] == "unauthorized" and reply["required_permission"] == spec.permission, reply


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("spec", CHANNEL_CASES)
async def test_channel_events_filter(spec: ChannelSpec, token_for: Any, world: Any) -> None:
    wanted, other = spec.events[1], spec.events[0]
    target = publish_target(spec, world["john"].public_id)
    async with open_client(token_for("john")) as client:
        reply = await client.subscribe(spec.name, {**base_params(spec), "events": [wanted]})
        assert reply["params"]["events"] == [wanted]
        await apublish(spec.name, other, **target, data={})
        await apublish(spec.name, wanted, **target, data={})
        assert (await client.recv())["event"] == wanted
        assert await client.nothing(0.05)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("spec", "flt"), FILTER_CASES)
async def test_channel_filter(spec: ChannelSpec, flt: FieldFilter | EventNameFilter, token_for: Any) -> None:
    key = (spec.name, flt.param)
    async with open_client(token_for("john")) as client:
        if isinstance(flt, FieldFilter):
            value, matching, other = FIELD_FILTER_SAMPLES[key]
            reply = await client.subscribe(spec.name, {**base_params(spec), flt.param: value})
            assert reply["success"] is True, reply
            await apublish(spec.name, spec.events[0], location_id=LOCATION, data={**other, "n": "other"})
            await apublish(spec.name, spec.events[0], location_id=LOCATION, data={"n": "missing field"})
            await apublish(spec.name, spec.events[0], location_id=LOCATION, data={**matching, "n": "match"})
            event = await client.recv()
            assert event["data"] == {**matching, "n": "match"}
        else:
            value, matching_event, other_event = EVENT_NAME_FILTER_SAMPLES[key]
            reply = await client.subscribe(spec.name, {**base_params(spec), flt.param: value})
            assert reply["success"] is True, reply
            await apublish(spec.name, other_event, location_id=LOCATION, data={})
            await apublish(spec.name, matching_event, location_id=LOCATION, data={})
            event = await client.recv()
            assert event["event"] == matching_event
        assert event["subscription_id"] == reply["subscription_id"]
        assert await client.nothing(0.05)
