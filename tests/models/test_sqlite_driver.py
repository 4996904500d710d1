"""On SQLite a statement is one trip to aiosqlite's thread (it was four: cursor, execute, fetch,
close), and the cursor SQLAlchemy sees still behaves as a DB-API cursor: rows, rowcount, lastrowid,
executemany and errors. Writers of one engine queue for SQLite's write lock in the event loop, in
turn, instead of sleeping in SQLite's busy handler."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

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


# --- one writer at a time, queued in the event loop (models.sqlite_driver.WriteGate) ---------------

async def _insert(db, name: str, log: list, *, hold: asyncio.Event | None = None, fail: bool = False) -> None:
    async with db.session() as s:
        await s.execute(text("INSERT INTO t (name) VALUES (:n)"), {"n": name})
        log.append(f"{name} wrote")
        if hold is not None:
            await hold.wait()
        if fail:
            await s.rollback()
            log.append(f"{name} rolled back")
        else:
            await s.commit()
            log.append(f"{name} committed")


async def _settle() -> None:
    for _ in range(50):  # let every runnable task (and aiosqlite's thread) take its turn
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("first_fails", [False, True])
async def test_a_second_writer_waits_for_the_first_transaction_and_goes_as_soon_as_it_ends(db, first_fails):
    log: list[str] = []
    release = asyncio.Event()
    first = asyncio.create_task(_insert(db, "a", log, hold=release, fail=first_fails))
    await _settle()
    second = asyncio.create_task(_insert(db, "b", log))
    await _settle()
    third = asyncio.create_task(_insert(db, "c", log))
    await _settle()
    assert log == ["a wrote"] and not second.done()
    assert db.write_gate.waiting() == 2  # queued in the loop, not sleeping in SQLite's busy handler
    release.set()
    await asyncio.wait_for(asyncio.gather(first, second, third), 5)
    assert log[-1].endswith("committed") and f"a {'rolled back' if first_fails else 'committed'}" in log
    async with db.session() as s:
        written = list(await s.scalars(text("SELECT name FROM t ORDER BY id")))
    assert written == (["b", "c"] if first_fails else ["a", "b", "c"])  # in turn, first come first served


async def test_reads_do_not_wait_for_a_writer(db):
    log: list[str] = []
    release = asyncio.Event()
    writer = asyncio.create_task(_insert(db, "a", log, hold=release))
    await _settle()
    async with db.session() as s:
        assert (await s.execute(text("SELECT count(*) FROM t"))).scalar() == 0  # WAL: the last committed state
    release.set()
    await writer


async def test_a_writer_waiting_past_the_timeout_gets_sqlites_database_is_locked(db):
    db.write_gate.timeout = 0.2
    release = asyncio.Event()
    writer = asyncio.create_task(_insert(db, "a", [], hold=release))
    await _settle()
    with pytest.raises(OperationalError, match="database is locked"):
        await _insert(db, "b", [])
    release.set()
    await writer
    await _insert(db, "c", [])  # the gate is free again
    async with db.session() as s:
        assert set(await s.scalars(text("SELECT name FROM t"))) == {"a", "c"}


async def test_a_failed_write_keeps_nothing_locked_once_the_session_closes(db):
    await _insert(db, "a", [])
    with pytest.raises(IntegrityError):
        await _insert(db, "a", [])  # the session ends without commit: its connection is rolled back
    await asyncio.wait_for(_insert(db, "b", []), 5)
