"""Fixed-window rate limits for the customer-facing pages (per client address, per case).

Per address: in-process (:class:`RateLimiter`), each web process counts on its own — cheap, and
what stops a flood at the door. Per case: in the database (:class:`SharedRateLimiter`), so the
limit holds however many web processes share the load and whichever addresses the requests come
from. The limits that guard secrets — wrong codes and lock-outs — are in the database too
(:mod:`escalation.verification`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any

from sqlalchemy import case as case_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from models.escalation import RateCounter


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


class SharedRateLimiter:
    """Fixed windows counted in the ``rate_counters`` table: one atomic upsert per hit (a new
    window resets the count), so concurrent processes never lose a hit."""

    def __init__(self, db: Any, limit: int, window_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.db, self.limit, self.window, self.clock = db, limit, window_seconds, clock

    async def hit(self, key: str) -> bool:
        """Count one request for ``key``; False when it is over the limit in the current window."""
        window_no = int(self.clock() // self.window)
        insert = pg_insert if self.db.dialect == "postgresql" else sqlite_insert
        stmt = insert(RateCounter).values(key=key[:120], window_no=window_no, hits=1)
        stmt = stmt.on_conflict_do_update(index_elements=[RateCounter.key], set_={
            "hits": case_((RateCounter.window_no == stmt.excluded.window_no, RateCounter.hits + 1), else_=1),
            "window_no": stmt.excluded.window_no,
        }).returning(RateCounter.hits)
        async with self.db.session() as session:
            hits = await session.scalar(stmt)
            await session.commit()
        return int(hits) <= self.limit
