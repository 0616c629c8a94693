"""The pure protocol: parsing, subscription preparation, matching, connection state, rate limiting. No database."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime import protocol
from realtime.errors import (
    ChannelNotFound,
    CloseCode,
    ErrorCode,
    InvalidMessage,
    InvalidParams,
    ProtocolError,
    SubscriptionLimit,
    SubscriptionNotFound,
    Unauthenticated,
    Unauthorized,
    UnknownType,
)
from realtime.limits import TokenBucket
from realtime.protocol import EventMatcher, parse_message, prepare_subscription
from realtime.registry import REGISTRY

# --- parse_message ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("not json", InvalidMessage, "Message is not valid JSON"),
        ("", InvalidMessage, "Message is not valid JSON"),
        ("[" * 100_000, InvalidMessage, "Message is not valid JSON"),
        ("[1, 2]", InvalidMessage, "Message must be a JSON object"),
        ('"subscribe"', InvalidMessage, "Message must be a JSON object"),
        ("null", InvalidMessage, "Message must be a JSON object"),
        ("{}", InvalidMessage, "Missing required field: type"),
        ('{"type": null}', InvalidMessage, "Missing required field: type"),
        ('{"type": 1}', InvalidMessage, "Field type must be a string"),
        ('{"type": "subscribez"}', UnknownType, "Unknown message type 'subscribez'"),
        ('{"type": "ping", "extra": 1}', InvalidMessage, "Unknown field: extra"),
        ('{"type": "subscribe"}', InvalidMessage, "Missing required field: channel"),
        (
            '{"type": "subscribe", "channel": 5}',
            InvalidMessage,
            "Invalid field channel: input should be a valid string",
        ),
        (
            '{"type": "subscribe", "channel": ""}',
            InvalidMessage,
            "Invalid field channel: string should have at least 1 character",
        ),
        (
            '{"type": "subscribe", "channel": "orders", "params": null}',
            InvalidMessage,
            "Invalid field params: input should be a valid dictionary",
        ),
        (
            '{"type": "subscribe", "channel": "orders", "params": []}',
            InvalidMessage,
            "Invalid field params: input should be a valid dictionary",
        ),
        ('{"type": "unsubscribe"}', InvalidMessage, "Missing required field: subscription_id"),
        (
            '{"type": "unsubscribe", "subscription_id": 7}',
            InvalidMessage,
            "Invalid field subscription_id: input should be a valid string",
        ),
    ],
)
def test_parse_message_errors(text: str, error: type[ProtocolError], message: str) -> None:
    with pytest.raises(error) as caught:
        parse_message(text)
    assert caught.value.message == message


def test_unknown_type_names_are_truncated_in_the_message() -> None:
    with pytest.raises(UnknownType) as caught:
        parse_message(json.dumps({"type": "x" * 500}))
    assert caught.value.message == f"Unknown message type '{'x' * 64}'"


@pytest.mark.parametrize("bad_id", [True, 1.5, "", "x" * 129, [], {}])
def test_request_id_must_be_a_short_string_or_an_integer(bad_id: Any) -> None:
    with pytest.raises(InvalidMessage):
        parse_message(json.dumps({"type": "ping", "id": bad_id}))


def test_wrong_typed_request_id_error_names_the_field() -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_message('{"type": "ping", "id": 1.5}')
    assert caught.value.message.startswith("Invalid field id:"), caught.value.message


def test_parse_every_message_type() -> None:
    commands = {
        "subscribe": {"channel": "orders", "params": {"location_id": "loc-xyz789"}},
        "unsubscribe": {"subscription_id": "sub-abc123"},
        "unsubscribe_all": {},
        "list_subscriptions": {},
        "ping": {},
        "presence_join": {"channel": "orders", "params": {"location_id": "loc-xyz789"}, "user_info": {"name": "S"}},
        "presence_leave": {"channel": "orders", "params": {"location_id": "loc-xyz789"}},
        "presence_list": {"channel": "orders", "params": {"location_id": "loc-xyz789"}},
        "authenticate": {"token": "abc"},
    }
    assert set(commands) == set(protocol.MESSAGE_TYPES)
    for message_type, fields in commands.items():
        command = parse_message(json.dumps({"type": message_type, "id": "req-1", **fields}))
        assert type(command) is protocol.MESSAGE_TYPES[message_type]
        assert command.id == "req-1"
        for name, value in fields.items():
            assert getattr(command, name) == value


def test_subscribe_defaults_params_to_empty_and_accepts_integer_ids() -> None:
    command = parse_message('{"type": "subscribe", "id": 7, "channel": "orders"}')
    assert isinstance(command, protocol.Subscribe)
    assert command.id == 7
    assert command.params == {}
    assert command.resume is None


def test_request_id_of_echoes_only_usable_ids() -> None:
    assert protocol.request_id_of({"id": "req-1"}) == "req-1"
    assert protocol.request_id_of({"id": 3}) == 3
    assert protocol.request_id_of({"id": True}) is None
    assert protocol.request_id_of({"id": ""}) is None
    assert protocol.request_id_of({"id": "x" * 129}) is None
    assert protocol.request_id_of(["id"]) is None


# --- Hypothesis: the parser only ever answers with protocol errors ----------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
field_names = st.sampled_from(
    ["type", "id", "channel", "params", "subscription_id", "user_info", "token", "resume", "seq", "epoch", "x"]
)
message_types = st.sampled_from([*protocol.MESSAGE_TYPES, "nope", ""]) | st.text(max_size=5) | json_values
message_like = st.fixed_dictionaries({"type": message_types}, optional={"id": json_values}).flatmap(
    lambda base: st.dictionaries(field_names, json_values, max_size=5).map(lambda extra: {**extra, **base})
)


def parse_or_protocol_error(text: str) -> None:
    try:
        command = parse_message(text)
    except ProtocolError as exc:
        frame = exc.as_frame(protocol.request_id_of(None))
        assert frame["type"] == "error" and frame["code"] in set(ErrorCode)
        json.dumps(frame)  # every error frame is encodable
    else:
        assert type(command) in protocol.MESSAGE_TYPES.values()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_parse_message_on_arbitrary_text_raises_only_protocol_errors(text: str) -> None:
    parse_or_protocol_error(text)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_parse_message_on_arbitrary_json_raises_only_protocol_errors(value: Any) -> None:
    parse_or_protocol_error(json.dumps(value))


@settings(max_examples=200, deadline=None)
@given(message_like)
def test_parse_message_on_message_like_objects_raises_only_protocol_errors(value: dict[str, Any]) -> None:
    parse_or_protocol_error(json.dumps(value))


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(sorted(REGISTRY)),
    st.dictionaries(
        st.sampled_from(
            [
                "location_id",
                "location_ids",
                "events",
                "types",
                "statuses",
                "station",
                "alert_types",
                "metrics",
                "platforms",
                "lane",
                "user_id",
                "other",
            ]
        ),
        json_values,
        max_size=4,
    ),
)
def test_prepare_subscription_on_arbitrary_params_raises_only_protocol_errors(
    channel: str, params: dict[str, Any]
) -> None:
    try:
        request = prepare_subscription(channel, params, user_id="user-x")
    except ProtocolError as exc:
        assert exc.code is ErrorCode.INVALID_PARAMS
        assert exc.details == {"channel": channel}
    else:
        assert request.scope_ids and all(stream.startswith(f"{channel}:") for stream in request.streams)


# --- prepare_subscription -------------------------------------------------------------------------------------


def test_prepare_subscription_echoes_only_the_given_params() -> None:
    request = prepare_subscription("orders", {"location_id": "loc-xyz789"}, user_id="user-sarah")
    assert request.params == {"location_id": "loc-xyz789"}
    assert request.scope_ids == ("loc-xyz789",)
    assert request.streams == ("orders:loc-xyz789",)
    assert request.matcher == EventMatcher()


def test_prepare_subscription_removes_duplicates_keeping_order() -> None:
    request = prepare_subscription(
        "orders",
        {
            "location_ids": ["loc-b", "loc-a", "loc-b"],
            "statuses": ["open", "paid", "open"],
            "events": ["order.paid", "order.created", "order.paid"],
        },
        user_id="user-x",
    )
    assert request.params == {
        "location_ids": ["loc-b", "loc-a"],
        "statuses": ["open", "paid"],
        "events": ["order.paid", "order.created"],
    }
    assert request.scope_ids == ("loc-b", "loc-a")
    assert request.matcher == EventMatcher(
        frozenset({"order.paid", "order.created"}), (("status", frozenset({"open", "paid"})),)
    )


def test_notifications_default_to_the_callers_own_user_id() -> None:
    own = prepare_subscription("notifications", {}, user_id="user-sarah")
    assert own.params == {"user_id": "user-sarah"}
    assert own.streams == ("notifications:user-sarah",)
    other = prepare_subscription("notifications", {"user_id": "user-john"}, user_id="user-sarah")
    assert other.scope_ids == ("user-john",)


def test_alert_types_select_inventory_events_by_name() -> None:
    request = prepare_subscription(
        "inventory", {"location_id": "loc-1", "alert_types": ["low_stock"]}, user_id="user-x"
    )
    assert request.matcher.matches("inventory.low_stock", {})
    assert not request.matcher.matches("inventory.out_of_stock", {})
    assert not request.matcher.matches("inventory.received", {})
    both = prepare_subscription(
        "inventory",
        {"location_id": "loc-1", "alert_types": ["low_stock", "out_of_stock"], "events": ["inventory.out_of_stock"]},
        user_id="user-x",
    )
    assert both.matcher.events == frozenset({"inventory.out_of_stock"})


def test_scalar_filters_become_one_value_sets() -> None:
    kds = prepare_subscription("kds", {"location_id": "loc-1", "station": "grill"}, user_id="user-x")
    assert kds.matcher.fields == (("station", frozenset({"grill"})),)
    voice = prepare_subscription("voice", {"location_id": "loc-1", "lane": 2}, user_id="user-x")
    assert voice.matcher.fields == (("lane", frozenset({2})),)
    assert voice.params == {"location_id": "loc-1", "lane": 2}


def test_unknown_channel() -> None:
    with pytest.raises(ChannelNotFound) as caught:
        prepare_subscription("invalid", {}, user_id="user-x")
    assert caught.value.as_frame("req-001") == {
        "type": "error",
        "id": "req-001",
        "code": "channel_not_found",
        "message": "Channel 'invalid' does not exist",
    }


@pytest.mark.parametrize(
    ("channel", "params", "message"),
    [
        ("orders", {}, "Missing required parameter: location_id"),
        ("orders", {"location_id": "loc-1", "statues": ["open"]}, "Unknown parameter: statues"),
        (
            "orders",
            {"location_id": "loc-1", "location_ids": ["loc-2"]},
            "Give either location_id or location_ids, not both",
        ),
        (
            "orders",
            {"location_ids": []},
            "Invalid parameter location_ids: list should have at least 1 item after validation, not 0",
        ),
        ("orders", {"location_id": "loc 1"}, None),
        ("orders", {"location_id": "loc-1\n"}, None),
        ("orders", {"location_id": 5}, None),
        ("orders", {"location_ids": "loc-1"}, None),
        ("orders", {"location_ids": ["loc-1"] * 51}, None),
        ("orders", {"location_id": "loc-1", "statuses": ["opened"]}, None),
        ("orders", {"location_id": "loc-1", "statuses": "open"}, None),
        ("orders", {"location_id": "loc-1", "statuses": []}, None),
        ("orders", {"location_id": "loc-1", "types": ["eat_in"]}, None),
        (
            "orders",
            {"location_id": "loc-1", "events": ["kds.ticket.created"]},
            "Invalid value for parameter events: 'kds.ticket.created' is not an event of channel 'orders' (expected "
            "one of: order.created, order.updated, order.status_changed, order.paid, order.closed)",
        ),
        ("kds", {"location_id": "loc-1", "station": ""}, None),
        ("kds", {"location_id": "loc-1", "station": ["grill"]}, None),
        ("inventory", {"location_id": "loc-1", "alert_types": ["received"]}, None),
        ("tables", {"location_id": "loc-1", "statuses": ["open"]}, None),
        ("analytics", {"location_id": "loc-1", "metrics": ["Revenue!"]}, None),
        ("delivery", {"location_id": "loc-1", "platforms": [1]}, None),
        ("voice", {"location_id": "loc-1", "lane": 0}, "Invalid parameter lane: input should be greater than 0"),
        ("voice", {"location_id": "loc-1", "lane": -1}, None),
        ("voice", {"location_id": "loc-1", "lane": True}, "Invalid parameter lane: input should be a valid integer"),
        ("voice", {"location_id": "loc-1", "lane": "1"}, None),
        ("voice", {"location_id": "loc-1", "lane": 1.0}, None),
        ("notifications", {"location_id": "loc-1"}, "Unknown parameter: location_id"),
        ("notifications", {"user_id": "bad id"}, None),
    ],
)
def test_invalid_params(channel: str, params: dict[str, Any], message: str | None) -> None:
    with pytest.raises(InvalidParams) as caught:
        prepare_subscription(channel, params, user_id="user-x")
    assert caught.value.details == {"channel": channel}
    if message is not None:
        assert caught.value.message == message
    else:
        assert caught.value.message  # a sentence naming the problem
    frame = caught.value.as_frame("req-001")
    assert frame["code"] == "invalid_params" and frame["channel"] == channel and frame["id"] == "req-001"


# --- EventMatcher -------------------------------------------------------------------------------------------------


def test_matcher_without_filters_matches_everything() -> None:
    assert EventMatcher().matches("order.created", {})
    assert EventMatcher().matches("anything", {"status": None})


def test_matcher_event_names() -> None:
    matcher = EventMatcher(events=frozenset({"order.paid"}))
    assert matcher.matches("order.paid", {})
    assert not matcher.matches("order.created", {})


def test_matcher_fields_all_must_match() -> None:
    matcher = EventMatcher(fields=(("type", frozenset({"takeout"})), ("status", frozenset({"open", "paid"}))))
    assert matcher.matches("order.created", {"type": "takeout", "status": "open"})
    assert matcher.matches("order.created", {"type": "takeout", "status": "paid"})
    assert not matcher.matches("order.created", {"type": "dine_in", "status": "open"})
    assert not matcher.matches("order.created", {"type": "takeout", "status": "closed"})
    assert not matcher.matches("order.created", {"type": "takeout"})  # a filtered field that is absent never matches
    assert not matcher.matches("order.created", {"type": "takeout", "status": None})


def test_matcher_events_and_fields_combine() -> None:
    matcher = EventMatcher(frozenset({"order.paid"}), (("type", frozenset({"takeout"})),))
    assert matcher.matches("order.paid", {"type": "takeout"})
    assert not matcher.matches("order.created", {"type": "takeout"})
    assert not matcher.matches("order.paid", {"type": "dine_in"})


# --- ConnectionState ------------------------------------------------------------------------------------------


def request(location: str = "loc-1", channel: str = "orders", **params: Any) -> protocol.SubscriptionRequest:
    return prepare_subscription(channel, {"location_id": location, **params}, user_id="user-x")


def test_state_add_joins_each_group_once_and_remove_leaves_it_with_the_last_subscription() -> None:
    state = protocol.ConnectionState(max_subscriptions=10)
    first, join_first = state.add(request())
    second, join_second = state.add(request(statuses=["open"]))
    assert join_first == ["rt.orders.loc-1"]
    assert join_second == []
    assert first.id != second.id and first.id.startswith("sub-") and second.id.startswith("sub-")
    assert state.by_group["rt.orders.loc-1"] == [first, second]

    removed, leave = state.remove(first.id)
    assert removed is first and leave == []
    removed, leave = state.remove(second.id)
    assert removed is second and leave == ["rt.orders.loc-1"]
    assert state.by_group == {} and state.subscriptions == {}


def test_state_multi_location_subscription_shares_groups_with_others() -> None:
    state = protocol.ConnectionState(max_subscriptions=10)
    multi, joined = state.add(prepare_subscription("orders", {"location_ids": ["loc-1", "loc-2"]}, user_id="user-x"))
    assert joined == ["rt.orders.loc-1", "rt.orders.loc-2"]
    single, joined = state.add(request("loc-2"))
    assert joined == []
    _, left = state.remove(multi.id)
    assert left == ["rt.orders.loc-1"]
    _, left = state.remove(single.id)
    assert left == ["rt.orders.loc-2"]


def test_state_remove_unknown_subscription() -> None:
    state = protocol.ConnectionState(max_subscriptions=10)
    with pytest.raises(SubscriptionNotFound) as caught:
        state.remove("sub-nope")
    assert caught.value.as_frame("r") == {
        "type": "error",
        "id": "r",
        "code": "subscription_not_found",
        "message": "Subscription 'sub-nope' does not exist",
        "subscription_id": "sub-nope",
    }


def test_state_limit() -> None:
    state = protocol.ConnectionState(max_subscriptions=2)
    state.add(request("loc-1"))
    state.add(request("loc-2"))
    with pytest.raises(SubscriptionLimit) as caught:
        state.add(request("loc-3"))
    assert caught.value.as_frame("req-001") == {
        "type": "error",
        "id": "req-001",
        "code": "subscription_limit",
        "message": "Maximum subscriptions reached",
        "current": 2,
        "limit": 2,
    }
    assert len(state.subscriptions) == 2
    assert "rt.orders.loc-3" not in state.by_group


def test_state_remove_all_and_listing_in_creation_order() -> None:
    state = protocol.ConnectionState(max_subscriptions=10)
    subs = [state.add(request(f"loc-{n}"))[0] for n in range(3)]
    listing = state.listing()
    assert [entry["id"] for entry in listing] == [s.id for s in subs]
    assert listing[0] == {
        "id": subs[0].id,
        "channel": "orders",
        "params": {"location_id": "loc-0"},
        "created_at": subs[0].created_at,
    }
    assert listing[0]["created_at"].endswith("Z")
    removed, groups = state.remove_all()
    assert removed == subs
    assert sorted(groups) == ["rt.orders.loc-0", "rt.orders.loc-1", "rt.orders.loc-2"]
    assert state.listing() == [] and state.by_group == {}


def test_event_frame_prefix_makes_valid_json_with_a_tail() -> None:
    prefix = protocol.event_frame_prefix('sub-"x')
    frame = json.loads(prefix + '"event":"order.created"}')
    assert frame == {"type": "event", "subscription_id": 'sub-"x', "event": "order.created"}


# --- Frames and errors --------------------------------------------------------------------------------------------


def test_response_and_with_id_frames() -> None:
    assert protocol.response("req-1", subscription_id="sub-1") == {
        "type": "response",
        "id": "req-1",
        "success": True,
        "subscription_id": "sub-1",
    }
    assert protocol.response(None, unsubscribed=2) == {"type": "response", "success": True, "unsubscribed": 2}
    assert protocol.with_id("pong", None, server_time="t") == {"type": "pong", "server_time": "t"}


def test_error_frames_carry_their_details_and_codes() -> None:
    assert Unauthorized("orders", "orders.read").as_frame("req-001") == {
        "type": "error",
        "id": "req-001",
        "code": "unauthorized",
        "message": "Not authorized to subscribe to this channel",
        "channel": "orders",
        "required_permission": "orders.read",
    }
    assert InvalidParams("Missing required parameter: location_id", channel="orders").as_frame("req-001") == {
        "type": "error",
        "id": "req-001",
        "code": "invalid_params",
        "message": "Missing required parameter: location_id",
        "channel": "orders",
    }
    assert Unauthenticated().close_code == CloseCode.UNAUTHENTICATED == 4401
    assert InvalidMessage().close_code is None
    assert all(4000 <= code < 5000 or code < 1100 for code in CloseCode)


# --- TokenBucket --------------------------------------------------------------------------------------------------


def test_token_bucket_allows_a_burst_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate_per_second=1.0, burst=2)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(1.0)
    assert bucket.take(0.5) == pytest.approx(0.5)
    assert bucket.take(1.0) == 0.0
    assert bucket.take(1.0) == pytest.approx(1.0)


def test_token_bucket_never_holds_more_than_its_burst() -> None:
    bucket = TokenBucket(rate_per_second=10.0, burst=3)
    bucket.take(0.0)
    allowed = [bucket.take(1000.0) for _ in range(4)]
    assert allowed[:3] == [0.0, 0.0, 0.0]
    assert allowed[3] == pytest.approx(0.1)


def test_token_bucket_with_zero_rate_never_refills() -> None:
    bucket = TokenBucket(rate_per_second=0.0, burst=1)
    assert bucket.take(0.0) == 0.0
    assert math.isinf(bucket.take(1e9))


def test_a_parse_error_carries_the_request_id_and_type_the_consumer_answers_and_counts() -> None:
    with pytest.raises(InvalidMessage) as invalid:
        parse_message('{"type": "subscribe", "id": "req-9"}')
    assert (invalid.value.request_id, invalid.value.message_type) == ("req-9", "subscribe")
    with pytest.raises(InvalidMessage) as not_json:
        parse_message("{")
    assert (not_json.value.request_id, not_json.value.message_type) == (None, None)
