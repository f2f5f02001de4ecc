"""A token bucket: the one rate limit of the agent (alerts raised, reports sent)."""

from __future__ import annotations

import time


class TokenBucket:
    """At most ``rate_per_s`` a second, bursts of ``burst``; it starts full."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate, self.burst = rate_per_s, burst
        self.tokens, self.last = burst, time.monotonic()

    def take(self, now: float) -> float:
        """Take one now (0.0), or how long to wait before one is there (nothing taken)."""
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def allow(self, now: float | None = None) -> bool:
        """Take one if there is one now."""
        return self.take(time.monotonic() if now is None else now) == 0.0
