"""Channel-layer group names, built in one place.

Channels allows ASCII letters, digits, hyphens, underscores and periods in group names, shorter than 100
characters. Streams (``orders:loc-xyz789``) are the wire names; groups are their layer-side twins
(``rt.orders.loc-xyz789``). Public ids are validated against ``registry.PUBLIC_ID_PATTERN``, which keeps every
group name inside those rules.
"""

from __future__ import annotations

import re

GROUP_NAME_MAX_LENGTH = 99
_VALID_GROUP = re.compile(r"^[A-Za-z0-9._-]{1,99}$")
CONTROL_GROUP = "rt.control"


def group_for_stream(stream: str) -> str:
    """The channel-layer group that carries ``stream``'s events."""
    channel, _, scope_id = stream.partition(":")
    name = f"rt.{channel}.{scope_id}"
    if not scope_id or not _VALID_GROUP.fullmatch(name):
        raise ValueError(f"Stream {stream!r} does not map to a valid group name")
    return name
