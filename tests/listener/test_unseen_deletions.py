"""A deletion that reaches ingest before the post it deletes (the post's batch failed and was
delivered again behind it, a webhook retried, a connector late) is kept, and the post, when it
comes, is stored deleted — its content removed where the deletion said so — and never triaged. A
restore, which a platform reports only after the deletion, stores it shown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from listener.protocol import NormalizedMention
from listener.unseen import LIFETIME
from models import Mention, PendingDeletion
from models.mentions import DELETED_TEXT
from service.bus import Envelope
from service.pipeline import ingest_key
from service.stages.base import StageContext
from service.stages.ingest import IngestStage

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
WORDS = "@acme_help my card 4111 1111 1111 1111 was charged twice"


def tweet(event: str = "upsert", eid: str = "1001", **kw) -> NormalizedMention:
    return NormalizedMention(**{"platform": "x", "external_id": eid, "text": "" if event == "delete" else WORDS,
                                "created_at": T0, "author_id": "77", "author_handle": "ana", "event": event,
                                "raw": {"id": eid, "text": WORDS}, "url": f"https://x.com/ana/status/{eid}",
                                "remove_content": event == "delete", **kw})


async def ingest(db, *mentions: NormalizedMention) -> list[str]:
    """One delivery through the ingest stage: the external ids it sends on to triage."""
    stage = IngestStage(StageContext(settings=None, db=db))
    envs = [Envelope(id=str(i), topic="ingest", key=ingest_key(m), payload={"mention": m.to_dict()})
            for i, m in enumerate(mentions)]
    sent = {o.payload["mention_id"] for o in await stage.handle(envs)}
    async with db.session() as s:
        return sorted(m.external_id for m in await s.scalars(select(Mention).where(Mention.id.in_(sent))))


async def stored(db) -> dict[str, Mention]:
    async with db.session() as s:
        return {m.external_id: m for m in await s.scalars(select(Mention))}


async def pending(db) -> dict[tuple[str, str], bool]:
    async with db.session() as s:
        return {(p.platform, p.external_id): p.remove_content for p in await s.scalars(select(PendingDeletion))}


async def test_a_tweet_deleted_before_it_is_stored_comes_in_deleted_without_its_content(any_db):
    assert await ingest(any_db, tweet("delete")) == []
    assert await pending(any_db) == {("x", "1001"): True} and await stored(any_db) == {}
    assert await ingest(any_db, tweet()) == []  # the creation, delivered late: not triaged
    row = (await stored(any_db))["1001"]
    assert (row.deleted, row.hidden, row.deleted_with_thread, row.text) == (True, True, False, DELETED_TEXT)
    assert "4111" not in repr(row.raw) and row.raw == {"id": "1001"}
    assert await pending(any_db) == {}  # spent: the row holds the post's state now
    assert await ingest(any_db, tweet(edited_at=T0 + timedelta(minutes=1))) == []  # a late edit brings no words
    assert (await stored(any_db))["1001"].text == DELETED_TEXT


async def test_a_hide_only_deletion_first_stores_the_post_hidden_with_its_words(any_db):
    assert await ingest(any_db, tweet("delete", remove_content=False)) == []
    assert await ingest(any_db, tweet()) == []
    row = (await stored(any_db))["1001"]
    assert (row.deleted, row.hidden, row.text) == (True, True, WORDS)


async def test_a_restore_after_the_early_deletion_stores_the_post_shown_and_triaged(any_db):
    await ingest(any_db, tweet("delete"))
    assert await ingest(any_db, tweet("restore")) == ["1001"]
    row = (await stored(any_db))["1001"]
    assert (row.deleted, row.hidden, row.text) == (False, False, WORDS) and await pending(any_db) == {}


async def test_in_one_batch_a_deletion_before_its_post_still_wins_and_nothing_is_left_pending(any_db):
    assert await ingest(any_db, tweet("delete"), tweet(), tweet(eid="1002")) == ["1002"]
    rows = await stored(any_db)
    assert (rows["1001"].deleted, rows["1001"].text) == (True, DELETED_TEXT) and not rows["1002"].deleted
    assert await pending(any_db) == {}


async def test_redelivered_early_deletions_are_kept_once_and_content_removal_is_never_taken_back(any_db):
    await ingest(any_db, tweet("delete"))
    await ingest(any_db, tweet("delete", remove_content=False), tweet("delete", eid="2002"))
    assert await pending(any_db) == {("x", "1001"): True, ("x", "2002"): True}
    other = NormalizedMention(platform="reddit", external_id="1001", text="unrelated", created_at=T0,
                              author_id="t2_x", event="upsert")
    assert await ingest(any_db, other) == ["1001"]  # the same id on another platform is another post
    assert await pending(any_db) == {("x", "1001"): True, ("x", "2002"): True}


async def test_early_deletions_older_than_their_lifetime_are_pruned(any_db):
    await ingest(any_db, tweet("delete"))
    async with any_db.session() as s:
        await s.execute(update(PendingDeletion).values(deleted_at=datetime.now(UTC) - LIFETIME - timedelta(hours=1)))
        await s.commit()
    await ingest(any_db, tweet("delete", eid="3003"))
    assert await pending(any_db) == {("x", "3003"): True}
    assert await ingest(any_db, tweet()) == ["1001"]  # a creation that late is stored as it comes


async def test_a_post_new_in_the_batch_deleted_and_restored_in_it_is_stored_shown(any_db):
    """Three events for one post in one delivery (its creation redelivered beside later events): the
    last one wins, whether the deletion was kept from before or came in the batch."""
    await ingest(any_db, tweet("delete"))
    assert await ingest(any_db, tweet(), tweet("restore")) == ["1001"]
    assert await ingest(any_db, tweet(eid="1002"), tweet("delete", eid="1002"), tweet("restore", eid="1002")) == ["1002"]
    rows = await stored(any_db)
    assert {k: (r.deleted, r.text) for k, r in rows.items()} == {"1001": (False, WORDS), "1002": (False, WORDS)}
    assert await pending(any_db) == {}


async def test_on_postgresql_a_deletion_and_its_posts_creation_crossing_in_two_workers_still_meet(
        postgres_url, monkeypatch):
    """Two ingest workers, one with the deletion, one with the creation, at the same moment: under
    READ COMMITTED neither sees the other's uncommitted row (here: the creation's lookup of pending
    deletions finds nothing). After its commit the creating batch looks again, finds the deletion
    kept meanwhile, and applies it."""
    from listener import unseen
    from models.db import Database

    db = Database(postgres_url)
    await db.upgrade()
    try:
        assert await ingest(db, tweet("delete")) == []  # kept: the post is not stored yet
        real = unseen.pending

        async def missed(session, keys):  # as the concurrent batch saw the table: before that commit
            return {}

        monkeypatch.setattr(unseen, "pending", missed)
        await ingest(db, tweet())
        monkeypatch.setattr(unseen, "pending", real)
        row = (await stored(db))["1001"]
        assert (row.deleted, row.text) == (True, DELETED_TEXT) and await pending(db) == {}
    finally:
        await db.close()
