"""The database handle: engine, sessions and schema migrations (Alembic, bundled in the package)."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from models import json_codec
from models.sqlite_driver import WriteGate, install

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_LOCK_TIMEOUT_S = 30  # a writer waits this long for another's transaction, then "database is locked"
# PostgreSQL, whose host may stop answering without refusing (frozen, partitioned: no RST), when every
# call would otherwise wait for the kernel's TCP timeouts (many minutes) and every request with it.
# Module constants rather than settings: they bound waits on a broken network, not the work, and the
# work that may legitimately run long gets its own (migrations run without a command limit; a batch
# job may build its Database with ``command_timeout=math.inf``).
PG_CONNECT_TIMEOUT_S = 5.0  # a new connection (TCP, TLS, authentication) takes milliseconds; asyncpg waits 60 s
# one statement, the pool's pre-ping included: the service's are short (batched purges, paged lists),
# and a minute leaves room for a slow one on a big table (a digest over months, an export); a statement
# still running after this is cancelled and its request answered 503, not left to hang (readiness
# says "not ready" long before: PING_TIMEOUT_S)
PG_COMMAND_TIMEOUT_S = 60.0
PG_POOL_TIMEOUT_S = 10.0  # a request waits this long for a free pooled connection, then is answered 503
PING_TIMEOUT_S = 3.0  # readiness: a database that does not answer SELECT 1 within this is "not ready"


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

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10,
                 connect_timeout: float | None = None, command_timeout: float | None = None) -> None:
        """On PostgreSQL, ``connect_timeout`` bounds opening a connection and ``command_timeout`` each
        statement (None: PG_CONNECT_TIMEOUT_S and PG_COMMAND_TIMEOUT_S; ``math.inf``: no limit, for a
        batch job whose statements may run long), so that a database host that stops answering fails
        calls instead of hanging them."""
        self.url = url
        self.dialect = url.split(":", 1)[0].split("+", 1)[0]
        self.connect_timeout = PG_CONNECT_TIMEOUT_S if connect_timeout is None else connect_timeout
        command_timeout = PG_COMMAND_TIMEOUT_S if command_timeout is None else command_timeout
        self.asyncpg = url.split(":", 1)[0] == "postgresql+asyncpg"  # the arguments below are asyncpg's
        kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": self.dialect != "sqlite",  # a file does not drop
                                  # JSON columns (JSONB through asyncpg's codec too): faster, same values
                                  "json_serializer": json_codec.dumps, "json_deserializer": json_codec.loads}
        if self.dialect == "sqlite":
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": SQLITE_LOCK_TIMEOUT_S}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800,
                          pool_timeout=PG_POOL_TIMEOUT_S)
            if self.asyncpg:
                kwargs["connect_args"] = {"timeout": self.connect_timeout,
                                          "command_timeout": None if command_timeout == math.inf else command_timeout}
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
            # an engine of its own, without the statement limit: rewriting a large table, or building
            # an index on it, may take longer than any request should (connecting is still bounded)
            engine = create_async_engine(
                self.url, poolclass=NullPool, json_serializer=json_codec.dumps, json_deserializer=json_codec.loads,
                connect_args={"timeout": self.connect_timeout} if self.asyncpg else {})
            try:
                async with engine.begin() as conn:
                    await conn.run_sync(_run_alembic, verb, revision)
            finally:
                await engine.dispose()
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

    async def ping(self, timeout: float | None = None) -> bool:
        """Whether the database answers ``SELECT 1`` within ``timeout`` seconds (PING_TIMEOUT_S unless
        given); never raises, never waits longer: a frozen host is "no", not a hung probe."""
        async def select_one() -> None:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        return await within(select_one(), PING_TIMEOUT_S if timeout is None else timeout)

    async def close(self) -> None:
        await self.engine.dispose()


_DETACHED: set[asyncio.Task] = set()


async def within(work: Any, seconds: float) -> bool:
    """Whether ``work`` (a coroutine) finished without an error within ``seconds``. Past them it is
    cancelled and left to end on its own: giving up a connection to a host that does not answer has
    waits of its own (closing it, returning it to the pool), which are not the caller's."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        _DETACHED.add(task)
        task.add_done_callback(lambda t: (_DETACHED.discard(t), t.cancelled() or t.exception()))
        return False
    return not task.cancelled() and task.exception() is None


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
