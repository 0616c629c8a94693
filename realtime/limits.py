"""Inbound rate limiting: a token bucket per connection, pure and clock-injected."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    rate_per_second: float
    burst: int
    tokens: float = field(init=False)
    updated_at: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def take(self, now: float) -> float:
        """Spend one token; return 0 when allowed, else the seconds until one is available."""
        if self.updated_at is not None:
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated_at) * self.rate_per_second)
        self.updated_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate_per_second if self.rate_per_second > 0 else float("inf")
