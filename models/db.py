"""The database handle: engine, sessions and schema migrations (Alembic, bundled in the package)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from models import json_codec
from models.sqlite_driver import WriteGate, install

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_LOCK_TIMEOUT_S = 30  # a writer waits this long for another's transaction, then "database is locked"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """WAL lets readers run beside the writer; busy_timeout makes writers queue instead of failing."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_LOCK_TIMEOUT_S * 1000}")
    cur.close()


class Database:
    """One engine per process. ``session()`` yields an ``AsyncSession``; callers commit."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = url
        self.dialect = url.split(":", 1)[0].split("+", 1)[0]
        kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": self.dialect != "sqlite",  # a file does not drop
                                  # JSON columns (JSONB through asyncpg's codec too): faster, same values
                                  "json_serializer": json_codec.dumps, "json_deserializer": json_codec.loads}
        if self.dialect == "sqlite":
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": SQLITE_LOCK_TIMEOUT_S}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.dialect == "sqlite":
            install()
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            self.write_gate = gate = WriteGate(SQLITE_LOCK_TIMEOUT_S)  # writers queue here, not in busy handlers
            event.listen(self.engine.sync_engine, "connect", lambda conn, _rec: gate.attach(conn))
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Any) -> Database:
        return cls(settings.effective_database_url)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            yield session

    async def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema to ``revision``; safe on every start (a no-op when current)."""
        await self._migrate("upgrade", revision)

    async def downgrade(self, revision: str) -> None:
        await self._migrate("downgrade", revision)

    async def _migrate(self, verb: str, revision: str) -> None:
        """On SQLite a column change rebuilds its table (copy, drop, rename: Alembic's batch mode), and
        with foreign keys enforced dropping the old table deletes or nulls every row that refers to it
        (bot tokens, case assignments...). So foreign keys are off for the migration, as SQLite's own
        procedure for altering a table asks: set before the transaction (inside one the pragma is a
        no-op), which is begun explicitly so that the DDL is in it too and a failure leaves nothing
        half done. Rows the migration left without their parent fail it; orphans from before do not
        (a row deleted by hand in the sqlite3 shell must not stop every start). Whatever happens, the
        connection goes back to the pool enforcing foreign keys."""
        if not self.is_sqlite:
            async with self.engine.begin() as conn:
                await conn.run_sync(_run_alembic, verb, revision)
            return
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            try:
                before = await _orphans(conn)
                await conn.exec_driver_sql("BEGIN")
                await conn.run_sync(_run_alembic, verb, revision)
                broken = await _orphans(conn) - before
                if broken:
                    raise RuntimeError(f"migration {verb} to {revision} would leave rows without their parent "
                                       f"(table, parent): {sorted(broken)[:5]}")
                await conn.commit()
            finally:
                if conn.in_transaction():
                    await conn.rollback()
                await conn.exec_driver_sql("PRAGMA foreign_keys=ON")

    async def current_revision(self) -> str | None:
        async with self.engine.connect() as conn:
            try:
                row = (await conn.execute(text("SELECT version_num FROM alembic_version"))).first()
            except Exception:  # noqa: BLE001 - no table yet: an empty database
                return None
            return row[0] if row else None

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - readiness reports, it does not raise
            return False

    async def close(self) -> None:
        await self.engine.dispose()


def alembic_config(connection: Any = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


async def _orphans(conn: Any) -> Counter:
    """SQLite's foreign-key check as counts per (table, parent table): a table rebuilt keeps its rows,
    not always their rowids."""
    return Counter((table, parent) for table, _rowid, parent, _fk in
                   (await conn.exec_driver_sql("PRAGMA foreign_key_check")).fetchall())


def _run_alembic(sync_conn: Any, verb: str, revision: str) -> None:
    from alembic import command

    getattr(command, verb)(alembic_config(sync_conn), revision)
