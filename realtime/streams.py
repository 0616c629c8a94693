"""Stream names, stream positions and channel-layer group names, built and parsed in one place.

A stream (``orders:loc-xyz789``) is a channel plus the location or user its events belong to: the wire name of
one ordered run of events. Its layer-side twin is a group (``rt.orders.loc-xyz789``): Channels allows ASCII letters,
digits, hyphens, underscores and periods in group names, shorter than 100 characters. Public ids are validated
against ``registry.PUBLIC_ID_PATTERN``, which keeps every group name inside those rules.
"""

from __future__ import annotations

import re
from typing import NamedTuple

GROUP_NAME_MAX_LENGTH = 99
_VALID_GROUP = re.compile(r"^[A-Za-z0-9._-]{1,99}$")
CONTROL_GROUP = "rt.control"
STREAM_SEPARATOR = ":"


class StreamPosition(NamedTuple):
    """Where a stream stands: its last ``seq`` within ``epoch``, one unbroken run of sequence numbers.

    An empty epoch is a stream that had no history yet: any epoch continues it. Immutable like a frozen dataclass,
    but a NamedTuple: one is built per delivered event, and a frozen dataclass costs about twice as much to build.
    """

    seq: int
    epoch: str

    def as_wire(self) -> dict[str, int | str]:
        """The position as a client sends it back in ``resume`` (no epoch when there is none yet)."""
        return {"seq": self.seq, "epoch": self.epoch} if self.epoch else {"seq": self.seq}


def stream_name(channel: str, scope_id: str) -> str:
    """The stream of ``channel``'s events at one location (or for one user)."""
    return f"{channel}{STREAM_SEPARATOR}{scope_id}"


def split_stream(stream: str) -> tuple[str, str]:
    """``(channel, scope id)`` of a stream name; the scope id is empty when the name has none."""
    channel, _, scope_id = stream.partition(STREAM_SEPARATOR)
    return channel, scope_id


def channel_of(stream: str) -> str:
    return split_stream(stream)[0]


def scope_of(stream: str) -> str:
    """The location (or user) id a stream belongs to."""
    return split_stream(stream)[1]


def group_for_stream(stream: str) -> str:
    """The channel-layer group that carries ``stream``'s events."""
    channel, scope_id = split_stream(stream)
    name = f"rt.{channel}.{scope_id}"
    if not scope_id or not _VALID_GROUP.fullmatch(name):
        raise ValueError(f"Stream {stream!r} does not map to a valid group name")
    return name
