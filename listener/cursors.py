"""Connectors' resume cursors, persisted so a restart neither loses nor repeats anything."""

from __future__ import annotations

from typing import Any

from models import ConnectorCursor
from models.base import utcnow


class CursorStore:
    def __init__(self, db: Any) -> None:
        self.db = db

    async def get(self, name: str) -> str | None:
        async with self.db.session() as session:
            row = await session.get(ConnectorCursor, name)
            return row.cursor if row else None

    async def set(self, name: str, cursor: str | None) -> None:
        async with self.db.session() as session:
            row = await session.get(ConnectorCursor, name)
            if row is None:
                session.add(ConnectorCursor(name=name, cursor=cursor))
            else:
                row.cursor, row.updated_at = cursor, utcnow()
            await session.commit()


class MemoryCursorStore:
    def __init__(self) -> None:
        self.values: dict[str, str | None] = {}

    async def get(self, name: str) -> str | None:
        return self.values.get(name)

    async def set(self, name: str, cursor: str | None) -> None:
        self.values[name] = cursor
