"""Shared by the service tests: the privacy tests' database, migrated, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from models.db import Database


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request):
    """A migrated, empty database: SQLite, then PostgreSQL (erasure and its races differ on each)."""
    database = Database(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url"))
    await database.upgrade()
    yield database
    await database.close()
