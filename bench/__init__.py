"""Benchmark harness for the WebSocket gateway: load generator, baseline server, scenarios (see bench/README.md)."""
