"""Ingest: a whole thread deleted or recovered on its platform (a Discourse topic), through the ingest
stage as the bus delivers it: the deletion hides every post of the thread we hold, the recovery shows
again (and sends to triage again) exactly what that deletion hid, events are ordered by their own
time, and nothing a moderator or an erasure did is undone."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select, text

from listener.ingest import ingest_batch
from listener.protocol import NormalizedMention
from models import Conversation, Mention
from models.db import Database
from models.mentions import ERASED_TEXT
from service.bus import Envelope
from service.pipeline import ingest_key
from service.stages.base import StageContext
from service.stages.ingest import IngestStage

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
DELETED, RECOVERED = T0 + timedelta(hours=2), T0 + timedelta(hours=3)


def post(eid: str, event: str = "upsert", thread: str = "40/1", **kw) -> NormalizedMention:
    return NormalizedMention(**{"platform": "discourse", "external_id": eid, "text": f"words of {eid}",
                                "created_at": T0, "author_id": "17", "conversation_id": thread, "event": event,
                                "kind": "forum_post", **kw})


def topic(event: str, at: datetime, thread: str = "40/1") -> NormalizedMention:
    """A thread's event as the Discourse webhook publishes it (listener.discourse.normalize.topic_to_mention)."""
    return NormalizedMention(platform="discourse", external_id=thread, text="", created_at=at,
                             conversation_id=thread, event=event)  # type: ignore[arg-type]


class Ingest:
    """The ingest stage, each call one delivery (a batch) of messages; what it sends on to triage."""

    def __init__(self, db: Database) -> None:
        self.db, self.stage, self.n = db, IngestStage(StageContext(settings=None, db=db)), 0

    async def __call__(self, *mentions: NormalizedMention) -> list[int]:
        envs = []
        for m in mentions:
            self.n += 1
            envs.append(Envelope(id=str(self.n), topic="ingest", key=ingest_key(m), payload={"mention": m.to_dict()}))
        return [o.payload["mention_id"] for o in await self.stage.handle(envs)]

    async def rows(self) -> dict[str, Mention]:
        async with self.db.session() as s:
            return {m.external_id: m for m in await s.scalars(select(Mention))}

    async def state(self) -> dict[str, tuple[bool, bool]]:
        """(deleted, hidden) by post."""
        return {k: (m.deleted, m.hidden) for k, m in (await self.rows()).items()}

    async def ids(self, *keys: str) -> list[int]:
        rows = await self.rows()
        return [rows[k].id for k in keys]


@pytest.fixture
def ingest(db) -> Ingest:
    return Ingest(db)


async def moderator_hides(db: Database, external_id: str) -> None:
    from community import moderation

    async with db.session() as s:
        m = await s.scalar(select(Mention).where(Mention.external_id == external_id))
        await moderation.add_action(s, f"mod:{external_id}", m, "hide", "abusive", rule=None, actor="mod:mia")
        await s.commit()


async def test_a_deleted_topic_hides_its_posts_and_its_recovery_shows_and_triages_again_what_it_hid(ingest, db):
    """40/3 was deleted on its own before (its author or a moderator): Discourse keeps it deleted when
    the topic comes back, and so do we. A moderator's hide of 40/2 outlives both events."""
    await ingest(*(post(f"40/{n}") for n in range(1, 5)), post("41/1", thread="41/1"))
    await ingest(post("40/3", "delete"))
    await moderator_hides(db, "40/2")
    assert await ingest.state() == {"40/1": (False, False), "40/2": (False, True), "40/3": (True, True),
                                    "40/4": (False, False), "41/1": (False, False)}

    assert await ingest(topic("thread_delete", DELETED)) == []  # nothing to triage
    assert await ingest.state() == {"40/1": (True, False), "40/2": (True, True), "40/3": (True, True),
                                    "40/4": (True, False), "41/1": (False, False)}  # deleted; `hidden` untouched
    rows = await ingest.rows()
    assert [rows[k].deleted_with_thread for k in ("40/1", "40/2", "40/3", "40/4")] == [True, True, False, True]
    assert rows["40/2"].text == "words of 40/2" and rows["40/2"].raw == {}  # words and payload as they were

    triaged = await ingest(topic("thread_restore", RECOVERED))
    assert sorted(triaged) == sorted(await ingest.ids("40/1", "40/2", "40/4"))  # each triaged again
    assert await ingest.state() == {"40/1": (False, False), "40/2": (False, True), "40/3": (True, True),
                                    "40/4": (False, False), "41/1": (False, False)}
    assert not any(m.deleted_with_thread for m in (await ingest.rows()).values())
    async with db.session() as s:
        conv = await s.scalar(select(Conversation).where(Conversation.thread_key == "discourse:40/1"))
    assert (conv.platform_deleted_at, conv.platform_state_at) == (None, RECOVERED)


async def test_redelivered_events_change_nothing_and_a_delete_recovery_and_second_delete_each_go_through(ingest):
    await ingest(post("40/1"), post("40/2"))
    gone, back, again = topic("thread_delete", DELETED), topic("thread_restore", RECOVERED), \
        topic("thread_delete", RECOVERED + timedelta(hours=1))
    assert len({ingest_key(gone), ingest_key(back), ingest_key(again)}) == 3
    assert ingest_key(gone) == ingest_key(NormalizedMention.from_dict(gone.to_dict()))  # the same message
    await ingest(gone)
    assert await ingest(gone) == [] and set((await ingest.state()).values()) == {(True, False)}
    assert len(await ingest(back)) == 2
    assert await ingest(back) == [] and set((await ingest.state()).values()) == {(False, False)}  # triaged once
    await ingest(again)
    assert set((await ingest.state()).values()) == {(True, False)}


async def test_a_stale_deletion_arriving_after_a_newer_recovery_is_ignored(ingest):
    """Discourse retries a webhook that failed (minutes later): the deletion may come after the
    recovery that undid it, applied or not. Ordered by the deletion's ``deleted_at``, it is stale."""
    await ingest(post("40/1"), post("40/2"), post("41/1", thread="41/1"))
    await ingest(topic("thread_delete", DELETED))
    assert (await ingest.state())["40/2"] == (True, False)
    await ingest(topic("thread_restore", RECOVERED))
    await ingest(topic("thread_delete", DELETED))  # the first deletion, delivered again late
    await ingest(topic("thread_restore", RECOVERED, "41/1"))  # 41's deletion has not arrived yet
    await ingest(topic("thread_delete", DELETED, "41/1"))  # older than that recovery
    assert set((await ingest.state()).values()) == {(False, False)}


async def test_a_post_edited_or_recovered_on_its_own_while_its_topic_is_deleted_stays_deleted(ingest):
    """An edit keeps its words (triage reads them when the topic comes back), never the post's
    deletion; a reply a moderator recovers inside a deleted topic stays deleted with the topic."""
    await ingest(post("40/1"), post("40/2"), post("40/3"))
    await ingest(post("40/3", "delete"))
    await ingest(topic("thread_delete", DELETED))
    edit = post("40/2", text="now with my order number 12345", edited_at=DELETED + timedelta(minutes=5))
    await ingest(edit)
    assert await ingest(post("40/3", "restore", edited_at=DELETED + timedelta(minutes=6))) == []
    rows = await ingest.rows()
    assert (rows["40/2"].deleted, rows["40/2"].deleted_with_thread, rows["40/2"].text) == (
        True, True, "now with my order number 12345")
    assert (rows["40/3"].deleted, rows["40/3"].hidden, rows["40/3"].deleted_with_thread) == (True, False, True)
    assert sorted(await ingest(topic("thread_restore", RECOVERED))) == sorted(await ingest.ids("40/1", "40/2", "40/3"))
    assert set((await ingest.state()).values()) == {(False, False)}
    assert (await ingest.rows())["40/2"].text == "now with my order number 12345"


async def test_a_post_deleted_on_its_own_while_its_topic_is_deleted_stays_deleted_when_the_topic_comes_back(ingest):
    """Discourse keeps a reply its author or a moderator deleted inside a deleted topic deleted when
    the topic is recovered; so do we, without waiting for the re-check to see it gone. Not so the
    re-check's 404s (every post of a deleted topic is one) nor the first post's deletion (the topic's)."""
    await ingest(post("40/1"), post("40/2"), post("40/3"))
    await ingest(topic("thread_delete", DELETED))
    await ingest(post("40/2", "delete"), post("40/3", "delete", raw={"id": 3, "status": 404}), post("40/1", "delete"))
    assert {k: r.deleted_with_thread for k, r in (await ingest.rows()).items()} == {
        "40/1": True, "40/2": False, "40/3": True}
    assert sorted(await ingest(topic("thread_restore", RECOVERED))) == sorted(await ingest.ids("40/1", "40/3"))
    assert await ingest.state() == {"40/1": (False, False), "40/2": (True, True), "40/3": (False, False)}
    assert await ingest(post("40/2", "delete")) == []  # delivered again: nothing changes
    assert (await ingest.state())["40/2"] == (True, True)


async def test_a_new_post_into_a_deleted_topic_is_stored_deleted_and_not_triaged(ingest):
    """From the webhook or a listing: stored deleted with its topic, shown and triaged at its recovery.
    A post earlier in the same batch than the deletion goes with it."""
    await ingest(post("40/1"))
    assert await ingest(post("40/2"), topic("thread_delete", DELETED), post("40/3")) == await ingest.ids("40/2")
    assert await ingest(post("40/4")) == []
    rows = await ingest.rows()
    assert all(rows[k].deleted and rows[k].deleted_with_thread and not rows[k].hidden for k in rows)
    assert sorted(await ingest(topic("thread_restore", RECOVERED))) == sorted(await ingest.ids(*sorted(rows)))


async def test_an_erased_persons_post_is_not_shown_again(ingest, db):
    from service.privacy import erase_posts

    await ingest(post("40/1"), post("40/2"))
    await ingest(topic("thread_delete", DELETED))
    async with db.session() as s:  # the author of 40/2 asks to be forgotten while the topic is deleted
        await erase_posts(s, await ingest.ids("40/2"), Counter())
        await s.commit()
    assert await ingest(topic("thread_restore", RECOVERED)) == await ingest.ids("40/1")
    rows = await ingest.rows()
    assert (rows["40/2"].deleted, rows["40/2"].text) == (True, ERASED_TEXT) and not rows["40/1"].deleted


async def test_a_deletion_and_a_recovery_in_one_batch_keep_a_moderators_hide(ingest, db):
    """Thread events and post events alike: in one delivery, applied in order."""
    await ingest(post("40/1"), post("40/2"), post("41/1", thread="41/1"))
    await moderator_hides(db, "40/2")
    await moderator_hides(db, "41/1")
    triaged = await ingest(topic("thread_delete", DELETED), topic("thread_restore", RECOVERED),
                           post("41/1", "delete"), post("41/1", "restore", edited_at=RECOVERED))
    assert sorted(triaged) == sorted(await ingest.ids("40/1", "40/2", "41/1"))
    assert await ingest.state() == {"40/1": (False, False), "40/2": (False, True), "41/1": (False, True)}


async def test_the_recovery_of_a_topics_first_post_recovers_the_topic(ingest):
    """Discourse recovers a topic with its first post; where both webhooks were missed, the re-check
    sees only that post back (listener.discourse.recheck), and the topic must not stay deleted."""
    await ingest(post("40/1"), post("40/2"), post("40/3"))
    await ingest(topic("thread_delete", DELETED))
    await ingest(post("40/1", "delete"))  # its own post_destroyed, or the re-check's 404: already deleted
    triaged = await ingest(post("40/1", "restore", edited_at=RECOVERED))
    assert sorted(set(triaged)) == sorted(await ingest.ids("40/1", "40/2", "40/3"))
    assert set((await ingest.state()).values()) == {(False, False)}
    assert await ingest(post("40/4")) != []  # a new post of it is a post like any


async def test_a_deletion_newer_than_the_one_a_first_posts_recovery_undid_still_applies(ingest):
    """The first post's restore says the topic came back after the deletion we hold, not when: a
    newer deletion, ingested after it (the bus behind, or in the same batch), deletes the topic again."""
    await ingest(post("40/1"), post("40/2"))
    await ingest(topic("thread_delete", DELETED))
    await ingest(post("40/1", "restore", edited_at=RECOVERED), topic("thread_delete", DELETED + timedelta(hours=5)))
    assert set((await ingest.state()).values()) == {(True, False)}
    await ingest(topic("thread_delete", DELETED + timedelta(minutes=30)))  # older than that: stale
    assert await ingest(topic("thread_restore", DELETED + timedelta(hours=6))) != []


async def test_a_recovery_or_a_post_deletion_for_a_thread_never_stored_stores_nothing(db):
    async with db.session() as s:
        out = await ingest_batch(s, [topic("thread_restore", RECOVERED, "91/1"), post("92/3", "delete", thread="92/1")])
        await s.commit()
        assert [(r.outcome, r.mention_id, r.revealed) for r in out] == [("duplicate", None, ())] * 2
        assert await s.scalar(select(func.count()).select_from(Conversation)) == 0


async def test_a_topic_deleted_before_its_posts_are_announced_has_them_stored_deleted(ingest, db):
    """Discourse sends webhooks from a queue: a spam topic deleted seconds after it was made may be
    announced before its posts. The deletion is kept as the thread's state; its posts, arriving
    after, are stored deleted with it and not triaged; its recovery shows and triages them."""
    assert await ingest(topic("thread_delete", DELETED)) == []
    assert await ingest(post("40/1"), post("40/2", in_reply_to="40/1")) == []  # nothing to triage
    assert set((await ingest.state()).values()) == {(True, False)}
    assert await ingest(topic("thread_delete", DELETED)) == []  # said twice: nothing more
    assert sorted(await ingest(topic("thread_restore", RECOVERED))) == sorted(await ingest.ids("40/1", "40/2"))
    assert set((await ingest.state()).values()) == {(False, False)}


async def test_a_topic_of_40000_posts_is_deleted_and_recovered_in_set_based_statements(any_db):
    """PostgreSQL takes at most 32,767 bound parameters in a statement: no statement names the posts."""
    n = 40_000
    async with any_db.session() as s:
        await ingest_batch(s, [post("40/1")])
        conv = await s.scalar(select(Conversation.id))
        rows = [dict(platform="discourse", external_id=f"40/{i}", conversation_id=conv, text=f"reply {i}",
                     kind="reply", is_public=True, created_at=T0, platform_conversation_id="40/1",
                     content_hash=f"h{i}", raw={}, hidden=False, deleted=False) for i in range(2, n + 2)]
        await s.execute(insert(Mention.__table__), rows)
        await s.commit()
    async with any_db.session() as s:
        (gone,) = await ingest_batch(s, [topic("thread_delete", DELETED)])
        await s.commit()
        assert gone.outcome == "thread"
        assert await s.scalar(select(func.count()).where(Mention.deleted_with_thread.is_(True))) == n + 1
    async with any_db.session() as s:
        (back,) = await ingest_batch(s, [topic("thread_restore", RECOVERED)])
        await s.commit()
        assert len(back.revealed) == n + 1
        assert await s.scalar(select(func.count()).where(Mention.deleted.is_(True))) == 0


async def test_0010_keeps_existing_posts_shown_and_goes_back_down(any_db):
    """Posts stored before 0010 were deleted, if at all, on their own: none with its thread."""
    await any_db.downgrade("0009")
    async with any_db.engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO mentions (platform, external_id, text, kind, is_public, created_at, ingested_at, hidden, "
            "deleted, content_hash, raw) VALUES ('discourse', '40/1', 'w', 'post', true, CURRENT_TIMESTAMP, "
            "CURRENT_TIMESTAMP, false, true, 'h', '{}')"))
    await any_db.upgrade()
    async with any_db.session() as s:
        assert (await s.execute(select(Mention.deleted, Mention.deleted_with_thread))).all() == [(True, False)]
    await any_db.downgrade("0009")
    async with any_db.engine.connect() as conn:
        assert (await conn.execute(text("SELECT external_id FROM mentions"))).all() == [("40/1",)]


async def test_a_posts_deletion_and_restore_in_one_batch_keep_a_moderators_hide(ingest, db):
    """The restore must know of the moderator's hide although the post was shown when the batch began."""
    await ingest(post("40/1"))
    await moderator_hides(db, "40/1")
    await ingest(post("40/1", "delete"), post("40/1", "restore", edited_at=RECOVERED))
    assert await ingest.state() == {"40/1": (False, True)}
