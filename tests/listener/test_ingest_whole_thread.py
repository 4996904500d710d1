"""Ingest: a deletion or a restore of a whole thread (a Discourse topic deleted or recovered) applies to
every post of it stored, idempotently; and a deletion of a post never stored is no error."""

from datetime import UTC, datetime

from sqlalchemy import func, select

from listener import ingest
from listener.ingest import ingest_batch, thread_id, whole_thread
from listener.protocol import NormalizedMention
from models import Conversation, Mention

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def post(eid: str, thread: str = "40/1", platform: str = "discourse", **kw) -> NormalizedMention:
    return NormalizedMention(**{"platform": platform, "external_id": eid, "text": f"words of {eid}", "created_at": T0,
                                "author_id": "17", "conversation_id": thread, **kw})


def everything(thread: str = "40/1", event: str = "delete", platform: str = "discourse") -> NormalizedMention:
    return NormalizedMention(platform=platform, external_id=thread_id(thread), text="", created_at=T0,
                             conversation_id=thread, event=event)  # type: ignore[arg-type]


async def ingest_now(db, *mentions):
    async with db.session() as s:
        out = await ingest_batch(s, list(mentions))
        await s.commit()
    return out


async def shown(db) -> dict[str, tuple[bool, bool]]:
    async with db.session() as s:
        return {f"{m.platform}:{m.external_id}": (m.deleted, m.hidden) for m in await s.scalars(select(Mention))}


def test_only_a_deletion_or_restore_named_after_its_thread_is_a_whole_threads():
    assert whole_thread(everything()) and whole_thread(everything(event="restore"))
    assert not whole_thread(NormalizedMention(platform="discourse", external_id="*40/1", text="", created_at=T0,
                                              conversation_id="40/1"))  # an upsert
    assert not whole_thread(post("40/1", event="delete"))
    assert not whole_thread(NormalizedMention(platform="discourse", external_id="*41/1", text="", created_at=T0,
                                              conversation_id="40/1", event="delete"))  # another thread's name


async def test_a_thread_deletion_hides_its_posts_only_and_its_restore_shows_them_once(db):
    await ingest_now(db, post("40/1"), post("40/2", in_reply_to="40/1"), post("41/1", thread="41/1"),
                     post("40/1", platform="x"))  # another platform's post in a thread of the same name
    first, again = await ingest_now(db, everything()), await ingest_now(db, everything())
    ids = await _ids(db)
    assert (first[0].outcome, sorted(first[0].posts), first[0].mention_id) == (
        "thread", sorted([ids["discourse:40/1"], ids["discourse:40/2"]]), None)
    assert (again[0].outcome, again[0].posts) == ("duplicate", ())
    assert await shown(db) == {"discourse:40/1": (True, True), "discourse:40/2": (True, True),
                               "discourse:41/1": (False, False), "x:40/1": (False, False)}
    back, again = await ingest_now(db, everything(event="restore")), await ingest_now(db, everything(event="restore"))
    assert (back[0].outcome, len(back[0].posts), again[0].outcome) == ("thread", 2, "duplicate")
    assert set((await shown(db)).values()) == {(False, False)}


async def test_a_post_stored_earlier_in_the_batch_goes_with_its_thread(db):
    out = await ingest_now(db, post("40/1"), post("40/2"), everything())
    assert [r.outcome for r in out] == ["new", "new", "thread"] and len(out[2].posts) == 2
    assert await shown(db) == {"discourse:40/1": (True, True), "discourse:40/2": (True, True)}


async def test_a_restore_of_a_thread_never_seen_stores_nothing(db):
    out = await ingest_now(db, everything("90/1", event="restore"), everything("91/1"))
    assert [(r.outcome, r.mention_id) for r in out] == [("duplicate", None)] * 2
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Mention)) == 0
        assert await s.scalar(select(func.count()).select_from(Conversation)) == 0


async def test_a_deletion_of_a_post_never_stored_is_a_duplicate_not_an_error(db):
    """A ``post_destroyed`` of a post made before we listened: it raised, to be retried and dead-lettered."""
    out = await ingest_now(db, post("40/9", event="delete"), post("40/1"))
    assert [(r.outcome, r.mention_id is None) for r in out] == [("duplicate", True), ("new", False)]


async def test_the_threads_posts_are_searched_by_index(db):
    """As ingest's other lookups (test_ingest): through the thread's unique key and the mentions'
    conversation index, not a scan of the mentions."""
    async with db.engine.connect() as conn:
        sql = str(ingest.THREAD_POSTS.params(keys=["discourse:40/1"]).compile(
            dialect=conn.dialect, compile_kwargs={"literal_binds": True, "render_postcompile": True}))
        plan = [row[-1] for row in await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
    assert plan and all(step.startswith("SEARCH") for step in plan), plan


async def _ids(db) -> dict[str, int]:
    async with db.session() as s:
        return {f"{m.platform}:{m.external_id}": m.id for m in await s.scalars(select(Mention))}
