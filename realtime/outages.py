"""Periodic work (the heartbeat, station checks, the ack sweeper) that fails while Redis is away logs it once."""

from __future__ import annotations

import logging


class OutageLog:
    """Log the first failure of an outage and the recovery that ends it, not every failed round in between."""

    __slots__ = ("failing", "logger", "what")

    def __init__(self, what: str, logger: logging.Logger) -> None:
        self.what = what
        self.logger = logger
        self.failing = False

    def failed(self, exc: BaseException) -> None:
        if not self.failing:
            self.logger.warning("%s failed (%s: %s); retrying every round", self.what, type(exc).__name__, exc)
        self.failing = True

    def succeeded(self) -> None:
        if self.failing:
            self.logger.warning("%s works again", self.what)
        self.failing = False
