"""The delivery cursor and replay, without ASGI: which live event is sent, dropped, held or waits for a gap fill."""

from __future__ import annotations

import json
from typing import Any

import pytest

from realtime import delivery, protocol
from realtime.delivery import Cursor, Verdict
from realtime.publishing import build_event, hub_message
from realtime.registry import REGISTRY
from realtime.stores.history import Replay, record_json
from realtime.streams import StreamPosition

STREAM = "orders:loc-1"
ORDERS = REGISTRY["orders"]


def message(seq: int, epoch: str = "e1", event: str = "order.created", **data: Any) -> dict[str, Any]:
    record = build_event(ORDERS, event, "loc-1", data)
    return hub_message(STREAM, seq, epoch, record, protocol.envelope_tail("orders", STREAM, seq, epoch, record))


def subscription(**params: Any) -> protocol.Subscription:
    state = protocol.ConnectionState(max_subscriptions=10)
    request = protocol.prepare_subscription("orders", {"location_id": "loc-1", **params}, user_id="user-x")
    return state.add(request)[0]


def replay(epoch: str, last_seq: int, seqs: list[int], *, covered: bool = True, **data: Any) -> Replay:
    events = [(seq, record_json(build_event(ORDERS, "order.created", "loc-1", {"n": seq, **data}))) for seq in seqs]
    return Replay(epoch, last_seq, events, covered)


def test_a_first_event_is_delivered_and_moves_the_cursor() -> None:
    cursor = Cursor()
    assert cursor.offer(message(5)) is Verdict.DELIVER
    assert cursor.positions[STREAM] == StreamPosition(5, "e1")


def test_the_next_seq_is_delivered_and_a_seen_one_dropped() -> None:
    cursor = Cursor({STREAM: StreamPosition(3, "e1")})
    assert cursor.offer(message(3)) is Verdict.DROP
    assert cursor.offer(message(2)) is Verdict.DROP
    assert cursor.offer(message(4)) is Verdict.DELIVER
    assert cursor.positions[STREAM] == StreamPosition(4, "e1")


def test_a_seq_that_overtakes_opens_a_gap_and_holds_what_follows() -> None:
    cursor = Cursor({STREAM: StreamPosition(3, "e1")})
    five, six = message(5), message(6)
    assert cursor.offer(five) is Verdict.FILL_GAP
    assert cursor.positions[STREAM] == StreamPosition(3, "e1")  # the fill starts where the cursor stood
    assert cursor.offer(six) is Verdict.HOLD
    assert cursor.release() == [five, six]
    assert cursor.pending is None


def test_another_epoch_starts_over_and_an_empty_one_is_continued_by_any() -> None:
    cursor = Cursor({STREAM: StreamPosition(40, "old")})
    assert cursor.offer(message(1, "new")) is Verdict.DELIVER
    assert cursor.positions[STREAM] == StreamPosition(1, "new")
    fresh = Cursor({STREAM: StreamPosition(0, "")})  # the stream had no history when the subscription started
    assert fresh.offer(message(3, "e2")) is Verdict.FILL_GAP
    assert Cursor({STREAM: StreamPosition(0, "")}).offer(message(1, "e2")) is Verdict.DELIVER


def test_held_events_wait_for_release_in_arrival_order() -> None:
    cursor = Cursor()
    cursor.hold()
    first, second = message(1), message(2)
    assert cursor.offer(first) is Verdict.HOLD
    assert cursor.offer(second) is Verdict.HOLD
    assert cursor.positions == {}
    assert cursor.release() == [first, second]
    assert cursor.release() == []


def test_wire_positions_omit_an_empty_epoch() -> None:
    cursor = Cursor({STREAM: StreamPosition(7, "e1"), "orders:loc-2": StreamPosition(0, "")})
    assert cursor.wire_positions() == {STREAM: {"seq": 7, "epoch": "e1"}, "orders:loc-2": {"seq": 0}}


def test_a_covered_replay_frames_matching_events_and_moves_past_all_of_them() -> None:
    sub = subscription(events=["order.created"])
    stored = replay("e1", 4, [3, 4])
    stored.events.append((5, record_json(build_event(ORDERS, "order.paid", "loc-1", {"n": 5}))))
    frames = delivery.start_replay(sub, STREAM, 2, Replay("e1", 5, stored.events, True))
    assert [json.loads(f)["seq"] for f in frames] == [3, 4]
    first = json.loads(frames[0])
    assert first["type"] == "event" and first["subscription_id"] == sub.id and first["data"] == {"n": 3}
    assert sub.cursor.positions[STREAM] == StreamPosition(5, "e1")  # past the filtered-out order.paid as well


def test_an_uncovered_replay_starts_where_the_stream_stands() -> None:
    sub = subscription()
    assert delivery.start_replay(sub, STREAM, 2, replay("e2", 90, [], covered=False)) == []
    assert sub.cursor.positions[STREAM] == StreamPosition(90, "e2")


def test_a_gap_fill_skips_what_was_sent_meanwhile() -> None:
    sub = subscription()
    sub.cursor.positions[STREAM] = StreamPosition(4, "e1")
    frames = delivery.fill_gap(sub, STREAM, replay("e1", 6, [3, 4, 5, 6]))
    assert [json.loads(f)["seq"] for f in frames] == [5, 6]
    assert sub.cursor.positions[STREAM] == StreamPosition(6, "e1")


@pytest.mark.parametrize("stored", [None, replay("e1", 9, [], covered=False)])
def test_a_gap_history_cannot_fill_is_accepted_at_the_first_held_event(stored: Replay | None) -> None:
    sub = subscription()
    sub.cursor.positions[STREAM] = StreamPosition(3, "e1")
    six = message(6)
    assert sub.cursor.offer(six) is Verdict.FILL_GAP
    assert delivery.fill_gap(sub, STREAM, stored) == []
    assert sub.cursor.positions[STREAM] == StreamPosition(5, "e1")
    assert [sub.cursor.offer(m) for m in sub.cursor.release()] == [Verdict.DELIVER]


def test_resume_outcome_answers_false_for_a_stream_outside_the_subscription() -> None:
    assert delivery.resume_outcome(["orders:loc-1", "orders:loc-9"], {"orders:loc-1": True}) == {
        "orders:loc-1": True,
        "orders:loc-9": False,
    }


def test_the_subscribe_response_reports_positions_only_when_resuming() -> None:
    sub = subscription()
    sub.cursor.positions[STREAM] = StreamPosition(2, "e1")
    plain = protocol.subscribed("r1", sub, None)
    assert "resumed" not in plain and "positions" not in plain
    resumed = protocol.subscribed("r1", sub, {STREAM: True})
    assert resumed["resumed"] == {STREAM: True}
    assert resumed["positions"] == {STREAM: {"seq": 2, "epoch": "e1"}}
    assert list(resumed)[:6] == ["type", "id", "success", "subscription_id", "channel", "params"]
