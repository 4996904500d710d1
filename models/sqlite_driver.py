"""One thread hop per SQLite statement instead of four.

aiosqlite runs every call on its connection's thread, and SQLAlchemy's adapter makes four calls per
statement (open a cursor, execute, fetch the rows, close the cursor); each is a round trip through
a queue and a wake-up of the event loop. On a busy two-core machine those hops, not SQLite, were
most of a stage's database time. This cursor does the four in one function on that same thread.

SQLite lets one transaction write at a time; a connection that finds the lock taken sleeps in its
busy handler (1, 2, 5, 10 ... 100 ms) and tries again, long after the writer before it committed.
With four stages writing to one file that sleeping was most of their database time. Connections of
one engine (:class:`WriteGate`) queue for the write lock in the event loop instead: a transaction's
first write waits its turn there and the next is woken the moment one commits or rolls back.
SQLite's own lock and busy timeout still order writers from other processes.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import weakref
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection, AsyncAdapt_aiosqlite_cursor
from sqlalchemy.util import EMPTY_DICT, await_  # SQLAlchemy 2.1 (pinned in pyproject)


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """The DB-API cursor SQLAlchemy sees; ``_cursor`` is the sqlite3 cursor of the last statement."""

    __slots__ = ()

    def __init__(self, adapt_connection: Any) -> None:  # no hop: the sqlite3 cursor is made on execute
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()

    @property
    def description(self) -> Any:
        return self._cursor.description if self._cursor is not None else None

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount if self._cursor is not None else -1

    @property
    def lastrowid(self) -> Any:
        return self._cursor.lastrowid if self._cursor is not None else None

    def _run(self, method: str, operation: Any, parameters: Any) -> Any:
        conn = self._connection._conn  # the sqlite3 connection, owned by aiosqlite's thread

        def work() -> tuple[Any, list | None]:
            cur = conn.cursor()
            getattr(cur, method)(operation, parameters)
            rows = cur.fetchall() if cur.description else None
            cur.close()  # in its own thread; description, rowcount and lastrowid stay readable
            return cur, rows

        try:
            if (gate := getattr(self._connection, "sc_gate", None)) and _writes(operation):
                await_(gate.enter(self._connection))
            cur, rows = await_(self._connection._execute(work))
        except Exception as error:  # noqa: BLE001 - translated to the DB-API error, as the adapter does
            self._adapt_connection._handle_exception(error)
        self._cursor = cur
        self._rows = collections.deque(rows or ())
        return self

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        return self._run("execute", operation, () if parameters is None else parameters)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        return self._run("executemany", operation, seq_of_parameters)

    async def _async_soft_close(self) -> None:  # rows are fetched already; nothing is left open
        return None

    def close(self) -> None:
        self._rows.clear()


WRITES = ("INSERT", "UPDATE", "DELETE", "REPLAC")


def _writes(operation: str) -> bool:
    """A statement that makes pysqlite begin a transaction and SQLite take the write lock."""
    return operation.lstrip()[:6].upper() in WRITES


class WriteGate:
    """One write transaction at a time among an engine's connections, queued FIFO in the event loop.

    A connection enters on its transaction's first write and leaves on commit, rollback or close.
    Waiting longer than ``timeout`` is SQLite's own "database is locked", as its busy timeout was.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()

    def attach(self, dbapi_connection: Any) -> None:
        """Gate this connection (SQLAlchemy's aiosqlite adapter): from the engine's ``connect`` event."""
        if not isinstance(dbapi_connection, AsyncAdapt_aiosqlite_connection):
            return  # another SQLite driver: SQLite's own lock alone
        dbapi_connection._connection.sc_gate = self
        dbapi_connection._connection.sc_holding = None

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        return self._locks.get(loop) or self._locks.setdefault(loop, asyncio.Lock())

    def waiting(self) -> int:
        """Writers queued behind the current one (in the running loop)."""
        return len(self._lock()._waiters or ())

    async def enter(self, connection: Any) -> None:
        if connection.sc_holding is not None:
            return  # its transaction holds the gate already
        lock = self._lock()
        try:
            async with asyncio.timeout(self.timeout):
                await lock.acquire()
        except TimeoutError:
            raise sqlite3.OperationalError("database is locked") from None
        connection.sc_holding = lock


def _leave(adapted: Any) -> None:
    connection = adapted._connection
    lock = getattr(connection, "sc_holding", None)
    if lock is not None:
        connection.sc_holding = None
        lock.release()


def _releasing(method: Any) -> Any:
    def end(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        finally:
            _leave(self)

    end.sc_releasing = True
    return end


def install() -> None:
    """Make SQLAlchemy's aiosqlite connections hand out :class:`OneHopCursor` and leave their
    :class:`WriteGate` when a transaction ends (idempotent)."""
    cls = AsyncAdapt_aiosqlite_connection
    cls._cursor_cls = OneHopCursor
    for name in ("commit", "rollback", "close", "terminate"):
        method = getattr(cls, name)
        if not getattr(method, "sc_releasing", False):
            setattr(cls, name, _releasing(method))
