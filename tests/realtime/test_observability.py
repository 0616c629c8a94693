"""Metrics, the live-connections directory, operator disconnects and JSON logs, in-process through the real ASGI app."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from realtime import metrics
from realtime.logs import JsonFormatter, RedactTokens
from realtime.metrics_view import address_allowed
from realtime.publishing import abroadcast_control, apublish
from realtime.stores import live
from tests.support.asgi import open_client

ROOT = Path(__file__).resolve().parents[2]
AT = {"location_id": "loc-xyz789"}
METRIC_NAME = re.compile(r"\b(?:realtime|process)_[a-z0-9_]+")
PROMETHEUS_OWN = {"up"}  # series Prometheus itself adds for each target


def sample(name: str, **labels: str) -> float:
    found = REGISTRY.get_sample_value(name, labels)
    return 0.0 if found is None else found


# Dashboard and alerts --------------------------------------------------------------------------------------------


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus-alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_every_metric_the_dashboard_and_the_alerts_name_exists():
    exported = metrics.metric_names()
    named = {
        name
        for expr in [*dashboard_expressions(), *(r["expr"] for r in alert_rules())]
        for name in METRIC_NAME.findall(expr)
    }
    assert named, "no metric found in deploy/"
    assert named - exported == set()
    used_own = {word for expr in dashboard_expressions() for word in re.findall(r"\b(up)\{", expr)}
    assert used_own <= PROMETHEUS_OWN


def test_the_dashboard_covers_what_an_operator_watches():
    exprs = " ".join(dashboard_expressions())
    assert "sum(realtime_connections" in exprs
    assert "sum by (channel) (realtime_subscriptions" in exprs
    assert "realtime_deliveries_total" in exprs
    assert "histogram_quantile(0.50" in exprs and "histogram_quantile(0.99" in exprs
    assert "sum by (code) (rate(realtime_disconnects_total" in exprs
    assert "sum by (result) (increase(realtime_resume_total" in exprs


def test_the_alerts_cover_no_connections_lag_redis_and_the_outbox():
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert "sum(realtime_connections" in rules["RealtimeNoConnections"]["expr"]
    assert rules["RealtimeDeliveryLagHigh"]["expr"].rstrip().endswith("> 1")
    assert "realtime_redis_errors_total" in rules["RealtimeRedisErrors"]["expr"]
    assert "realtime_outbox_backlog" in rules["RealtimeOutboxBacklog"]["expr"]
    assert all({"expr", "for", "labels", "annotations"} <= set(rule) for rule in rules.values())


def test_no_metric_has_an_unbounded_label():
    for family in REGISTRY.collect():
        for s in family.samples:
            assert not set(s.labels) & {"location", "location_id", "user", "user_id", "connection", "connection_id"}


# /metrics access ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "allowed", "expected"),
    [
        ("127.0.0.1", ["127.0.0.1", "::1"], True),
        ("::1", ["127.0.0.1", "::1"], True),
        ("::ffff:127.0.0.1", ["127.0.0.1"], True),
        ("10.0.3.7", ["10.0.0.0/16"], True),
        ("10.1.3.7", ["10.0.0.0/16"], False),
        ("192.168.1.5", ["127.0.0.1", "::1"], False),
        ("", ["127.0.0.1"], False),
        ("not-an-ip", ["127.0.0.1"], False),
        ("127.0.0.1", ["127.0.0.1", "localhost"], False),  # a bad setting refuses everyone
    ],
)
def test_address_allowlist(address, allowed, expected):
    assert address_allowed(address, allowed) is expected


def test_metrics_endpoint_answers_loopback_and_the_token_only(client, settings):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"realtime_connections_opened_total" in response.content
    settings.METRICS_ALLOWED_IPS = ["10.9.9.9"]
    settings.METRICS_TOKEN = "t0ken-for-scrapes"
    refused = client.get("/metrics")
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 403
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403  # no token configured: closed
    settings.METRICS_TOKEN = "t0ken-for-scrapes"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer t0ken-for-scrapes").status_code == 200
    assert client.post("/metrics").status_code in (403, 405)


# Counting through the real consumer ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_fanout_counts_each_event_once_with_its_recipients(token_for):
    before = sample("realtime_deliveries_total", channel="kds")
    lag_before = sample("realtime_event_delivery_lag_seconds_count", channel="kds")
    published_before = sample("realtime_events_published_total", channel="kds", source="python")
    async with open_client(token_for("kim")) as one, open_client(token_for("john")) as two:
        for c in (one, two):
            assert (await c.subscribe("kds", AT))["success"] is True
        for n in range(3):
            await apublish("kds", "kds.ticket.created", location_id="loc-xyz789", data={"n": n})
        for c in (one, two):
            assert [(await c.recv())["data"]["n"] for _ in range(3)] == [0, 1, 2]
    assert sample("realtime_deliveries_total", channel="kds") - before == 6
    assert sample("realtime_event_delivery_lag_seconds_count", channel="kds") - lag_before == 3
    assert sample("realtime_events_published_total", channel="kds", source="python") - published_before == 3


@pytest.mark.django_db(transaction=True)
async def test_metrics_off_counts_nothing(token_for, settings):
    settings.REALTIME = {"METRICS_ENABLED": False}
    before = sample("realtime_deliveries_total", channel="kds")
    opened = sample("realtime_connections_opened_total")
    async with open_client(token_for("kim")) as kim:
        await kim.subscribe("kds", AT)
        await apublish("kds", "kds.ticket.created", location_id="loc-xyz789", data={})
        assert (await kim.recv())["type"] == "event"
    assert sample("realtime_deliveries_total", channel="kds") == before
    assert sample("realtime_connections_opened_total") == opened


# The directory and operator disconnects -----------------------------------------------------------------------------


async def directory_until(wanted: Any, timeout: float = 5) -> dict[str, list[live.LiveConnection]]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await live.get_directory().processes()
        if wanted(found) or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.02)


def by_id(found: dict[str, list[live.LiveConnection]]) -> dict[str, live.LiveConnection]:
    return {c.connection_id: c for entries in found.values() for c in entries}


@pytest.mark.django_db(transaction=True)
async def test_the_directory_follows_subscriptions_and_presence_and_forgets_on_close(token_for):
    async with open_client(token_for("sarah"), headers=[(b"user-agent", b"POS 3")]) as sarah:
        connection_id = sarah.connected["connection_id"]
        subscribed = await sarah.subscribe("orders", {**AT, "statuses": ["open"]})
        await sarah.request({"type": "presence_join", "id": "p", "channel": "orders", "params": AT, "user_info": {}})
        found = by_id(
            await directory_until(lambda f: by_id(f).get(connection_id, None) and by_id(f)[connection_id].presence)
        )
        entry = found[connection_id]
        assert (entry.user_id, entry.username, entry.user_agent) == ("user-sarah", "sarah", "POS 3")
        assert entry.subscriptions == [
            {
                "id": subscribed["subscription_id"],
                "channel": "orders",
                "params": subscribed["params"],
                "streams": ["orders:loc-xyz789"],
            }
        ]
        assert entry.presence == ["orders:loc-xyz789"]
        await sarah.request({"type": "unsubscribe_all", "id": "u"})
        found = by_id(await directory_until(lambda f: not by_id(f)[connection_id].subscriptions))
        assert found[connection_id].subscriptions == []
    assert connection_id not in by_id(await directory_until(lambda f: connection_id not in by_id(f)))


@pytest.mark.django_db(transaction=True)
async def test_an_operator_disconnect_closes_the_named_connections_with_4000_and_the_reason(token_for):
    async with (
        open_client(token_for("sarah")) as first,
        open_client(token_for("sarah")) as second,
        open_client(token_for("john")) as john,
    ):
        await abroadcast_control(
            live.disconnect_message(connection_ids=[first.connected["connection_id"]], reason="Replaced")
        )
        assert await first.recv() == {"type": "error", "code": "disconnected", "message": "Replaced"}
        assert (await first.ws.receive_output(2)) == {"type": "websocket.close", "code": 4000}
        assert await second.nothing() and await john.nothing()

        await abroadcast_control(live.disconnect_message(user_ids=["user-sarah"], reason=""))
        assert await second.recv() == {
            "type": "error",
            "code": "disconnected",
            "message": "Disconnected by an operator",
        }
        assert (await second.ws.receive_output(2))["code"] == 4000
        assert await john.nothing()
        assert (await john.request({"type": "ping", "id": "still"}))["type"] == "pong"


@pytest.mark.django_db(transaction=True)
async def test_the_redis_directory_keeps_one_expiring_hash_per_process(redis_url, settings):
    import redis.asyncio as aioredis

    settings.REDIS_URL = redis_url
    settings.REDIS_PREFIX = "rtgw-obs-test"
    live.reset_directory()
    store = live.get_directory()
    assert isinstance(store, live.RedisDirectory)
    entry = live.LiveConnection("conn-1", "user-sarah", "sarah", "host:1:ab", "2026-12-02T06:00:00.000Z", "", "")
    await store.write("host:1:ab", {"conn-1": entry.to_json()})
    await store.write("host:2:cd", {"conn-2": entry.to_json().replace("conn-1", "conn-2")})
    assert set(by_id(await store.processes())) == {"conn-1", "conn-2"}
    client = aioredis.Redis.from_url(redis_url)
    try:
        ttl = await client.pttl("rtgw-obs-test:live:host:1:ab")
        assert 0 < ttl <= 30_000
        assert await store.renew("host:1:ab") is True
        await client.delete("rtgw-obs-test:live:host:2:cd")  # a process whose key expired (it died)
        assert set(by_id(await store.processes())) == {"conn-1"}
        assert await store.renew("host:2:cd") is False  # lost: its tracker rewrites the whole entry
        await store.write("host:1:ab", {"conn-1": None})
        assert await store.processes() == {}
    finally:
        await client.aclose()
        live.reset_directory()


# JSON logs ----------------------------------------------------------------------------------------------------------


def test_json_log_lines_carry_the_context_and_no_token():
    record = logging.LogRecord(
        "realtime.consumer", logging.INFO, __file__, 1, "GET %s", ("/v1/ws?access_token=secret.jwt.value",), None
    )
    record.connection_id, record.user_id, record.event, record.code = "conn-1", "user-sarah", "refused", "4401"
    RedactTokens().filter(record)
    try:
        raise ValueError("bad /v1/ws?access_token=another.secret")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    parsed = json.loads(line)
    assert "\n" not in line
    assert parsed["message"] == "GET /v1/ws?access_token=[redacted]"
    assert (parsed["connection_id"], parsed["user_id"], parsed["event"], parsed["code"]) == (
        "conn-1",
        "user-sarah",
        "refused",
        "4401",
    )
    assert "secret" not in line and "access_token=[redacted]" in parsed["exception"]


@pytest.mark.django_db(transaction=True)
async def test_the_admin_page_without_redis_shows_this_process_and_disconnects(token_for, admin_client):
    from asgiref.sync import sync_to_async

    async with open_client(token_for("sarah"), headers=[(b"user-agent", b"KDS 2")]) as sarah:
        await sarah.subscribe("orders", AT)
        connection_id = sarah.connected["connection_id"]
        await directory_until(lambda f: by_id(f).get(connection_id) and by_id(f)[connection_id].subscriptions)
        page = await sync_to_async(admin_client.get)("/admin/live-connections/?location=loc-xyz789")
        assert page.status_code == 200
        text = page.content.decode()
        assert f'data-connection-id="{connection_id}"' in text and "KDS 2" in text
        assert 'data-location="loc-xyz789" data-screens="1"' in text
        posted = await sync_to_async(admin_client.post)(
            "/admin/live-connections/",
            {"action": "disconnect_connection", "connection_id": connection_id, "reason": "Test over"},
        )
        assert posted.status_code == 302
        assert await sarah.recv() == {"type": "error", "code": "disconnected", "message": "Test over"}
        assert (await sarah.ws.receive_output(2))["code"] == 4000


@pytest.mark.django_db
def test_the_admin_page_is_for_staff_only(client, world):
    client.force_login(world["sarah"])
    answer = client.get("/admin/live-connections/")
    assert answer.status_code == 302 and answer["Location"].startswith("/admin/login/")
    posted = client.post(
        "/admin/live-connections/", {"action": "disconnect_user", "user_id": "user-john", "reason": "no"}
    )
    assert posted.status_code == 302 and posted["Location"].startswith("/admin/login/")
