"""Exponential backoff with full jitter, so retries of many workers never march in step."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delay before retry number `attempt` (1-based): uniform in [0, min(max, initial * 2**(attempt-1))]."""

    initial_s: float = 0.2
    max_s: float = 10.0
    max_attempts: int = 10  # 0 = retry forever

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before the next attempt, after `attempt` attempts failed."""
        # The exponent is capped: a dependency down for hours makes thousands of attempts, and 2**1024
        # no longer converts to a float (the ceiling is max_s long before that anyway).
        ceiling = min(self.max_s, self.initial_s * (2 ** min(max(0, attempt - 1), 64)))
        # Never zero: a zero delay would turn a dead dependency into a busy loop.
        return max(self.initial_s / 2, (rng or random).uniform(0, ceiling))

    def exhausted(self, attempts: int) -> bool:
        """True once `attempts` failures reach the limit."""
        return self.max_attempts > 0 and attempts >= self.max_attempts
