"""Turn a run's results into tables (gateway beside its reference, with ratios), PASS/MISS targets and a plot.

Ratios are always ``gateway / reference``: above 1 means the gateway costs more (CPU, latency, memory) or, for
deliveries per second, delivers more.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

TARGET_CPU_RATIO = 3.0
TARGET_P99_ONE_PROCESS_MS = 50.0
TARGET_P99_REDIS_MS = 100.0
TARGET_IDLE_KIB = 50.0
TARGET_P99_CHAIN_BATCH_MS = 100.0
UNSATURATED_P99_MS = 100.0

STEP_COLUMNS = (
    "target",
    "rate",
    "recv/expected",
    "lost",
    "deliv/s",
    "p50",
    "p90",
    "p99",
    "max",
    "cpu us/dl",
    "srv cpu",
    "gen cpu",
    "other cpu",
)


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            return "-"
        return f"{value:.{digits}f}"
    return str(value)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def render(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def step_row(name: str, step: dict[str, Any]) -> list[str]:
    latency = step["latency_ms"]
    lost = step["lost"] + (step["publish_errors"] or 0)
    return [
        name,
        f"{step['rate']:g}",
        f"{step['received']}/{step['expected']}",
        (f"{lost} !!!" if lost else "0"),
        fmt(step["deliveries_per_s"], 0),
        *(fmt(latency.get(key)) for key in ("p50", "p90", "p99", "max")),
        fmt(step["server_cpu_us_per_delivery"]),
        f"{step['server_cpu_share']:.0%}",
        f"{step['generator_cpu_share']:.0%}" + (" BOUND" if step["generator_bound"] else ""),
        f"{step.get('foreign_cpu_share', 0):.0%}" + (" DISTURBED" if step.get("disturbed") else ""),
    ]


def ratio_row(step: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    def r(key: str) -> str:
        value = ratio(step["latency_ms"].get(key), reference["latency_ms"].get(key))
        return fmt(value, 2) + "x" if value is not None else "-"

    cpu = ratio(step["server_cpu_us_per_delivery"], reference["server_cpu_us_per_delivery"])
    dps = ratio(step["deliveries_per_s"], reference["deliveries_per_s"])
    return [
        "ratio",
        "",
        "",
        "",
        fmt(dps, 2) + "x" if dps else "-",
        r("p50"),
        r("p90"),
        r("p99"),
        r("max"),
        fmt(cpu, 2) + "x" if cpu else "-",
        "",
        "",
        "",
    ]


def comparison_table(title: str, subject: dict[str, Any], reference: dict[str, Any] | None) -> str:
    """Steps of ``subject`` matched by rate (and publisher) with ``reference``'s, plus a ratio row each."""
    rows: list[list[str]] = [list(STEP_COLUMNS)]
    reference_steps = {(s["rate"], s["publisher"] != "python-publish"): s for s in all_steps(reference or {})}
    for step in sorted(all_steps(subject), key=lambda s: (s["publisher"] == "python-publish", s["rate"])):
        label = subject["target"] + (" (python publish)" if step["publisher"] == "python-publish" else "")
        label += " (REST batch)" if step["publisher"] == "rest-batch" else ""
        rows.append(step_row(label, step))
        match = reference_steps.get((step["rate"], step["publisher"] != "python-publish"))
        if match is None and step["publisher"] == "python-publish":
            match = reference_steps.get((step["rate"], True))
        if match is not None and reference is not None:
            rows.append(step_row(reference["target"], match))
            rows.append(ratio_row(step, match))
    return f"{title}\n{render(rows)}" if len(rows) > 1 else f"{title}\n(no steps)"


def connect_table(title: str, results: Iterable[dict[str, Any]]) -> str:
    rows = [
        [
            "target",
            "conns",
            "ok",
            "subscribed",
            "seconds",
            "conn/s",
            "connect p50",
            "p99",
            "subscribe p50",
            "p99",
            "RSS before MiB",
            "after MiB",
            "KiB/conn",
        ]
    ]
    for result in results:
        connect, memory = result.get("connect"), result.get("idle_memory")
        if not connect or not memory:
            continue
        rows.append(
            [
                result["target"],
                str(connect["requested"]),
                str(connect["established"]),
                str(connect["subscribed"]),
                fmt(connect["seconds"], 2),
                fmt(connect["established"] / connect["seconds"] if connect["seconds"] else None, 0),
                fmt(connect["connect_ms"].get("p50")),
                fmt(connect["connect_ms"].get("p99")),
                fmt(connect["subscribe_ms"].get("p50")),
                fmt(connect["subscribe_ms"].get("p99")),
                fmt(memory["rss_before_mib"]),
                fmt(memory["rss_after_mib"]),
                fmt(memory["kib_per_connection"]),
            ]
        )
        if connect["errors"]:
            rows.append([f"  errors: {connect['errors']}"] + [""] * 12)
    return f"{title}\n{render(rows)}"


def tables(results: dict[str, Any]) -> str:
    """Every scenario that ran, as text."""
    scenarios = results["scenarios"]
    parts: list[str] = []
    fanout = scenarios.get("fanout")
    if fanout:
        gateway, baseline = fanout.get("gateway"), fanout.get("baseline")
        parts.append(connect_table("FAN-OUT connections", [r for r in (gateway, baseline) if r]))
        if gateway:
            parts.append(comparison_table("FAN-OUT (one location, REST publish vs baseline socket)", gateway, baseline))
        elif baseline:
            parts.append(comparison_table("FAN-OUT (baseline only)", baseline, None))
        rows = [["target", "saturation ev/s", "deliveries/s", "first failing", "loss-free up to ev/s", "its p99 ms"]]
        for result in (gateway, baseline):
            if result and "saturation" in result:
                sat = result["saturation"]
                rows.append(
                    [
                        result["target"],
                        fmt(sat["rate"], 1),
                        fmt(sat["deliveries_per_s_at_rate"], 0),
                        fmt(sat["first_failing_rate"], 1),
                        fmt(sat.get("highest_loss_free_rate_tried"), 1),
                        fmt(sat.get("highest_loss_free_p99_ms"), 1),
                    ]
                )
        if len(rows) > 1:
            criterion = next(r["saturation"]["criterion"] for r in (gateway, baseline) if r and "saturation" in r)
            parts.append(f"FAN-OUT saturation ({criterion})\n" + render(rows))
    chain = scenarios.get("chain")
    if chain:
        gateway, baseline = chain.get("gateway"), chain.get("baseline")
        parts.append(
            connect_table(
                "CHAIN connections = IDLE (memory per subscribed connection)", [r for r in (gateway, baseline) if r]
            )
        )
        subject = gateway or baseline
        assert subject is not None
        scale = results["meta"]["scale"]
        title = (
            f"CHAIN ({scale['chain_connections']} connections over {scale['chain_locations']} locations, filter mix)"
        )
        parts.append(comparison_table(title, subject, baseline if gateway else None))
    idle = scenarios.get("idle")
    if idle and not any(r.get("source") for r in idle.values()):
        parts.append(connect_table("IDLE connections (memory per subscribed connection)", idle.values()))
    redis = scenarios.get("redis")
    if redis:
        parts.append(
            comparison_table(
                "REDIS pub/sub layer, 2 processes vs in-memory layer, 1 process",
                redis["gateway-redis-2p"],
                redis.get("gateway"),
            )
        )
        if redis.get("gateway-redis-core-2p"):
            parts.append(
                comparison_table(
                    "REDIS core layer (RedisChannelLayer) vs pub/sub layer, 2 processes each",
                    redis["gateway-redis-core-2p"],
                    redis["gateway-redis-2p"],
                )
            )
    daphne = scenarios.get("daphne")
    if daphne:
        parts.append(
            comparison_table("DAPHNE vs UVICORN (gateway fan-out)", daphne["gateway-daphne"], daphne.get("gateway"))
        )
    return "\n\n".join(parts)


def all_steps(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Fixed-rate steps and saturation-search steps of one target."""
    return list(result.get("steps", [])) + list(result.get("saturation", {}).get("steps", []))


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 6 as PASS, MISS or NOT RUN, with the measured value and where it comes from."""
    scenarios = results["scenarios"]
    scale_note = " (quick scale)" if results["meta"].get("quick") else ""
    verdicts: list[dict[str, Any]] = []

    def add(name: str, value: Any, passed: bool | None, detail: str) -> None:
        status = "NOT RUN" if passed is None else ("PASS" if passed else "MISS")
        verdicts.append({"target": name + scale_note, "status": status, "value": value, "detail": detail})

    fanout = scenarios.get("fanout", {})
    gateway, baseline = fanout.get("gateway"), fanout.get("baseline")
    if gateway and baseline:
        base_by_rate = {s["rate"]: s for s in all_steps(baseline)}
        pairs = sorted(
            ((s, base_by_rate[s["rate"]]) for s in all_steps(gateway) if s["rate"] in base_by_rate),
            key=lambda pair: pair[0]["rate"],
        )
        clean = [(g, b) for g, b in pairs if g["lost"] == 0 and b["lost"] == 0] or pairs[:1]
        ratios: list[tuple[float, float]] = []
        for g, b in clean:
            value = ratio(g["server_cpu_us_per_delivery"], b["server_cpu_us_per_delivery"])
            if value is not None:
                ratios.append((g["rate"], value))
        worst = max(ratios, key=lambda item: item[1], default=None)
        add(
            "server CPU per delivery <= 3x baseline (fan-out, one process)",
            None if worst is None else round(worst[1], 2),
            None if worst is None else worst[1] <= TARGET_CPU_RATIO,
            "worst ratio over rates both ran loss-free: " + ", ".join(f"{rate:g} ev/s: {r:.2f}x" for rate, r in ratios),
        )
    else:
        add("server CPU per delivery <= 3x baseline (fan-out, one process)", None, None, "fan-out not run")

    lossy = []
    saturation_rate = (gateway or {}).get("saturation", {}).get("rate")
    for scenario_name, by_target in scenarios.items():
        for target_name, result in by_target.items():
            if not target_name.startswith("gateway") or result.get("source"):
                continue
            steps = list(result.get("steps", [])) + list(result.get("saturation", {}).get("steps", []))
            for step in steps:
                p99 = step["latency_ms"].get("p99", math.inf)
                below = saturation_rate is not None and scenario_name == "fanout" and step["rate"] <= saturation_rate
                if step["lost"] and (below or p99 < UNSATURATED_P99_MS):
                    lossy.append(f"{target_name} {step['label']} lost {step['lost']}")
    gateway_ran = any(name.startswith("gateway") for by in scenarios.values() for name in by)
    add(
        "zero loss below saturation",
        len(lossy),
        None if not gateway_ran else not lossy,
        "; ".join(lossy) or "no step below saturation (p99 < 100 ms or rate <= saturation rate) lost a delivery",
    )

    step10 = next((s for s in (gateway or {}).get("steps", []) if s["rate"] == 10), None)
    p99 = step10["latency_ms"].get("p99") if step10 else None
    add(
        f"p99 < {TARGET_P99_ONE_PROCESS_MS:g} ms at {results['meta']['scale']['fanout_connections']} conns x 10 ev/s,"
        " one process",
        p99,
        None if p99 is None or step10 is None else (p99 < TARGET_P99_ONE_PROCESS_MS and step10["lost"] == 0),
        "fan-out gateway step at 10 ev/s" + (f", lost {step10['lost']}" if step10 and step10["lost"] else ""),
    )

    redis = scenarios.get("redis", {}).get("gateway-redis-2p")
    redis10 = next((s for s in (redis or {}).get("steps", []) if s["rate"] == 10 and s["publisher"] == "rest"), None)
    p99 = redis10["latency_ms"].get("p99") if redis10 else None
    add(
        f"p99 < {TARGET_P99_REDIS_MS:g} ms on Redis, two processes (10 ev/s)",
        p99,
        None if p99 is None or redis10 is None else (p99 < TARGET_P99_REDIS_MS and redis10["lost"] == 0),
        "redis scenario, REST publish",
    )

    chain = scenarios.get("chain", {}).get("gateway") or {}
    batched = next((s for s in chain.get("steps", []) if s["publisher"] == "rest-batch"), None)
    p99 = batched["latency_ms"].get("p99") if batched else None
    add(
        f"chain held by one process at {results['meta']['scale']['chain_rate']:g} ev/s with batch publishing:"
        f" zero loss, p99 < {TARGET_P99_CHAIN_BATCH_MS:g} ms",
        p99,
        None
        if batched is None or p99 is None
        else (p99 < TARGET_P99_CHAIN_BATCH_MS and batched["lost"] == 0 and batched["publish_errors"] == 0),
        "chain gateway step published with POST /v1/events/batch"
        + (f", lost {batched['lost']}" if batched and batched["lost"] else ""),
    )
    for check in scenarios.get("publish_cost", {}).get("targets", []):
        add(
            check["target"],
            check["value"],
            check["status"] == "PASS",
            "publish_cost scenario" + (" (DISTURBED: re-run on a quiet machine)" if check["disturbed"] else ""),
        )

    idle = scenarios.get("idle", {}).get("gateway")
    idle = idle if idle and "idle_memory" in idle else None
    kib = idle["idle_memory"]["kib_per_connection"] if idle else None
    add(
        f"memory per idle authenticated connection with one subscription < {TARGET_IDLE_KIB:g} KiB",
        kib,
        None if kib is None else kib < TARGET_IDLE_KIB,
        f"RSS delta over {idle['connect']['established']} connections" if idle else "idle not run",
    )
    return verdicts


def targets_table(verdicts: list[dict[str, Any]]) -> str:
    rows = [["status", "target", "value", "detail"]]
    rows += [[v["status"], v["target"], fmt(v["value"], 2), v["detail"][:120]] for v in verdicts]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "TARGETS\n" + "\n".join(lines)


def plot_latency(results: dict[str, Any], path: Path) -> bool:
    """Latency percentiles against offered rate, fan-out, gateway and baseline (log-log); False if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fanout = results["scenarios"].get("fanout")
    if not fanout:
        return False
    figure, axis = plt.subplots(figsize=(8, 5))
    colours = {"gateway": "tab:red", "baseline": "tab:blue"}
    styles = {"p50": ":", "p90": "--", "p99": "-"}
    for name, result in fanout.items():
        steps = sorted(
            list(result["steps"]) + list(result.get("saturation", {}).get("steps", [])), key=lambda s: s["rate"]
        )
        steps = [s for s in steps if s["latency_ms"]]
        if not steps:
            continue
        rates = [s["rate"] for s in steps]
        for key, style in styles.items():
            axis.plot(
                rates,
                [s["latency_ms"][key] for s in steps],
                style,
                marker="o",
                markersize=3,
                color=colours.get(name, "black"),
                label=f"{name} {key}",
            )
        lossy = [s for s in steps if s["lost"]]
        if lossy:
            axis.scatter(
                [s["rate"] for s in lossy],
                [s["latency_ms"]["p99"] for s in lossy],
                marker="x",
                s=80,
                color=colours.get(name, "black"),
                label=f"{name}: loss",
            )
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.axhline(100, color="grey", linewidth=0.8)
    axis.set_xlabel("offered rate (events/s)")
    axis.set_ylabel("publish -> receipt latency (ms)")
    connections = results["meta"]["scale"]["fanout_connections"]
    axis.set_title(f"Fan-out, {connections} connections at one location ({results['meta']['started']})")
    axis.legend(fontsize=7, ncol=2)
    axis.grid(True, which="both", linewidth=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
