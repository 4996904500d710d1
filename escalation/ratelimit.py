"""Fixed-window rate limits for the customer-facing pages (per client address, per case).

In-process: each web process counts on its own. The limits that guard secrets — wrong codes and
lock-outs — are kept in the database (:mod:`escalation.verification`) and hold across processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable


class RateLimiter:
    def __init__(self, limit: int, window_seconds: float, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window_seconds
        self.clock = clock
        self.max_keys = max_keys
        self._counts: dict[Hashable, tuple[float, int]] = {}

    def hit(self, key: Hashable) -> bool:
        """Count one request for ``key``; False when it is over the limit in the current window."""
        now = self.clock()
        start, count = self._counts.get(key, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        count += 1
        self._counts[key] = (start, count)
        if len(self._counts) > self.max_keys:
            self._forget_old(now)
        return count <= self.limit

    def _forget_old(self, now: float) -> None:
        self._counts = {k: v for k, v in self._counts.items() if now - v[0] < self.window}
        if len(self._counts) > self.max_keys:  # a flood of fresh keys: start over rather than grow
            self._counts.clear()
