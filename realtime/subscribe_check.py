"""The gateway's answer to a subscribe, asked without a connection: "may user U subscribe to channel C here?".

The admin asks this before a screen is mounted. It runs the subscribe path of the consumer (``realtime.consumer``,
``handle_subscribe``) minus what belongs to one connection (its subscription count, history, groups): the same
``protocol.prepare_subscription`` and the same ``authorization.authorize``, so the answer and its
``required_permission`` are the gateway's, not a second opinion. A user the gateway would not even let connect
(inactive) gets the connection's answer, ``unauthenticated``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from accounts.models import User
from realtime import protocol
from realtime.authorization import authorize
from realtime.errors import ProtocolError, Unauthenticated


@dataclass(frozen=True)
class SubscribeAnswer:
    """What the gateway would send (a successful response's fields, or the error frame) and what it rested on."""

    allowed: bool
    frame: dict[str, Any]
    required_permission: str | None  # the channel's permission; None when the request never got that far
    streams: tuple[str, ...] = ()


def check_subscribe(user: User, channel: str, params: dict[str, Any]) -> SubscribeAnswer:
    """Answer a subscribe of ``channel`` with ``params`` by ``user`` as a fresh connection of theirs would."""
    try:
        if not user.is_active:
            raise Unauthenticated("The token's user does not exist or is inactive")
        request = protocol.prepare_subscription(channel, params, user_id=user.public_id)
        authorize(user, request.spec, request.scope_ids)
    except ProtocolError as error:
        frame = error.as_frame()
        return SubscribeAnswer(False, frame, frame.get("required_permission"))
    frame = {"type": "response", "success": True, "channel": request.spec.name, "params": request.params}
    return SubscribeAnswer(True, frame, request.spec.permission, request.streams)
