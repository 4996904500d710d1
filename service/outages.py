"""Failures that mean a service the process relies on (the database, Redis) is away, not that the
code or the request is wrong: a request meeting one is answered 503 with Retry-After (the console's
error middleware), and it is logged once per back-off as one WARNING line without a traceback,
however many requests and background passes meet it meanwhile (:func:`note_outage`).

What counts: the drivers' connection errors (asyncpg's connection-class and shutdown errors, redis'
ConnectionError and TimeoutError, the bus giving up on Redis), SQLAlchemy's pool timeout and
invalidated connections, SQLite's "database is locked" and unreadable file, and an OSError (refused,
reset, timed out: a frozen host past ``models.db``'s timeouts) raised inside a database or Redis
client. An OSError anywhere else (a file, an outgoing HTTP call) is not the database's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType

DATABASE = "the database"
REDIS = "Redis"
RETRY_AFTER_S = 10  # what a client refused during an outage is told to wait (Retry-After)
# one line when an outage is first met, then at most one per back-off, doubling from the first to the
# last; a failure after QUIET_S without one is a new outage, logged at once
BACKOFF_S = (10.0, 300.0)
QUIET_S = 60.0

_DB_MODULES = ("asyncpg", "sqlalchemy", "aiosqlite", "sqlite3")
_REDIS_MODULES = ("redis",)
_SQLITE_AWAY = ("database is locked", "unable to open database file", "disk i/o error")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (SQLAlchemy's ``orig``) and what caused it, each once."""
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < 16:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.extend(x for x in (getattr(e, "orig", None), e.__context__, e.__cause__) if isinstance(x, BaseException))


def _raised_in(tb: TracebackType | None) -> str | None:
    """Which client (database or Redis) the traceback passes through, if any."""
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        top = module.split(".", 1)[0]
        if top in _DB_MODULES:
            return DATABASE
        if top in _REDIS_MODULES:
            return REDIS
        tb = tb.tb_next
    return None


def _kind(e: BaseException) -> str | None:
    from service.bus.base import BusUnavailable

    if isinstance(e, BusUnavailable):
        return REDIS
    module = type(e).__module__.split(".", 1)[0]
    name = type(e).__name__
    if module == "redis":
        import redis.exceptions as rx

        return REDIS if isinstance(e, (rx.ConnectionError, rx.TimeoutError)) else None
    if module == "asyncpg":
        import asyncpg.exceptions as pg

        if isinstance(e, (pg.PostgresConnectionError, pg.OperatorInterventionError, pg.InsufficientResourcesError)):
            return DATABASE  # class 08 (connection), 57 (shut down, starting up), 53 (too many connections)
        if isinstance(e, pg.InterfaceError) and "connection" in str(e) and "closed" in str(e):
            return DATABASE
        return None
    if module == "sqlalchemy":
        from sqlalchemy import exc as sa

        if isinstance(e, sa.TimeoutError) or (isinstance(e, sa.DBAPIError) and e.connection_invalidated):
            return DATABASE  # no pooled connection came free; a disconnect SQLAlchemy recognised
        return None
    if module == "sqlite3" and name == "OperationalError":
        return DATABASE if str(e).lower().startswith(_SQLITE_AWAY) else None
    if isinstance(e, OSError):
        return _raised_in(e.__traceback__)
    return None


def unavailable(exc: BaseException) -> str | None:
    """:data:`DATABASE` or :data:`REDIS` when ``exc`` (or what it wraps or was caused by) says that
    service is away or overwhelmed; None for any other failure."""
    for e in _chain(exc):
        if (kind := _kind(e)) is not None:
            return kind
    return None


@dataclass
class _Outage:
    first: float
    last_seen: float
    next_line: float
    gap: float
    since_line: int = 0


class OutageLog:
    """One WARNING line per logger and service per back-off, the count of what it stood for in the next."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._outages: dict[tuple[str, str], _Outage] = {}

    def note(self, logger: logging.Logger, kind: str, exc: BaseException, what: str) -> bool:
        """Count one failure that met ``kind`` away; log it if its back-off has passed (True then)."""
        now = self.clock()
        key = (logger.name, kind)
        outage = self._outages.get(key)
        if outage is None or now - outage.last_seen > QUIET_S:
            outage = self._outages[key] = _Outage(first=now, last_seen=now, next_line=now, gap=BACKOFF_S[0])
        outage.last_seen = now
        if now < outage.next_line:
            outage.since_line += 1
            return False
        more = ""
        if now > outage.first:  # a later line of the same outage: how long, and what it stood for
            more = f" (first met {now - outage.first:.0f} s ago"
            n = outage.since_line
            more += f"; {n} more failure{'s' if n > 1 else ''} like it since the last line)" if n else ")"
        logger.warning("%s is unavailable (%s): %s%s; the next line on this in %.0f s at the earliest",
                       kind, type(exc).__name__, what, more, outage.gap,
                       extra={"error_type": type(exc).__name__})
        outage.since_line, outage.next_line = 0, now + outage.gap
        outage.gap = min(outage.gap * 2, BACKOFF_S[1])
        return True


OUTAGES = OutageLog()  # the process's


def note_outage(logger: logging.Logger, kind: str, exc: BaseException, what: str) -> bool:
    return OUTAGES.note(logger, kind, exc, what)


def log_failure(logger: logging.Logger, exc: BaseException, message: str, *args: object,
                traceback: bool = True) -> None:
    """A background pass or step that failed: an outage of the database or Redis as :func:`note_outage`
    has it (one line per back-off, no traceback); anything else as an ERROR, with its traceback
    unless ``traceback`` is False (the type of the error is always in ``error_type``)."""
    if (kind := unavailable(exc)) is not None:
        note_outage(logger, kind, exc, message % args if args else message)
        return
    logger.error(message, *args, exc_info=exc if traceback else None, extra={"error_type": type(exc).__name__})
