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
from sqlalchemy import delete
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
    """Windows counted in the ``rate_counters`` table, each key's starting at its first hit (as
    :class:`RateLimiter`'s do: a key over its limit waits the whole window, not until the clock's next
    quarter hour): one atomic upsert per hit, so concurrent processes never lose a hit. ``window_no``
    holds the window's start in epoch milliseconds (rows of the clock-aligned windows before read as
    long over)."""

    def __init__(self, db: Any, limit: int, window_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.db, self.limit, self.window, self.clock = db, limit, window_seconds, clock

    async def hit(self, key: str) -> bool:
        """Count one request for ``key``; False when it is over the limit in the current window."""
        hits, _ = await self.count(key)
        return hits <= self.limit

    async def count(self, key: str) -> tuple[int, float]:
        """Count one request for ``key``: the requests counted in its current window, this one
        included, and the seconds until that window ends."""
        now_ms = int(self.clock() * 1000)
        insert = pg_insert if self.db.dialect == "postgresql" else sqlite_insert
        stmt = insert(RateCounter).values(key=key[:120], window_no=now_ms, hits=1)
        running = RateCounter.window_no > now_ms - int(self.window * 1000)  # the old row's, in SET as in SQL
        stmt = stmt.on_conflict_do_update(index_elements=[RateCounter.key], set_={
            "hits": case_((running, RateCounter.hits + 1), else_=1),
            "window_no": case_((running, RateCounter.window_no), else_=stmt.excluded.window_no),
        }).returning(RateCounter.hits, RateCounter.window_no)
        async with self.db.session() as session:
            hits, start_ms = (await session.execute(stmt)).one()
            await session.commit()
        return int(hits), (int(start_ms) + self.window * 1000 - now_ms) / 1000

    async def forget(self, key: str) -> None:
        """``key`` starts over."""
        async with self.db.session() as session:
            await session.execute(delete(RateCounter).where(RateCounter.key == key[:120]))
            await session.commit()

    async def prune(self, prefix: str) -> int:
        """Deletes the counters of ``prefix`` whose window has ended (each key keeps one row, but keys
        that are never seen again would stay for good); returns how many."""
        ended = int(self.clock() * 1000) - int(self.window * 1000)
        async with self.db.session() as session:
            result = await session.execute(delete(RateCounter).where(
                RateCounter.key.startswith(prefix, autoescape=True), RateCounter.window_no <= ended))
            await session.commit()
        return int(result.rowcount or 0)
