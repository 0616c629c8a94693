"""Acknowledged KDS tickets across two real gateway processes on one Redis and PostgreSQL (issue 16).

One decision per ticket per step: redeliveries reach every ack screen once per step whichever process claimed it,
each unacknowledged ticket escalates exactly once (also when a process is SIGKILLed midway), an ack on one process
stops redelivery on both, and a gateway restart loses nothing (the state is in Redis).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from tests.support.processes import Gateway
from tests.support.rest import http_json, login
from tests.support.wsclient import WsClient

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
AT = "loc-xyz789"
TIMEOUT_S = 1.0
MAX_REDELIVERIES = 2
SHORT_ACKS = {
    "REALTIME_KDS_ACK_TIMEOUT_SECONDS": str(TIMEOUT_S),
    "REALTIME_KDS_ACK_MAX_REDELIVERIES": str(MAX_REDELIVERIES),
    "REALTIME_KDS_ACK_SWEEP_SECONDS": "0.1",
}
ESCALATION_AFTER_S = TIMEOUT_S * (MAX_REDELIVERIES + 1)


def publish_ticket(gateway: Gateway, token: str, ticket_id: str, station: str = "grill") -> None:
    body = {
        "channel": "kds",
        "event": "kds.ticket.created",
        "location_id": AT,
        "data": {"ticket_id": ticket_id, "station": station, "items": [], "status": "new"},
    }
    code, reply = http_json("POST", f"{gateway.http}/v1/events", body, token=token)
    assert code == 202, reply


async def ack_screen(gateway: Gateway) -> tuple[WsClient, str]:
    screen = await WsClient.open(gateway.ws, login(gateway, "kim"))
    reply = await screen.subscribe("kds", {"location_id": AT, "ack": True})
    assert reply["success"] is True, reply
    return screen, reply["subscription_id"]


async def alerts_for(gateway: Gateway) -> WsClient:
    john = await WsClient.open(gateway.ws, login(gateway, "john"))
    reply = await john.subscribe("notifications", {"events": ["kds.ticket_unacknowledged"]})
    assert reply["success"] is True, reply
    return john


async def collect(client: WsClient, frame_type: str, seconds: float) -> list[dict[str, Any]]:
    """Every frame of a type that arrives within ``seconds``."""
    found = [f for f in client.backlog if f.get("type") == frame_type]
    client.backlog = [f for f in client.backlog if f.get("type") != frame_type]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            frame = await client.recv(left)
        except TimeoutError:
            break
        if frame.get("type") == frame_type:
            found.append(frame)
    return found


async def test_each_unacked_ticket_is_redelivered_once_per_step_and_escalated_once(gateways, shared_redis):
    a = gateways(shared_redis, **SHORT_ACKS)
    b = gateways(shared_redis, **SHORT_ACKS)
    screens = [await ack_screen(a), await ack_screen(b)]
    john = await alerts_for(a)
    token = login(a, "john")
    tickets = [f"tkt-e2e-{i}" for i in range(6)]
    for i, ticket in enumerate(tickets):
        publish_ticket(a if i % 2 else b, token, ticket)

    alerts = await collect(john, "event", ESCALATION_AFTER_S + 3)
    assert Counter(alert["data"]["ticket_id"] for alert in alerts) == Counter(tickets)  # one per ticket
    for alert in alerts:
        assert alert["event"] == "kds.ticket_unacknowledged" and alert["data"]["location_id"] == AT
        assert alert["data"]["age_seconds"] >= ESCALATION_AFTER_S - 0.5
    for screen, subscription_id in screens:
        events = await collect(screen, "event", 0.5)
        assert {e["subscription_id"] for e in events} == {subscription_id}
        steps = Counter((e["data"]["ticket_id"], e.get("redelivery", 0)) for e in events)
        assert steps == Counter({(t, n): 1 for t in tickets for n in range(MAX_REDELIVERIES + 1)})
    assert await collect(john, "event", TIMEOUT_S * 2) == []  # and nothing after
    for client in (john, *(s for s, _ in screens)):
        await client.close()


async def test_one_escalation_per_ticket_when_a_process_is_killed_midway(gateways, shared_redis):
    a = gateways(shared_redis, **SHORT_ACKS)
    doomed = gateways(shared_redis, **SHORT_ACKS)
    screen, subscription_id = await ack_screen(a)
    john = await alerts_for(a)
    token = login(doomed, "john")
    tickets = [f"tkt-kill-{i}" for i in range(6)]
    for ticket in tickets:
        publish_ticket(doomed, token, ticket)
    first_redelivery = await screen.next_of("event", timeout=TIMEOUT_S + 3, redelivery=1)
    assert first_redelivery["subscription_id"] == subscription_id
    doomed.kill()  # SIGKILL while the tickets are between redeliveries

    alerts = await collect(john, "event", ESCALATION_AFTER_S + 3)
    assert Counter(alert["data"]["ticket_id"] for alert in alerts) == Counter(tickets)
    assert await collect(john, "event", TIMEOUT_S * 2) == []
    await john.close()
    await screen.close()


async def test_an_ack_on_one_process_stops_redelivery_on_both(gateways, shared_redis):
    a = gateways(shared_redis, **SHORT_ACKS)
    b = gateways(shared_redis, **SHORT_ACKS)
    screen_a, sub_a = await ack_screen(a)
    screen_b, sub_b = await ack_screen(b)
    john = await alerts_for(a)
    publish_ticket(a, login(a, "john"), "tkt-acked")
    created = await screen_a.next_of("event", timeout=3)
    await screen_b.next_of("event", timeout=3, event_id=created["event_id"])
    reply = await screen_b.request({"type": "ack", "subscription_id": sub_b, "event_id": created["event_id"]})
    assert reply["success"] is True and reply["duplicate"] is False, reply
    duplicate = await screen_a.request({"type": "ack", "subscription_id": sub_a, "event_id": created["event_id"]})
    assert duplicate["success"] is True and duplicate["duplicate"] is True  # whichever process answers

    assert await collect(screen_a, "event", ESCALATION_AFTER_S + 1) == []
    assert await collect(screen_b, "event", 0.2) == []
    assert await collect(john, "event", 0.2) == []
    for client in (john, screen_a, screen_b):
        await client.close()


async def test_pending_acks_survive_a_gateway_restart(gateways, shared_redis):
    first = gateways(shared_redis, **SHORT_ACKS)
    screen, _ = await ack_screen(first)
    publish_ticket(first, login(first, "john"), "tkt-restart")
    await screen.next_of("event", timeout=3)
    first.stop()  # SIGTERM before the ticket was due: nobody is left to sweep it
    second = gateways(shared_redis, **SHORT_ACKS)
    john = await alerts_for(second)
    alerts = await collect(john, "event", ESCALATION_AFTER_S + 3)
    assert [alert["data"]["ticket_id"] for alert in alerts] == ["tkt-restart"]
    await john.close()
