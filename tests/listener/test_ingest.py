"""Ingest stores each post once, threads replies and links known authors to customers."""

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from escalation.customers import link_identity
from listener.ingest import ingest_batch
from listener.protocol import NormalizedMention
from models import Author, Conversation, Customer, Mention

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)


def mention(eid: str, text: str = "hello", **kw) -> NormalizedMention:
    base = dict(platform="x", external_id=eid, text=text, created_at=T0, author_id="42", author_handle="Jane_D")
    base.update(kw)
    return NormalizedMention(**base)


async def count(db, model) -> int:
    async with db.session() as s:
        return await s.scalar(select(func.count()).select_from(model))


async def test_the_same_post_seen_twice_is_stored_once(db):
    async with db.session() as s:
        first = await ingest_batch(s, [mention("1"), mention("1")])
        await s.commit()
    async with db.session() as s:
        again = await ingest_batch(s, [mention("1")])
        await s.commit()
    assert [r.outcome for r in first] == ["new", "duplicate"]
    assert again[0].outcome == "duplicate" and again[0].mention_id == first[0].mention_id
    assert await count(db, Mention) == 1 and await count(db, Author) == 1


async def test_replies_thread_into_their_parents_conversation(db):
    async with db.session() as s:
        await ingest_batch(s, [mention("1")])
        await s.commit()
    async with db.session() as s:
        await ingest_batch(s, [mention("2", in_reply_to="1", author_id="7", author_handle="other"),
                               mention("3", conversation_id="1")])
        await s.commit()
        rows = {m.external_id: m.conversation_id for m in await s.scalars(select(Mention))}
    assert rows["1"] == rows["2"] == rows["3"]
    assert await count(db, Conversation) == 1


async def test_a_known_handle_is_linked_to_the_customer_record(db):
    async with db.session() as s:
        customer = Customer(name="Jane Doe", email="jane@example.com")
        s.add(customer)
        await s.flush()
        await link_identity(s, customer.id, "x", "@jane_d")
        await s.commit()
        await ingest_batch(s, [mention("1")])
        await s.commit()
        author = await s.scalar(select(Author))
        conv = await s.scalar(select(Conversation))
    assert author.customer_id == customer.id and conv.customer_id == customer.id


async def test_edits_update_and_deletions_hide(db):
    async with db.session() as s:
        await ingest_batch(s, [mention("1", "first words")])
        await s.commit()
        edited = await ingest_batch(s, [mention("1", "second words", edited_at=T0 + timedelta(minutes=1))])
        stale = await ingest_batch(s, [mention("1", "older words", edited_at=T0)])
        deleted = await ingest_batch(s, [mention("1", "", event="delete")])
        await s.commit()
        row = await s.scalar(select(Mention))
    assert [edited[0].outcome, stale[0].outcome, deleted[0].outcome] == ["edited", "duplicate", "deleted"]
    assert row.text == "second words" and row.hidden and row.deleted


async def test_hostile_text_is_stored_safely(db):
    nasty = "nul\x00 ctrl\x07 surrogate\ud800 rtl\u202e zalgo z\u0351\u0352\u0353 " + "x" * 50_000
    async with db.session() as s:
        (res,) = await ingest_batch(s, [mention("1", nasty)])
        await s.commit()
        row = await s.get(Mention, res.mention_id)
    assert "\x00" not in row.text and "\x07" not in row.text and "\ud800" not in row.text
    assert "\u202e" in row.text  # kept (escaped at display), not silently altered
    assert len(row.text) == 40_000 and row.raw["socialcare_truncated_from"] == len(nasty)


async def test_authors_without_ids_are_keyed_by_handle(db):
    async with db.session() as s:
        await ingest_batch(s, [mention("1", author_id=None, author_handle="NoId"),
                               mention("2", author_id=None, author_handle="noid"),
                               mention("3", author_id=None, author_handle=None)])
        await s.commit()
        authors = list(await s.scalars(select(Author)))
    assert [a.author_key for a in authors] == ["@noid"]


async def test_a_post_and_its_edit_in_one_batch_store_the_edited_words(db):
    async with db.session() as s:
        first, edit = await ingest_batch(s, [mention("1", "first words"),
                                             mention("1", "second words", edited_at=T0 + timedelta(minutes=1))])
        await s.commit()
        row = await s.scalar(select(Mention))
    assert (first.outcome, edit.outcome) == ("new", "edited") and first.mention_id == edit.mention_id == row.id
    assert row.text == "second words" and row.edited_at == T0 + timedelta(minutes=1)


async def test_a_reply_and_its_parent_in_one_batch_share_one_thread(db):
    async with db.session() as s:
        await ingest_batch(s, [mention("1"), mention("2", in_reply_to="1", author_id="7", author_handle="other")])
        await s.commit()
        threads = set(await s.scalars(select(Mention.conversation_id)))
    assert len(threads) == 1 and await count(db, Conversation) == 1


async def test_an_author_keeps_what_the_platform_no_longer_says_and_takes_what_it_says_now(db):
    async with db.session() as s:
        await ingest_batch(s, [mention("1", author_name="Jane", author_followers=10)])
        await s.commit()
    async with db.session() as s:
        await ingest_batch(s, [mention("2", author_name=None, author_followers=12)])
        await s.commit()
        author = await s.scalar(select(Author))
        conv = await s.scalar(select(Conversation).where(Conversation.thread_key == "x:2"))
    assert (author.display_name, author.followers, author.handle) == ("Jane", 12, "Jane_D")
    assert conv.last_activity_at >= T0  # a new thread's activity: when it was stored, or its post if later


async def test_the_same_id_or_handle_on_another_platform_is_another_post_and_author(db):
    async with db.session() as s:
        await ingest_batch(s, [mention("7", author_id="42"), mention("8", platform="reddit", author_id="43",
                                                                     in_reply_to="7")])
        await s.commit()
    async with db.session() as s:  # looked up together: x:8 and reddit:7 are not in the table
        out = await ingest_batch(s, [mention("8", "new on x", author_id="43"),
                                     mention("7", "new on reddit", platform="reddit", author_id="42")])
        await s.commit()
        texts = dict((await s.execute(select(Mention.platform + ":" + Mention.external_id, Mention.text))).all())
        authors = set((await s.execute(select(Author.platform, Author.author_key))).all())
        threads = set(await s.scalars(select(Conversation.thread_key)))
    assert [r.outcome for r in out] == ["new", "new"]
    assert texts == {"x:7": "hello", "reddit:8": "hello", "x:8": "new on x", "reddit:7": "new on reddit"}
    assert len(authors) == 4  # (x, 42), (x, 43), (reddit, 42), (reddit, 43)
    assert "reddit:7" in threads and "x:7" in threads  # reddit:8 replied to reddit:7, not to x:7


async def test_ingest_lookups_search_the_unique_indexes_instead_of_scanning_them(db):
    """SQLite scanned a whole index for a row-value IN, on every batch, the bigger the table the
    slower; the lookups are written as two INs, which it searches."""
    from listener import ingest

    params = {"firsts": ["x", "reddit"], "seconds": ["1", "2"], "keys": ["x:1"], "ids": [1]}
    async with db.engine.connect() as conn:
        for name in ("STORED", "AUTHORS", "LINKS", "PARENTS", "THREADS", "THREADS_BY_ID", "MODERATED"):
            stmt = getattr(ingest, name)
            used = {k: v for k, v in params.items() if k in stmt.compile().params}
            sql = str(stmt.params(used).compile(dialect=conn.dialect, compile_kwargs={
                "literal_binds": True, "render_postcompile": True}))
            plan = [row[-1] for row in await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
            assert plan and all(step.startswith("SEARCH") for step in plan), (name, plan)


async def ingest(db, *posts: NormalizedMention) -> list[str]:
    async with db.session() as s:
        out = await ingest_batch(s, list(posts))
        await s.commit()
    return [r.outcome for r in out]


async def stored(db, external_id: str) -> Mention:
    async with db.session() as s:
        return await s.scalar(select(Mention).where(Mention.external_id == external_id))


async def test_a_restored_post_is_back_with_its_words_and_shown_unless_moderation_hid_it(db):
    """A deletion sets ``hidden`` whatever it was; a moderator's or a rule's hide is on record as a
    moderation action, so only a post none of them hid is shown again."""
    from community import moderation

    later = T0 + timedelta(hours=1)
    await ingest(db, mention("1", "my order never came"), mention("2", "buy followers here"))
    async with db.session() as s:
        await moderation.add_action(s, "mod:2", await stored(db, "2"), "hide", "spam", rule="spam")
        await s.commit()
    assert await ingest(db, mention("1", "(post deleted by author)", edited_at=T0 + timedelta(minutes=1)),
                        mention("1", "", event="delete"), mention("2", "", event="delete")) == [
        "edited", "deleted", "deleted"]
    assert await ingest(db, mention("1", "my order never came", event="restore", edited_at=later),
                        mention("2", "buy followers here", event="restore", edited_at=later)) == ["restored"] * 2
    one, two = await stored(db, "1"), await stored(db, "2")
    assert (one.deleted, one.hidden, one.text, one.edited_at) == (False, False, "my order never came", later)
    assert (two.deleted, two.hidden) == (False, True)  # the moderator's hide stays
    assert await ingest(db, mention("1", "my order never came", event="restore", edited_at=later)) == ["duplicate"]
    assert await ingest(db, mention("3", "never seen deleted", event="restore", edited_at=later)) == ["new"]


async def test_a_restore_then_a_deletion_in_one_batch_leave_the_post_deleted(db):
    await ingest(db, mention("1", "first words"))
    await ingest(db, mention("1", "", event="delete"))
    assert await ingest(db, mention("1", "first words", event="restore"), mention("1", "", event="delete")) == [
        "restored", "deleted"]
    row = await stored(db, "1")
    assert row.deleted and row.hidden


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_an_erased_post_stays_erased_when_its_platform_restores_it(request, backend, monkeypatch):
    """Erased on a privacy request before the restore arrives, or while it is being stored (after
    ingest read the post as merely deleted): its words do not come back."""
    from collections import Counter

    from listener import ingest as ingest_module
    from models.db import Database
    from models.mentions import ERASED_TEXT
    from service.privacy import erase_posts

    database = Database(request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url"))
    await database.upgrade()

    async def erase(external_id: str) -> None:
        async with database.session() as s:
            await erase_posts(s, [(await stored(database, external_id)).id], Counter())
            await s.commit()

    try:
        await ingest(database, mention("1", "jane.doe@example.com wrote this"), mention("2", "and this"))
        await ingest(database, mention("1", "", event="delete"), mention("2", "", event="delete"))
        await erase("1")
        assert await ingest(database, mention("1", "jane.doe@example.com wrote this", event="restore")) == [
            "duplicate"]
        real = ingest_module._moderated

        async def erased_meanwhile(session, mention_ids):  # ingest has read post 2 as deleted, not erased
            await erase("2")
            return await real(session, mention_ids)

        monkeypatch.setattr(ingest_module, "_moderated", erased_meanwhile)
        assert await ingest(database, mention("2", "and this", event="restore")) == ["duplicate"]
        for eid in ("1", "2"):
            row = await stored(database, eid)
            assert (row.deleted, row.text, row.raw) == (True, ERASED_TEXT, {})
    finally:
        await database.close()


async def test_a_deletion_of_a_post_never_stored_changes_nothing(db):
    """A platform's deletion of a post made before we listened (or in a thread we never saw) is a
    duplicate, not a poison message retried until it is dead-lettered."""
    gone = mention("9", "", event="delete", conversation_id="thread-never-seen", in_reply_to="8")
    async with db.session() as s:
        [result] = await ingest_batch(s, [gone])
        await s.commit()
        stored = await s.scalar(select(func.count()).select_from(Mention))
    assert (result.mention_id, result.outcome, stored) == (None, "duplicate", 0)
