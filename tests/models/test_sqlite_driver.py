"""On SQLite a statement is one trip to aiosqlite's thread (it was four: cursor, execute, fetch,
close), and the cursor SQLAlchemy sees still behaves as a DB-API cursor: rows, rowcount, lastrowid,
executemany and errors."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from models.db import Database


@pytest.fixture
async def db(tmp_path):
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/driver.db")
    async with database.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL)"))
    yield database
    await database.close()


async def test_a_select_is_one_trip_to_the_sqlite_thread(db):
    async with db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        aio = raw.driver_connection  # the aiosqlite connection
        trips = []
        original = aio._execute

        async def counted(fn, *args, **kwargs):
            trips.append(fn)
            return await original(fn, *args, **kwargs)

        aio._execute = counted
        try:
            rows = (await conn.execute(text("SELECT 1 AS a, 'x' AS b UNION ALL SELECT 2, 'y'"))).all()
        finally:
            aio._execute = original
    assert [tuple(r) for r in rows] == [(1, "x"), (2, "y")]
    assert len(trips) == 1


async def test_rowcount_lastrowid_and_executemany_behave_as_in_the_db_api(db):
    async with db.engine.begin() as conn:
        result = await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
        assert result.lastrowid == 1
        await conn.execute(text("INSERT INTO t (name) VALUES (:n)"), [{"n": "b"}, {"n": "c"}, {"n": "d"}])
        updated = await conn.execute(text("UPDATE t SET name = name || '!' WHERE id > 1"))
        assert updated.rowcount == 3
        returned = (await conn.execute(text("INSERT INTO t (name) VALUES ('e') RETURNING id"))).scalar_one()
        assert returned == 5
        names = (await conn.execute(text("SELECT name FROM t ORDER BY id"))).scalars().all()
    assert names == ["a", "b!", "c!", "d!", "e"]


async def test_a_constraint_violation_is_sqlalchemys_integrity_error_and_the_session_recovers(db):
    async with db.session() as session:
        await session.execute(text("INSERT INTO t (name) VALUES ('same')"))
        await session.commit()
        with pytest.raises(IntegrityError):
            await session.execute(text("INSERT INTO t (name) VALUES ('same')"))
        await session.rollback()
        assert (await session.execute(text("SELECT count(*) FROM t"))).scalar_one() == 1
