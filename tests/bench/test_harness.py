"""A tiny run of the benchmark harness: the same code path as `make bench`, with 20 connections for one second.

It proves the harness measures what it claims (every planned delivery counted, latencies and CPU recorded) on both
the gateway and the baseline. It asserts no timing: figures belong to `make bench`, not to tests.
"""

from __future__ import annotations

import pytest

from bench.run import run_small_scenario

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("target", ["gateway", "baseline"])
def test_a_small_fanout_step_delivers_and_measures_everything(target: str) -> None:
    result = run_small_scenario(connections=20, target=target, rate=10.0, duration_s=1.0)
    step = result["steps"][0]
    assert step["expected"] == step["events_published"] * 20 > 0
    assert step["received"] == step["expected"] and step["lost"] == 0 and step["duplicates"] == 0
    assert step["latency_ms"]["p50"] > 0 and step["latency_ms"]["max"] >= step["latency_ms"]["p99"]
