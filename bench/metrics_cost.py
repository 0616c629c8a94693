"""The ``metrics`` scenario: CPU per delivery with Prometheus metrics on and off, in the same run (issue 15).

The budget: metrics may raise the gateway's server CPU per delivery on the fan-out by at most 5 %. The two targets
differ only by ``REALTIME_METRICS_ENABLED``; they run in alternation (off, on, on, off) so a neighbour's load on the
shared machine falls on both, and each figure is the median of its rounds. Steps flagged ``disturbed`` (foreign CPU
above the harness's threshold) are reported as such: re-run on a quiet machine before trusting a MISS or a PASS.

    python -m bench.run --scenario metrics --budget-s 900 [--quick]   (four deployments of 1,000 screens at full scale)
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from bench.scenarios import Bench, Target, fanout_plans, fanout_steps, measure_target

METRICS_ON = Target("gateway-metrics-on", "gateway", env=(("REALTIME_METRICS_ENABLED", "1"),))
METRICS_OFF = Target("gateway-metrics-off", "gateway", env=(("REALTIME_METRICS_ENABLED", "0"),))
BUDGET_RATIO = 1.05
ROUNDS = 2
FULL_RATES = (10.0, 25.0)  # below the one-process saturation (docs/performance.md), so no step is overloaded


def cpu_by_rate(results: list[dict[str, Any]]) -> dict[float, list[float]]:
    found: dict[float, list[float]] = {}
    for result in results:
        for step in result.get("steps", []):
            if step.get("server_cpu_us_per_delivery") is not None:  # a lossy step still has CPU per delivery
                found.setdefault(step["rate"], []).append(step["server_cpu_us_per_delivery"])
    return found


def compare(on: list[dict[str, Any]], off: list[dict[str, Any]]) -> dict[str, Any]:
    """Median CPU per delivery per rate, the on/off ratio, and whether it stays within the budget."""
    on_cpu, off_cpu = cpu_by_rate(on), cpu_by_rate(off)
    rows = []
    for rate in sorted(set(on_cpu) & set(off_cpu)):
        median_on, median_off = statistics.median(on_cpu[rate]), statistics.median(off_cpu[rate])
        rows.append(
            {
                "rate": rate,
                "cpu_us_per_delivery_on": round(median_on, 2),
                "cpu_us_per_delivery_off": round(median_off, 2),
                "ratio": round(median_on / median_off, 3) if median_off else None,
            }
        )
    ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
    steps = [step for result in (*on, *off) for step in result.get("steps", [])]
    disturbed = any(step.get("disturbed") for step in steps)
    return {
        "lossy_steps": [step["label"] for step in steps if step.get("lost")],
        "budget_ratio": BUDGET_RATIO,
        "by_rate": rows,
        "worst_ratio": max(ratios) if ratios else None,
        "passed": bool(ratios) and max(ratios) <= BUDGET_RATIO,
        "disturbed": disturbed,
    }


async def scenario_metrics(bench: Bench) -> dict[str, Any]:
    scale = bench.scale
    rates = FULL_RATES if len(scale.fanout_rates) > 1 else tuple(scale.fanout_rates[:1])
    runs: dict[str, list[dict[str, Any]]] = {METRICS_ON.name: [], METRICS_OFF.name: []}
    for round_ in range(ROUNDS):
        order = (METRICS_OFF, METRICS_ON) if round_ % 2 == 0 else (METRICS_ON, METRICS_OFF)  # drift hits both
        for target in order:
            result = await measure_target(
                bench,
                "metrics",
                target,
                fanout_plans(bench, scale.fanout_connections),
                fanout_steps(bench, rates, scale.fanout_step_s, prefix=f"metrics{round_}"),
            )
            runs[target.name].append(result)
    verdict = compare(runs[METRICS_ON.name], runs[METRICS_OFF.name])
    status = "PASS" if verdict["passed"] else "MISS"
    note = (
        f"metrics cost: worst CPU/delivery ratio on/off {verdict['worst_ratio']} (budget {BUDGET_RATIO}) {status}"
        + (" DISTURBED: re-run on a quiet machine" if verdict["disturbed"] else "")
    )
    bench.notes.append(note)
    bench.emit(json.dumps({"scenario": "metrics", **verdict}))
    bench.emit(note)
    merged = {
        name: {"target": name, "steps": [step for r in rounds for step in r.get("steps", [])], "rounds": rounds}
        for name, rounds in runs.items()
    }
    return {**merged, "comparison": verdict}
