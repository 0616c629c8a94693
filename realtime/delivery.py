"""Delivery decisions, without I/O: which live event a subscription sends, drops, holds or must fill a gap before.

Each subscription carries a ``Cursor``: where it stands on each of its streams and the live events it holds back
while a subscribe response, a replay or a gap fill is on its way. The consumer offers it every live event and does
what the ``Verdict`` says; replays from history (``realtime.stores.history.Replay``) go through ``replay_frames`` so
replay and live feed meet without a gap or a duplicate. Tested in ``tests/realtime/test_delivery.py`` without ASGI.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from realtime.streams import StreamPosition

if TYPE_CHECKING:
    from realtime.protocol import Subscription
    from realtime.stores.history import Replay


# ``StreamPosition(seq, epoch)`` without the NamedTuple's Python-level ``__new__``: this runs once per delivered event.
_new_position = tuple.__new__


class Verdict(Enum):
    """What to do with one live event."""

    DELIVER = "deliver"  # send it: the cursor now stands at its position
    DROP = "drop"  # already sent: replay and live feed overlap at the seam
    HOLD = "hold"  # held back behind a response, a replay or a gap fill; released in order afterwards
    FILL_GAP = "fill_gap"  # a later seq overtook an earlier one (two publishers racing): fetch the missing ones first


# Module constants: an Enum member lookup costs more than a global read on the per-event path.
DELIVER, DROP, HOLD, FILL_GAP = Verdict.DELIVER, Verdict.DROP, Verdict.HOLD, Verdict.FILL_GAP


@dataclass(slots=True)
class Cursor:
    """Where one subscription stands on each of its streams, and the live events it holds back meanwhile."""

    positions: dict[str, StreamPosition] = field(default_factory=dict)
    pending: list[dict[str, Any]] | None = None

    def hold(self) -> None:
        """Hold live events back until ``release`` (the subscribe response must go first)."""
        self.pending = []

    def offer(self, message: dict[str, Any]) -> Verdict:
        """Judge a hub message (``stream``, ``seq``, ``epoch``): a delivered one moves the cursor, a gap holds it."""
        if self.pending is not None:
            self.pending.append(message)
            return HOLD
        stream = message["stream"]
        seq = message["seq"]
        position = self.positions.get(stream)
        # An empty epoch is a stream that had no history yet when the subscription started: any epoch continues it.
        if position is not None and position.epoch in (message["epoch"], ""):
            if seq <= position.seq:
                return DROP
            if seq > position.seq + 1:
                self.pending = [message]
                return FILL_GAP
        self.positions[stream] = _new_position(StreamPosition, (seq, message["epoch"]))
        return DELIVER

    def release(self) -> list[dict[str, Any]]:
        """Stop holding; return the held events, in arrival order, to be offered again."""
        pending, self.pending = self.pending or [], None
        return pending

    def accept_gap(self, stream: str) -> None:
        """History cannot fill the gap: continue from the first held event rather than stall the stream."""
        if self.pending:
            first = self.pending[0]
            self.positions[stream] = StreamPosition(first["seq"] - 1, first["epoch"])

    def wire_positions(self) -> dict[str, dict[str, int | str]]:
        """Where each stream stands, as the subscribe response reports it for a later ``resume``."""
        return {stream: position.as_wire() for stream, position in self.positions.items()}


def replay_frames(subscription: Subscription, stream: str, replay: Replay) -> list[str]:
    """The frames of the replayed events the subscription has not been sent yet, in order; the cursor moves past
    every one, matched by the subscription's filters or not."""
    positions = subscription.cursor.positions
    frames: list[str] = []
    for seq, raw in replay.events:
        current = positions.get(stream)
        if current is not None and current.epoch == replay.epoch and seq <= current.seq:
            continue
        record = json.loads(raw)
        if subscription.matcher.matches(record["event"], record["fields"]):
            frames.append(subscription.event_frame(stream, seq, replay.epoch, record))
        positions[stream] = StreamPosition(seq, replay.epoch)
    return frames


def start_replay(subscription: Subscription, stream: str, after: int, replay: Replay) -> list[str]:
    """Place the cursor where a new subscription's feed of ``stream`` starts; return the frames to replay first.

    A covered replay starts after the client's position; an uncovered one (too old, another epoch) starts where the
    stream stands now, so the live feed continues without a gap fill for what history no longer holds.
    """
    start = after if replay.covered else replay.last_seq
    subscription.cursor.positions[stream] = StreamPosition(start, replay.epoch)
    return replay_frames(subscription, stream, replay)


def fill_gap(subscription: Subscription, stream: str, replay: Replay | None) -> list[str]:
    """The frames that fill a gap from history (``None``: history failed); an unfillable gap is accepted."""
    if replay is not None and replay.covered:
        return replay_frames(subscription, stream, replay)
    subscription.cursor.accept_gap(stream)
    return []


def resume_outcome(resume: Iterable[str], covered: Mapping[str, bool]) -> dict[str, bool]:
    """Whether each stream the client asked to resume was replayed in full.

    A stream outside the subscription is answered false: nothing replayed, nothing leaked.
    """
    return {stream: covered.get(stream, False) for stream in resume}
