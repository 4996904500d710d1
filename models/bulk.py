"""Batch writes with SQLAlchemy Core, for the pipeline's hot paths.

The ORM's unit of work (an object per row, attribute events, a flush that sorts and groups them)
was most of a stage's time on the event loop; a stage that knows its rows writes them with one
statement per table instead (a multi-row INSERT, an executemany UPDATE), in the caller's
transaction, and reads rows as plain columns. Column defaults (``created_at``...) apply as they do
through the ORM.

Hot statements are built once, from the tables' columns (``Model.__table__.c``), with the batch's
ids bound at execution (:data:`IDS`): a statement built per batch was coerced value by value and
keyed for the compiled cache every time, and one built from ORM attributes also went through the
ORM's compile state, autoflush and row processing; together that was twice the cost of the query.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from functools import cache
from typing import Any, Self

from sqlalchemy import ColumnElement, Insert, Table, Update, and_, bindparam, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

IDS = bindparam("ids", expanding=True)  # ``column.in_(IDS)``, executed with ``{"ids": [...]}``
FIRSTS, SECONDS = bindparam("firsts", expanding=True), bindparam("seconds", expanding=True)


def pairs_in(first: Any, second: Any) -> ColumnElement[bool]:
    """``(first, second) IN pairs`` written as two INs, executed with :func:`pair_params`. SQLite
    reads a row-value IN (``(a, b) IN (VALUES ...)``) by scanning the whole index, a cost that grew
    with the table on every ingested batch; it searches the index for ``a IN (...) AND b IN (...)``.
    Rows of the cross product that are not among the pairs are the caller's to drop."""
    return and_(first.in_(FIRSTS), second.in_(SECONDS))


def pair_params(pairs: Iterable[tuple[Any, Any]]) -> dict[str, list]:
    pairs = list(pairs)
    return {"firsts": list({a for a, _ in pairs}), "seconds": list({b for _, b in pairs})}


class Columns(tuple):
    """Columns read together as one :class:`Record` (their names worked out once)."""

    def __new__(cls, *columns: Any) -> Self:
        self = super().__new__(cls, columns)
        self.names = tuple(c.key for c in columns)
        return self


class Record:
    """A row read as plain columns (``id`` set) or one to insert. Its columns are plain attributes
    (reading one costs a tenth of a result row's lookup); ``set`` changes them and, on a stored row,
    keeps those that differ for one UPDATE (:func:`update_rows`)."""

    def __init__(self, values: dict[str, Any], id: int | None = None) -> None:
        self.__dict__.update(values)
        self.id = id
        self.changes: dict[str, Any] = {}

    @classmethod
    def of(cls, row: Any) -> Record:
        """A stored row from a result row of named columns, one of them ``id``."""
        values = row._asdict()
        return cls(values, values.get("id"))

    @property
    def values(self) -> dict[str, Any]:
        """The columns to insert."""
        return {k: v for k, v in self.__dict__.items() if k not in _OWN}

    def set(self, **values: Any) -> None:
        """Change columns; a stored row remembers those that differ from what it holds."""
        if self.id is not None:
            held = self.__dict__
            self.changes.update({k: v for k, v in values.items() if v != held.get(k)})
        self.__dict__.update(values)


_OWN = frozenset({"id", "changes"})  # a Record's own attributes, not columns to insert


def records(row: Any, *groups: Columns) -> list[Record | None]:
    """A result row of several tables' columns (``groups``, each led by its ``id``) as one Record per
    table; None where an outer join found no row."""
    out: list[Record | None] = []
    start = 0
    for columns in groups:
        values = dict(zip(columns.names, row[start:start + len(columns)]))
        start += len(columns)
        out.append(Record(values, values["id"]) if values["id"] is not None else None)
    return out


async def insert_rows(session: AsyncSession, model: Any, rows: list[dict[str, Any]], key: tuple[str, ...]) -> list[int]:
    """Insert ``rows`` (dicts with the same keys) into ``model``'s table; returns their ids in order,
    matched by the unique ``key`` columns returned with them (SQLite cannot return the rows of a
    multi-row INSERT in order, and asking for that order makes it one statement per row)."""
    if not rows:
        return []
    ids = {tuple(r[1:]): r[0] for r in await session.execute(_insert(model.__table__, key), rows)}
    return [ids[tuple(r[k] for k in key)] for r in rows]


async def add_rows(session: AsyncSession, model: Any, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys) when their ids are not needed."""
    if rows:
        await session.execute(_insert(model.__table__), rows)


async def update_rows(session: AsyncSession, model: Any, changes: Iterable[tuple[int, dict[str, Any]]]) -> None:
    """UPDATE rows by id with their changed values; rows changing the same columns share one
    executemany."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row_id, values in changes:
        if values:
            groups[tuple(sorted(values))].append({"row_id": row_id, **{f"new_{k}": v for k, v in values.items()}})
    for columns, params in groups.items():
        await session.execute(_update(model.__table__, columns), params)


@cache
def _insert(table: Table, key: tuple[str, ...] = ()) -> Insert:
    """INSERT into ``table``, returning ``id`` and the ``key`` columns when there are any."""
    stmt = insert(table)
    return stmt.returning(table.c.id, *(table.c[k] for k in key)) if key else stmt


@cache
def _update(table: Table, columns: tuple[str, ...]) -> Update:
    """UPDATE ``columns`` of the row whose id is bound as ``row_id`` (new values as ``new_<column>``)."""
    return update(table).where(table.c.id == bindparam("row_id")).values({c: bindparam(f"new_{c}") for c in columns})
