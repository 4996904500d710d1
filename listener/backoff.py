"""How long a connector waits before it tries again.

Two rules, kept apart because platforms say different things: a 429 names the moment the window
resets (wait exactly until then, plus a second of slack for clock skew); 5xx and network errors say
nothing, so back off exponentially with full jitter, which keeps many connectors (or many replicas)
from hammering a recovering platform in lock-step.
"""

from __future__ import annotations

import random
import time


def jittered(failures: int, base: float = 1.0, cap: float = 300.0, rng: random.Random | None = None) -> float:
    """Full-jitter exponential back-off: uniform in [0, min(cap, base * 2**failures)]."""
    ceiling = min(cap, base * 2 ** max(0, min(failures, 30)))
    return (rng or random).uniform(0, ceiling)


def rate_limit_wait(reset_at: float | None = None, retry_after: float | None = None, *, now: float | None = None,
                    default: float = 60.0, slack: float = 1.0) -> float:
    """Seconds until a rate-limit window reopens (``x-rate-limit-reset`` epoch or ``Retry-After``)."""
    if retry_after is not None and retry_after >= 0:
        return float(retry_after)
    if reset_at is not None:
        return max(0.0, reset_at - (time.time() if now is None else now)) + slack
    return default


class Backoff:
    """Counts consecutive failures; ``reset()`` after a success."""

    def __init__(self, base: float = 1.0, cap: float = 300.0, rng: random.Random | None = None) -> None:
        self.base, self.cap, self.rng = base, cap, rng
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        return jittered(self.failures, self.base, self.cap, self.rng)

    def reset(self) -> None:
        self.failures = 0
