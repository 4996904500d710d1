"""Stage workers: a poison message is dead-lettered alone, but a database that stops answering is
waited out — the batch is held and goes through when it is back, no message loses an attempt."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import func, select

from listener.protocol import NormalizedMention
from models import Mention
from models.db import Database
from service import workers
from service.bus.memory import InProcessBus
from service.pipeline import submit
from service.stages.base import StageContext
from service.stages.ingest import IngestStage
from service.workers import StageWorker


def mentions(n: int) -> list[NormalizedMention]:
    return [NormalizedMention(platform="x", external_id=f"w{i}", text=f"app down again #{i}",
                              created_at=datetime(2026, 12, 1, 10, i % 60, tzinfo=UTC)) for i in range(n)]


async def stored(db: Database) -> int:
    async with db.session() as s:
        return await s.scalar(select(func.count()).select_from(Mention))


async def admin(postgres_url: str, *statements: str) -> None:
    dsn = postgres_url.replace("postgresql+asyncpg://", "postgresql://").rsplit("/", 1)[0] + "/postgres"
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def quick_backoff(monkeypatch):
    monkeypatch.setattr(workers, "OUTAGE_BACKOFF", (0.05, 0.2))


@asynccontextmanager
async def ingesting_while_the_database_is_away(postgres_url: str, n: int):
    """A worker with ``n`` mentions to ingest starts its batch while PostgreSQL refuses connections
    to its database (and has dropped the ones it had); yields (worker, task, db, bus), then lets
    connections in again."""
    name = postgres_url.rsplit("/", 1)[1]
    db = Database(postgres_url)
    await db.upgrade()
    bus = InProcessBus(max_deliveries=2)
    await submit(bus, mentions(n))
    worker = StageWorker(bus, IngestStage(StageContext(settings=None, db=db)), batch_size=50, block_ms=50)
    await bus.ensure_group("ingest", "ingest")
    await admin(postgres_url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false',
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
    try:
        yield worker, asyncio.create_task(worker.run_once()), db, bus
    finally:
        await admin(postgres_url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


async def test_a_poison_message_is_retried_alone_and_dead_lettered_while_the_rest_go_through(sqlite_url):
    db = Database(sqlite_url)
    await db.upgrade()
    bus = InProcessBus(max_deliveries=2)
    await submit(bus, mentions(5))
    await bus.publish("ingest", {"not": "a mention"}, key="poison")
    worker = StageWorker(bus, IngestStage(StageContext(settings=None, db=db)), batch_size=50, block_ms=50)
    await bus.ensure_group("ingest", "ingest")
    while await worker.run_once():
        pass
    assert await stored(db) == 5
    assert [d.key for d in await bus.dead_letters()] == ["poison"]
    await db.close()


async def test_a_database_outage_holds_the_batch_and_it_goes_through_when_the_database_is_back(
        postgres_url, quick_backoff):
    async with ingesting_while_the_database_is_away(postgres_url, 20) as (_, handling, db, bus):
        await asyncio.sleep(1.5)  # many back-off rounds, far more than the messages' two attempts
        assert not handling.done(), "the worker gave up on a batch while the database was away"
        assert await bus.dead_letters() == []
    assert await asyncio.wait_for(handling, 30) == 20
    assert await stored(db) == 20
    assert await bus.dead_letters() == []
    assert (await bus.lag("ingest", "ingest"), await bus.pending("ingest", "ingest")) == (0, 0)
    await bus.ensure_group("triage", "triage")
    assert await bus.lag("triage", "triage") == 20  # and each went on, once
    await db.close()


async def test_stopping_during_an_outage_leaves_the_batch_unacknowledged_for_the_next_worker(
        postgres_url, quick_backoff):
    async with ingesting_while_the_database_is_away(postgres_url, 3) as (worker, handling, db, bus):
        await asyncio.sleep(0.5)
        worker.stop.set()
        await asyncio.wait_for(handling, 10)
        assert await bus.pending("ingest", "ingest") == 3
        assert await bus.dead_letters() == []
    await db.close()


async def test_a_worker_drops_the_entries_its_topic_has_acknowledged(sqlite_url, redis_url, bus_prefix, monkeypatch):
    """Ingest entries hold whole posts: once handled they do not stay in Redis for ever."""
    import redis.asyncio as aredis

    from service.bus.redis_streams import RedisStreamsBus

    monkeypatch.setattr(workers, "TRIM_EVERY_S", 0.0)
    db = Database(sqlite_url)
    await db.upgrade()
    bus = RedisStreamsBus(redis_url, prefix=bus_prefix, max_deliveries=2)
    admin = aredis.Redis.from_url(redis_url)
    try:
        await submit(bus, mentions(7))
        worker = StageWorker(bus, IngestStage(StageContext(settings=None, db=db)), batch_size=50, block_ms=50)
        await bus.ensure_group("ingest", "ingest")
        assert await worker.run_once() == 7
        assert await stored(db) == 7
        assert await admin.xlen(bus.stream("ingest")) == 0
        assert await admin.xlen(bus.stream("triage")) == 7  # the next stage's topic: nobody has read it yet
    finally:
        for key in [k async for k in admin.scan_iter(f"{bus_prefix}:*")]:
            await admin.delete(key)
        await admin.aclose()
        await bus.close()
        await db.close()


# --- embedded mode: another process holds SQLite's write lock ---------------------------------------


@pytest.fixture
def short_lock_wait(monkeypatch):
    """SQLite's busy timeout (and the engine's write gate) at 1 s instead of 30: "database is locked" soon."""
    from models import db as db_module

    monkeypatch.setattr(db_module, "SQLITE_LOCK_TIMEOUT_S", 1)


async def test_a_write_lock_held_by_another_process_holds_the_batch_and_spends_no_attempt(
        sqlite_url, tmp_path, quick_backoff, short_lock_wait, caplog):
    """``SELECT 1`` answers while another connection holds ``BEGIN IMMEDIATE``, but every write fails
    with "database is locked": the batch waits for the lock, it is not dead-lettered as if at fault."""
    db = Database(sqlite_url)
    await db.upgrade()
    bus = InProcessBus(max_deliveries=2)
    await submit(bus, mentions(4))
    worker = StageWorker(bus, IngestStage(StageContext(settings=None, db=db)), batch_size=50, block_ms=50)
    await bus.ensure_group("ingest", "ingest")
    shell = sqlite3.connect(tmp_path / "socialcare.db", isolation_level=None)  # an admin's sqlite3 shell
    shell.execute("BEGIN IMMEDIATE")
    try:
        handling = asyncio.create_task(worker.run_once())
        await asyncio.sleep(5)  # several 1 s lock waits: far more than the messages' two attempts
        assert await db.ping(), "the database answers reads meanwhile"
        assert not handling.done(), "the worker gave up on a batch while the write lock was held"
        assert await bus.dead_letters() == []
    finally:
        shell.execute("COMMIT")
        shell.close()
    assert await asyncio.wait_for(handling, 30) == 4
    assert await stored(db) == 4 and await bus.dead_letters() == []
    assert (await bus.lag("ingest", "ingest"), await bus.pending("ingest", "ingest")) == (0, 0)
    assert any("locked by another writer" in r.getMessage() for r in caplog.records)
    await db.close()


def test_only_a_lock_held_elsewhere_counts_as_busy():
    from sqlalchemy.exc import OperationalError

    locked = sqlite3.OperationalError("database is locked")
    assert workers.database_busy(OperationalError("INSERT ...", {}, locked))  # as SQLAlchemy raises it
    assert workers.database_busy(RuntimeError("wrapped")) is False
    try:
        try:
            raise locked
        except sqlite3.OperationalError as exc:
            raise RuntimeError("a stage's own error") from exc
    except RuntimeError as chained:
        assert workers.database_busy(chained)
    assert not workers.database_busy(OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: x")))


async def test_every_dead_letter_the_process_writes_is_counted_the_buss_own_burials_too(redis_url, bus_prefix):
    """socialcare_dead_letters_total counted a worker's failed message only: an undecodable entry and
    one delivered too often without an ack, which the bus buries by itself, went uncounted."""
    import redis.asyncio as aredis

    from service.bus.redis_streams import RedisStreamsBus
    from service.metrics import Metrics
    from tests.redis_keys import delete_redis_keys

    class Failing:
        name, ctx = "ingest", None

        async def handle(self, batch):
            if any(env.key == "poison" for env in batch):
                raise ValueError("poison")
            return []

    metrics = Metrics()
    bus = RedisStreamsBus(redis_url, prefix=bus_prefix, max_deliveries=1, claim_idle_ms=50)
    admin = aredis.Redis.from_url(redis_url)
    try:
        await bus.ensure_group("ingest", "ingest")
        await bus.publish("ingest", {"n": 1}, "crashes its consumer")
        assert await bus.read("ingest", "ingest", "died", 1, 0)  # never acked
        await asyncio.sleep(0.1)
        assert await bus.read("ingest", "ingest", "died-too", 1, 0)  # claimed alone, never acked either
        await admin.xadd(bus.stream("ingest"), {b"k": b"\xff not utf-8"})
        await bus.publish("ingest", {"n": 2}, "poison")
        await asyncio.sleep(0.2)
        worker = StageWorker(bus, Failing(), consumer="live", block_ms=10, timeout=None, metrics=metrics)
        StageWorker(bus, Failing(), consumer="live-2", metrics=metrics)  # a second worker sharing the bus
        while await worker.run_once():
            pass
        reasons = sorted(d.reason.split(" ")[0] for d in await bus.dead_letters())
        assert reasons == ["ValueError:", "delivered", "undecodable"]
        assert metrics.dead_letters.labels("ingest")._value.get() == 3
        assert metrics.errors.labels("ingest")._value.get() == 1
    finally:
        await admin.aclose()
        await bus.close()
        delete_redis_keys(redis_url, bus_prefix)


async def test_consumers_of_stopped_and_dead_workers_are_removed_but_never_one_holding_entries(
        redis_url, bus_prefix):
    """Consumer names carry the pid: XINFO CONSUMERS gained one per restart. A worker removes its own
    on a clean stop, and on start those of its group long idle with nothing pending; one with pending
    entries stays, for the claims to take them over."""
    from service.bus.redis_streams import RedisStreamsBus
    from tests.redis_keys import delete_redis_keys

    class Passing:
        name, ctx = "ingest", None

        async def handle(self, batch):
            return []

    bus = RedisStreamsBus(redis_url, prefix=bus_prefix, claim_idle_ms=60_000)
    try:
        await bus.ensure_group("ingest", "ingest")
        await bus.publish_many("ingest", [("a", {"n": 1}), ("b", {"n": 2})])
        got = await bus.read("ingest", "ingest", "ingest-old-host-111-0", 1, 0)
        await bus.ack("ingest", "ingest", [got[0].id])  # stopped before this release: nothing pending
        assert await bus.read("ingest", "ingest", "ingest-old-host-222-0", 1, 0)  # died holding one
        await asyncio.sleep(0.3)

        async def names() -> list[str]:
            return sorted(c["name"].decode() for c in await bus.client.xinfo_consumers(bus.stream("ingest"), "ingest"))

        stop = asyncio.Event()
        worker = StageWorker(bus, Passing(), consumer="ingest-new-host-333-0", block_ms=20, timeout=None,
                             forget_idle_ms=200)
        running = asyncio.create_task(worker.run(stop))
        await bus.publish("ingest", {"n": 3}, "c")
        for _ in range(100):
            if await bus.lag("ingest", "ingest") == 0 and await bus.pending("ingest", "ingest") == 1:
                break
            await asyncio.sleep(0.05)
        assert await names() == ["ingest-new-host-333-0", "ingest-old-host-222-0"]
        stop.set()
        await asyncio.wait_for(running, 10)
        assert await names() == ["ingest-old-host-222-0"]  # its pending entry is still to be claimed
        assert await bus.pending("ingest", "ingest") == 1
    finally:
        await bus.close()
        delete_redis_keys(redis_url, bus_prefix)
