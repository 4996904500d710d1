"""Erasure tombstones (service.tombstones) on SQLite and PostgreSQL, with the in-process bus and a
real Redis: a post the erased person published before the erasure, still on the ingest stream when
it ran, is never stored; what they publish after it is; the order between an erasure and an ingest
batch in flight holds both ways; a batch costs one lookup and no hash until the first erasure; the
retention purge removes a tombstone once older than its lifetime and the retention period."""

from __future__ import annotations

import asyncio
import os
import stat
from datetime import timedelta

import pytest
from privacy_support import SECRET_KEY, PausedBus, World, dump, found_in, settings_for
from sqlalchemy import event, select, update

from models import AuditEvent, Author, ErasureTombstone, Mention
from models.base import utcnow
from service import retention, tombstones
from service.erasure import Subject, erase
from service.pipeline import submit
from service.stages import ingest as ingest_stage
from service.stages.base import StageContext
from service.stages.ingest import IngestStage
from service.tombstones import privacy_key, subject_key
from service.workers import StageWorker

MARIA = Subject(platform="x", handle="@MariaL")


@pytest.fixture
async def bus(make_bus):
    bus = await make_bus(max_deliveries=3)
    await bus.ensure_group("ingest", "ingest")
    return bus


def stage(w: World) -> IngestStage:
    return IngestStage(StageContext(settings=w.settings, db=w.db))


async def drain(bus, ingest: IngestStage) -> int:
    worker, n = StageWorker(bus, ingest, batch_size=50, block_ms=50), 0
    while done := await worker.run_once():
        n += done
    return n


async def texts(db) -> dict[str, str | None]:
    async with db.session() as s:
        rows = await s.execute(select(Mention.text, Author.handle).join(Author, Author.id == Mention.author_id,
                                                                       isouter=True))
        return {t: h for t, h in rows}


async def test_a_post_on_the_stream_during_the_erasure_is_not_stored_and_a_later_one_is(world, bus):
    w = world
    await w.ingest(w.post("zqxstored charged twice", author="MariaL", name="Maria Lopez", user_id="id-marial"))
    then = utcnow() - timedelta(minutes=5)  # published before the erasure, still unacknowledged on the stream
    in_flight = [w.post("zqxinflight my card 4111 1111 1111 1111", author="MariaL", name="Maria Lopez",
                        user_id="id-marial", at=then),
                 w.post("zqxrenamed same account, new handle", author="maria_new", user_id="id-marial", at=then),
                 w.post("zqxbyhandle no id", author="@MARIAL", user_id=None, at=then),
                 w.post("tomword hello", author="tom_b", at=then)]
    in_flight[2].author_id = None
    await submit(bus, in_flight)
    ingest = stage(w)
    assert await erase(w.db, MARIA, actor="dpo", reason="r", secret=SECRET_KEY)
    later = w.post("zqxafter I am back", author="MariaL", name="Maria Lopez", user_id="id-marial",
                   at=utcnow() + timedelta(seconds=1))
    await submit(bus, [later])
    assert await drain(bus, ingest) == 5
    stored = await texts(w.db)
    assert stored["tomword hello"] == "tom_b"
    assert stored["zqxafter I am back"] == "MariaL"  # new data the person chose to send: stored as usual
    tables = await dump(w.db)
    for gone in ("zqxinflight", "4111 1111", "zqxrenamed", "maria_new", "zqxbyhandle"):
        assert found_in(tables, gone) == [], gone
    assert (await bus.lag("ingest", "ingest"), await bus.pending("ingest", "ingest")) == (0, 0)  # acknowledged
    assert await bus.dead_letters() == []
    await submit(bus, in_flight[:1])  # redelivered: still not stored
    await drain(bus, ingest)
    assert found_in(await dump(w.db), "zqxinflight") == []


async def test_an_ingest_batch_started_during_an_erasure_waits_for_it_and_drops_the_post(world):
    """The erasure holds the gate (PostgreSQL) or the write lock (SQLite) while it waits on the bus."""
    w = world
    await w.ingest(w.post("zqxstored", author="MariaL", user_id="id-marial"))

    paused = PausedBus()
    erasing = asyncio.create_task(erase(w.db, MARIA, actor="dpo", reason="r", secret=SECRET_KEY, bus=paused))
    await asyncio.wait_for(paused.reached.wait(), 10)
    post = w.post("zqxrace published just before", author="MariaL", user_id="id-marial",
                  at=utcnow() - timedelta(seconds=1))
    from service.bus import Envelope
    handling = asyncio.create_task(stage(w).handle([Envelope(id="1", topic="ingest", key="k",
                                                             payload={"mention": post.to_dict()})]))
    await asyncio.sleep(0.5)
    assert not handling.done()  # waiting for the erasure
    paused.release.set()
    await asyncio.wait_for(erasing, 10)
    assert await asyncio.wait_for(handling, 10) == []
    assert found_in(await dump(w.db), "zqxrace") == []


async def test_an_erasure_started_during_an_ingest_batch_waits_for_it_and_erases_what_it_stored(world, monkeypatch):
    w = world
    await w.ingest(w.post("zqxstored", author="MariaL", user_id="id-marial"))
    reached, release = asyncio.Event(), asyncio.Event()
    real = ingest_stage.ingest_batch

    async def slow(session, batch):
        results = await real(session, batch)
        reached.set()
        await release.wait()  # written, not committed
        return results

    monkeypatch.setattr(ingest_stage, "ingest_batch", slow)
    post = w.post("zqxrace in flight", author="MariaL", user_id="id-marial", at=utcnow() - timedelta(seconds=1))
    from service.bus import Envelope
    handling = asyncio.create_task(stage(w).handle([Envelope(id="1", topic="ingest", key="k",
                                                             payload={"mention": post.to_dict()})]))
    await asyncio.wait_for(reached.wait(), 10)
    erasing = asyncio.create_task(erase(w.db, MARIA, actor="dpo", reason="r", secret=SECRET_KEY))
    await asyncio.sleep(0.5)
    assert not erasing.done()  # waiting for the batch under way
    release.set()
    [out] = await asyncio.wait_for(handling, 10)
    counts = await asyncio.wait_for(erasing, 10)
    assert counts["posts"] == 2  # the one stored before and the one the batch stored meanwhile
    assert found_in(await dump(w.db), "zqxrace") == []
    assert (await w.mention(out.payload["mention_id"])).text == "[erased]"


async def test_a_batch_costs_one_lookup_and_no_hash_before_the_first_erasure(world, monkeypatch):
    w = world
    statements: list[str] = []
    event.listen(w.db.engine.sync_engine, "before_cursor_execute",
                 lambda conn, cur, sql, *a: statements.append(sql) if "erasure_tombstones" in sql else None)
    hashed = []
    real_keys = tombstones.post_keys
    monkeypatch.setattr(tombstones, "post_keys", lambda *a: hashed.append(1) or real_keys(*a))
    ingest = stage(w)
    from service.bus import Envelope

    async def batch(*posts):
        return await ingest.handle([Envelope(id=str(i), topic="ingest", key=p.external_id,
                                             payload={"mention": p.to_dict()}) for i, p in enumerate(posts)])

    await batch(*(w.post(f"hello {i}", author=f"user{i}") for i in range(20)))
    assert (len(statements), hashed) == (1, [])
    await batch(w.post("zqx before", author="MariaL", user_id="id-marial"))
    await erase(w.db, MARIA, actor="dpo", reason="r", secret=SECRET_KEY)
    statements.clear()
    await batch(w.post("one", author="tom_b"))  # the first after an erasure: sees the count change, looks again
    assert len(statements) == 2
    statements.clear()
    await batch(*(w.post(f"again {i}", author=f"user{i}") for i in range(20)))
    assert len(statements) == 1
    if not w.db.is_sqlite:
        assert "FOR SHARE OF g" in statements[0]


async def test_the_key_without_a_secret_is_kept_in_the_var_dir_for_every_process_of_the_machine(tmp_path, db):
    settings = settings_for(tmp_path, db.url, secret_key=None)
    key = privacy_key(settings)
    path = settings.var_dir / tombstones.KEY_FILE
    assert key and path.read_text() == key and privacy_key(settings) == key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert privacy_key(settings_for(tmp_path, db.url)) == SECRET_KEY
    async with db.session() as s:
        assert (await s.get(ErasureTombstone, "*")).erasures == 0  # the gate, made by the migration


def test_a_tombstone_lives_30_days_or_longer_than_a_connector_re_check_window(tmp_path, sqlite_url):
    assert tombstones.lifetime(settings_for(tmp_path, sqlite_url)) == tombstones.MIN_LIFETIME == timedelta(days=30)
    long_window = settings_for(tmp_path, sqlite_url, reddit_recheck_hours=24 * 45)  # a 45-day re-check window
    assert tombstones.lifetime(long_window) > timedelta(days=45)


async def test_the_purge_removes_tombstones_past_their_lifetime_and_the_retention_period_and_keeps_younger(world, bus):
    w = world
    for handle in ("OldErased", "YoungErased"):
        await w.ingest(w.post(f"zqx{handle.lower()} hello", author=handle))
        await erase(w.db, Subject(platform="x", handle=handle), actor="dpo", reason="r", secret=SECRET_KEY)
    keep = tombstones.lifetime(w.settings)
    old = {subject_key(SECRET_KEY, "x", "handle", "olderased"), subject_key(SECRET_KEY, "x", "id", "id-olderased")}
    young = {subject_key(SECRET_KEY, "x", "handle", "youngerased"), subject_key(SECRET_KEY, "x", "id", "id-youngerased")}
    now = utcnow()
    async with w.db.session() as s:
        await s.execute(update(ErasureTombstone).where(ErasureTombstone.key.in_(old)).values(
            erased_at=now - keep - timedelta(days=1)))
        await s.execute(update(ErasureTombstone).where(ErasureTombstone.key.in_(young)).values(
            erased_at=now - keep + timedelta(days=1)))
        await s.commit()

    async def left() -> set[str]:
        async with w.db.session() as s:
            return set(await s.scalars(select(ErasureTombstone.key)))

    assert await left() == old | young | {"*"}
    longer = await retention.purge(w.db, retention.cutoff_for(400), dry_run=True, tombstone_lifetime=keep)
    assert longer["tombstones"] == 0  # a longer retention period keeps them that long
    cutoff = retention.cutoff_for(7)
    before = await dump(w.db)
    planned = await retention.purge(w.db, cutoff, dry_run=True, tombstone_lifetime=keep)
    assert planned["tombstones"] == 2 == (await retention.purge_plan(w.db, cutoff, keep))["tombstones"]
    assert await dump(w.db) == before
    counts = await retention.purge(w.db, cutoff, actor="cron", tombstone_lifetime=keep)
    assert counts["tombstones"] == 2 and counts == planned
    assert await left() == young | {"*"}  # the gate stays, its count too
    async with w.db.session() as s:
        assert (await s.get(ErasureTombstone, "*")).erasures == 2
        [purged] = await s.scalars(select(AuditEvent).where(AuditEvent.action == "privacy.purged"))
    assert purged.details["counts"]["tombstones"] == 2

    # the young tombstone still stops a post published before that erasure; the old one's account is new again
    then = now - keep  # before both erasures
    await submit(bus, [w.post("zqxyoung late", author="YoungErased", at=then),
                       w.post("zqxoldback late", author="OldErased", at=then)])
    await drain(bus, stage(w))
    stored = await texts(w.db)
    assert "zqxyoung late" not in stored and stored["zqxoldback late"] == "OldErased"
    await retention.purge(w.db, cutoff, tombstone_lifetime=keep)  # older than the retention period: erased by age
    assert found_in(await dump(w.db), "zqxoldback") == [] and found_in(await dump(w.db), "olderased") == []
