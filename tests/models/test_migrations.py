"""Migrations create the same schema from an empty database on SQLite and PostgreSQL."""

import pytest
from sqlalchemy import inspect

from models import Base
from models.db import Database


async def _tables(db: Database) -> dict[str, set[str]]:
    async with db.engine.connect() as conn:
        return await conn.run_sync(
            lambda c: {t: {col["name"] for col in inspect(c).get_columns(t)} for t in inspect(c).get_table_names()}
        )


async def test_upgrade_from_empty_creates_every_model_table(any_database_url):
    db = Database(any_database_url)
    try:
        assert await db.current_revision() is None
        await db.upgrade()
        tables = await _tables(db)
        for name, table in Base.metadata.tables.items():
            assert name in tables, f"migration lacks table {name}"
            assert {c.name for c in table.columns} == tables[name], f"columns of {name} differ from the model"
        assert await db.current_revision() is not None
    finally:
        await db.close()


async def test_upgrade_is_idempotent_and_downgrade_empties(any_database_url):
    db = Database(any_database_url)
    try:
        await db.upgrade()
        head = await db.current_revision()
        await db.upgrade()
        assert await db.current_revision() == head
        await db.downgrade("base")
        assert set(await _tables(db)) <= {"alembic_version"}
        await db.upgrade()
        assert await db.current_revision() == head
    finally:
        await db.close()


async def test_0008_adds_last_used_to_existing_tokens_and_drops_it_again(any_database_url):
    """A database with tokens from before 0008 keeps them, unused ("never"), through the upgrade and
    back down."""
    from sqlalchemy import text

    db = Database(any_database_url)
    try:
        await db.upgrade("0007")
        async with db.engine.begin() as conn:
            await conn.execute(text("INSERT INTO users (username, password_hash, role, active, created_at) "
                                    "VALUES ('zed', 'x', 'agent', true, CURRENT_TIMESTAMP)"))
            await conn.execute(text("INSERT INTO api_tokens (user_id, name, token_hash, scopes, created_at) "
                                    "SELECT id, 'bot', 'h', '[]', CURRENT_TIMESTAMP FROM users"))
        await db.upgrade("0008")
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT name, last_used_at FROM api_tokens"))).all() == [("bot", None)]
        await db.downgrade("0007")
        assert "last_used_at" not in (await _tables(db))["api_tokens"]
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT name FROM api_tokens"))).all() == [("bot",)]
    finally:
        await db.close()


async def test_0014_gives_existing_users_the_first_session_epoch_and_drops_it_again(any_database_url):
    """Users from before 0014 get epoch 0 (NOT NULL, so every cookie check compares numbers) and
    keep everything else through the upgrade and back down; new rows need not name it."""
    from sqlalchemy import text

    db = Database(any_database_url)
    try:
        await db.upgrade("0013")
        async with db.engine.begin() as conn:
            await conn.execute(text("INSERT INTO users (username, password_hash, role, active, created_at) "
                                    "VALUES ('zed', 'x', 'agent', true, CURRENT_TIMESTAMP)"))
        await db.upgrade("0014")
        async with db.engine.begin() as conn:
            await conn.execute(text("INSERT INTO users (username, password_hash, role, active, created_at) "
                                    "VALUES ('amy', 'y', 'admin', true, CURRENT_TIMESTAMP)"))
            rows = (await conn.execute(text("SELECT username, role, session_epoch FROM users ORDER BY id"))).all()
        assert rows == [("zed", "agent", 0), ("amy", "admin", 0)]
        await db.downgrade("0013")
        assert "session_epoch" not in (await _tables(db))["users"]
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT username FROM users ORDER BY id"))).all() == [("zed",), ("amy",)]
    finally:
        await db.close()


REFERRING = ("SELECT (SELECT count(*) FROM api_tokens), (SELECT assigned_to FROM cases WHERE id = 1), "
             "(SELECT claimed_by FROM conversations WHERE id = 1), (SELECT user_id FROM case_messages WHERE id = 1), "
             "(SELECT count(*) FROM mentions WHERE conversation_id = 1)")


async def test_rebuilding_a_table_keeps_the_rows_that_refer_to_it(any_database_url):
    """On SQLite a column change rebuilds the table; with foreign keys enforced, dropping the old copy
    deleted every bot token and nulled every claim and case assignment (0014 on users), and a
    downgrade of 0010 (conversations) took their posts with it. Up to head and back, nothing moves."""
    from sqlalchemy import text

    from models.db import Database

    db = Database(any_database_url)
    try:
        await db.upgrade("0009")
        async with db.engine.begin() as conn:
            for sql in (
                "INSERT INTO users (id, username, password_hash, role, active, created_at) "
                "VALUES (1, 'zed', 'x', 'agent', true, CURRENT_TIMESTAMP)",
                "INSERT INTO api_tokens (user_id, name, token_hash, scopes, created_at) "
                "VALUES (1, 'bot', 'h', '[]', CURRENT_TIMESTAMP)",
                "INSERT INTO conversations (id, thread_key, platform, status, tags, claimed_by, created_at, "
                "last_activity_at) VALUES (1, 'x:1', 'x', 'open', '[]', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
                "INSERT INTO cases (id, category, status, identity_pending, assigned_to, created_at) "
                "VALUES (1, 'security', 'open', true, 1, CURRENT_TIMESTAMP)",
                "INSERT INTO case_messages (id, case_id, sender, user_id, body, created_at) "
                "VALUES (1, 1, 'agent', 1, 'hi', CURRENT_TIMESTAMP)",
            ):
                await conn.execute(text(sql))
            await conn.execute(text(
                "INSERT INTO mentions (platform, external_id, conversation_id, text, created_at, ingested_at, "
                "content_hash, is_public, hidden, deleted, kind, raw) VALUES ('x', 'e1', 1, 'hello', "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'h1', true, false, false, 'post', '{}')"))
            before = tuple((await conn.execute(text(REFERRING))).one())
        assert before == (1, 1, 1, 1, 1)
        await db.upgrade()
        async with db.engine.connect() as conn:
            assert tuple((await conn.execute(text(REFERRING))).one()) == before
        await db.downgrade("0009")
        async with db.engine.connect() as conn:
            assert tuple((await conn.execute(text(REFERRING))).one()) == before
            if db.is_sqlite:  # and the pool's connections enforce foreign keys again
                assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
    finally:
        await db.close()


async def _orphan_token(db) -> None:  # noqa: ANN001
    """A token whose user is gone, as a `DELETE FROM users` in the sqlite3 shell (foreign keys off) leaves."""
    async with db.engine.connect() as conn:
        await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        await conn.exec_driver_sql("INSERT INTO api_tokens (user_id, name, token_hash, scopes, created_at) "
                                   "VALUES (999, 'bot', 'h', '[]', CURRENT_TIMESTAMP)")
        await conn.commit()
        await conn.exec_driver_sql("PRAGMA foreign_keys=ON")


async def test_an_orphan_from_before_does_not_stop_a_migration_on_sqlite(sqlite_url):
    """Every start migrates: a row left without its parent by hand must not stop them all; the
    migration keeps it as it found it."""
    from models.db import Database

    db = Database(sqlite_url)
    try:
        await db.upgrade("0013")
        await _orphan_token(db)
        await db.upgrade()  # rebuilds users (0014) with the orphan there
        await db.upgrade()  # and starts again
        assert await db.current_revision() != "0013"
        async with db.engine.connect() as conn:
            assert (await conn.exec_driver_sql("SELECT count(*) FROM api_tokens")).scalar() == 1
    finally:
        await db.close()


async def test_a_failed_sqlite_migration_leaves_nothing_half_done_and_foreign_keys_on(sqlite_url, monkeypatch):
    """Its DDL is in the transaction a failure rolls back (else a half-built table stops every later
    start), and the connection goes back to the pool enforcing foreign keys."""
    import models.db as mdb
    from models.db import Database

    db = Database(sqlite_url)
    try:
        await db.upgrade()

        def fails_midway(sync_conn, verb, revision):  # noqa: ANN001, ANN202
            sync_conn.exec_driver_sql("CREATE TABLE _half_built (x int)")
            sync_conn.exec_driver_sql("UPDATE alembic_version SET version_num = version_num")
            raise RuntimeError("a migration step failed")

        def orphans_a_row(sync_conn, verb, revision):  # noqa: ANN001, ANN202
            sync_conn.exec_driver_sql("CREATE TABLE _half_built (x int)")
            sync_conn.exec_driver_sql("INSERT INTO api_tokens (user_id, name, token_hash, scopes, created_at) "
                                      "VALUES (999, 'bot', 'h', '[]', CURRENT_TIMESTAMP)")

        for step, error in ((fails_midway, "a migration step failed"), (orphans_a_row, "without their parent")):
            monkeypatch.setattr(mdb, "_run_alembic", step)
            with pytest.raises(RuntimeError, match=error):
                await db.upgrade()
            async with db.engine.connect() as conn:
                assert (await conn.exec_driver_sql(
                    "SELECT count(*) FROM sqlite_master WHERE name = '_half_built'")).scalar() == 0
                assert (await conn.exec_driver_sql("SELECT count(*) FROM api_tokens")).scalar() == 0
                assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
    finally:
        await db.close()
