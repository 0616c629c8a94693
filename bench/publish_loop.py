"""Publish planned events through the gateway's Python API, from a process of its own, at a fixed rate.

Run with ``DJANGO_SETTINGS_MODULE=config.settings`` (and the servers' ``REDIS_URL``: with the in-memory layer
another process cannot reach the server's groups). Reads ``{"rate", "tag", "events": [...]}`` as JSON on stdin,
calls ``realtime.publishing.publish`` for each event, and prints one JSON report line on stdout.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    spec = json.load(sys.stdin)
    import django

    django.setup()
    from realtime.publishing import publish

    rate, tag, events = float(spec["rate"]), spec["tag"], spec["events"]
    report: dict[str, object] = {"published": 0, "errors": 0, "error_samples": [], "max_lag_ms": 0.0}
    publish("orders", "order.created", location_id=events[0]["location_id"], data={"warmup": True})
    first_sent_ns = last_sent_ns = 0
    max_lag = 0.0
    start = time.perf_counter()
    deadline = start + len(events) / rate * 1.0 + 1.0  # as bench.loadgen.publish_deadline
    unsent = 0
    for position, event in enumerate(events):
        if time.perf_counter() > deadline:
            unsent = len(events) - position
            break
        due = start + position / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        max_lag = max(max_lag, time.perf_counter() - due)
        sent_ns = time.time_ns()
        first_sent_ns = first_sent_ns or sent_ns
        last_sent_ns = sent_ns
        data = {"sent_ns": sent_ns, "run": tag, "i": event["index"], **event["fields"]}
        try:
            publish(event["channel"], event["event"], location_id=event["location_id"], data=data)
            report["published"] = int(report["published"]) + 1  # type: ignore[call-overload]
        except Exception as exc:
            report["errors"] = int(report["errors"]) + 1  # type: ignore[call-overload]
            samples = report["error_samples"]
            assert isinstance(samples, list)
            if len(samples) < 5:
                samples.append(f"{type(exc).__name__}: {exc}"[:300])
    if unsent:
        report["errors"] = int(report["errors"]) + unsent  # type: ignore[call-overload]
        samples = report["error_samples"]
        assert isinstance(samples, list)
        samples.append(f"{unsent} events not sent: publish() too slow to keep the rate")
    report.update(first_sent_ns=first_sent_ns, last_sent_ns=last_sent_ns, max_lag_ms=round(max_lag * 1000, 1))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
