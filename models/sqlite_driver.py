"""One thread hop per SQLite statement instead of four.

aiosqlite runs every call on its connection's thread, and SQLAlchemy's adapter makes four calls per
statement (open a cursor, execute, fetch the rows, close the cursor); each is a round trip through
a queue and a wake-up of the event loop. On a busy two-core machine those hops, not SQLite, were
most of a stage's database time. This cursor does the four in one function on that same thread.
"""

from __future__ import annotations

import collections
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


def install() -> None:
    """Make SQLAlchemy's aiosqlite connections hand out :class:`OneHopCursor` (idempotent)."""
    AsyncAdapt_aiosqlite_connection._cursor_cls = OneHopCursor
