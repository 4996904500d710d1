"""Ids given at insert, seen at commit: when may an id missing below a visible one still appear?

On PostgreSQL a row takes its id from a sequence when it is inserted and becomes visible when its
transaction commits: a transaction still open (an ingest batch working on) can commit an id below
one another transaction committed first, and the id of a transaction rolled back never appears. A
reader walking ids upwards (the outgoing webhooks' scanner, :mod:`console.webhooks_out`; the API's
polling cursor, :mod:`console.poll_cursor`) must not pass a missing id for good while its
transaction may still commit. A missing id is *settled* (it will never appear) when:

* every transaction that may hold it is over. The id was given before the id above it, so its
  transaction had its transaction id (xid: given at a transaction's first write, which the
  insert is at the latest) before any transaction that began after that row above it was
  committed, such as the one that routed it (:func:`quiet`). Once the oldest transaction still
  running (the snapshot's xmin, cluster-wide) is younger than that one, the missing id's
  transaction has ended; had it committed, the id would be visible;
* or :data:`GAP_TTL` has passed since the row above it was written: no transaction of the service
  stays open that long, so the id was rolled back. The bound both readers share.

SQLite has one writer at a time: an insert not committed yet holds every other writer back, so no
higher id commits before it, and a missing id is never on its way (only a row deleted).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, and_, cast, func, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncSession

GAP_TTL = timedelta(minutes=15)  # an id missing below a visible one this long was rolled back

# A row's xmin (the xid that wrote it: 32 bits, wrapping) precedes the oldest xid still running in
# this statement's snapshot, compared the way PostgreSQL compares xids (modulo 2**32, within half
# the circle). Rows older than half the circle (2**31 transactions) are far older than GAP_TTL.
_PRECEDES = ("((pg_snapshot_xmin(pg_current_snapshot())::text::bigint - {row}.xmin::text::bigint)"
             " % 4294967296 + 4294967296) % 4294967296 < 2147483648")


def may_still_commit(session: AsyncSession) -> bool:
    """Can an id be missing below a visible one and still appear (PostgreSQL), or not (SQLite)?"""
    bind = session.bind
    return bind is not None and bind.dialect.name == "postgresql"


def quiet(later: str, written: str) -> ColumnElement[bool]:
    """SQL (PostgreSQL): no transaction older than the one that wrote the row of table ``later`` is
    running any more, as this statement sees it. ``later`` is a row written after the row of table
    ``written`` above a missing id was committed, by a transaction of its own (a mention's route
    decision: the route stage reads the committed mention first); when both have the same xmin they
    were written together, which proves nothing, and the answer is false."""
    return and_(text(_PRECEDES.format(row=later)),
                literal_column(f"{later}.xmin") != literal_column(f"{written}.xmin"))


async def first_open_gap(session: AsyncSession, model: Any, written_at: Any, after: int, upto: int, *,
                         settled_below: int, now: datetime, ttl: timedelta = GAP_TTL) -> int | None:
    """The lowest id in (``after``, ``upto``) of ``model`` missing and not settled, or None.

    ``settled_below``: a gap below a row with an id this high or lower is settled (that row is
    :func:`quiet`); ``written_at``: the column saying when a row was written (the row just above
    a gap dates it, for :data:`GAP_TTL`). Reads the rows of the range once (a window over them)."""
    rows = select(model.id.label("id"), written_at.label("at"),
                  func.lag(model.id, 1, cast(after, BigInteger)).over(order_by=model.id).label("below")) \
        .where(model.id > after, model.id <= upto).subquery()
    return await session.scalar(select(func.min(rows.c.below + 1)).where(
        rows.c.id > rows.c.below + 1, rows.c.id > settled_below, rows.c.at > now - ttl))
