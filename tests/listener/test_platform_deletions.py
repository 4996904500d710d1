"""Content deleted on its platform is removed here too, where the platform's terms require it.

X's Developer Agreement: a tweet deleted, no longer public (its author protected, suspended or
deactivated) or withheld where the team reads the console must be removed from the service, not
only hidden; it comes back, with the words X shows then, if X shows it again. Reddit's Data API
terms: what its author deleted is removed; what a moderator or the spam filter removed is only
hidden (a moderator may approve it and must still read it). Discourse, the brand's own forum, only
hides. Removed means the text (``DELETED_TEXT``), the payload but its ids, the words in its link, the
content hash, and what quotes it: triage explanations, the routing reason, community answers and case
messages copied from it. The row, its ids, thread, times, author and triage labels stay. It is not a
privacy erasure: ``erased()`` stays false, and an erasure still wins over any later restore.

Each connector runs through its real client (tweepy, asyncpraw, the Discourse webhook) against the
local fakes, and each event through the bus and the ingest stage, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from listener import ingest as ingest_module
from listener.ingest import ingest_batch
from listener.protocol import NormalizedMention
from listener.reddit.connector import RedditConnector
from listener.text import content_key
from listener.validation import mention_from_dict
from listener.x.connector import XConnector
from models import Case, CaseMessage, CommunityAnswer, Mention, RouteDecision, TriageResult
from models.mentions import DELETED_TEXT, ERASED_TEXT
from service.bus import codec
from service.pipeline import ingest_key
from service.privacy import erase_posts, erased
from service.settings import load_settings

from .fakes import serve
from .fakes.discourse import post
from .fakes.reddit import (
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    FakeReddit,
    approve,
    b36,
    comment,
    delete,
    remove,
    submission,
)
from .fakes.x_api import FakeX, tweet, withhold
from .ingest_path import Pipeline
from .test_discourse import hook, send  # noqa: F401 (the signed webhook fixture)

T0 = datetime(2026, 11, 20, 8, tzinfo=UTC)
TOM = "783214"
WORDS = "@acme_help my parcel 4471 never came, write to tom.h@example.com"
TWEET = tweet(4, WORDS, author=TOM)


@pytest.fixture
async def x():
    fake = FakeX(tweets=[tweet(i) for i in range(4)] + [dict(TWEET)], page_size=100)
    server = await serve(fake)
    yield fake
    await server.close()


def x_connector(fake, made) -> XConnector:
    settings = load_settings(x_api_base=fake.base, x_bearer_token="test", x_user_id="99",
                             x_withheld_countries=["DE"])
    c = XConnector(settings, poll_seconds=0.01, recheck_seconds=0.0)
    made.append(c)
    return c


async def quoted(db, mention_id: int, words: str) -> None:
    """What triage and routing write about a post: explanations and a reason that quote its words."""
    async with db.session() as s:
        s.add(TriageResult(
            mention_id=mention_id, model_version="t", sentiment="negative", sensitivity="personal_data",
            issue_type="delivery", toxicity="none", spam="ham", pii_exposed=True, priority=0.8,
            scores={"sentiment": {"label": "negative", "score": 0.9, "explanation": [words]},
                    "pii": [{"type": "email", "text": words}], "priority_explanation": [f"says {words}"],
                    "priority": 0.8, "pii_exposed": True}))
        s.add(RouteDecision(mention_id=mention_id, outcome="agent_queue", reason=f"shares '{words}' with an answer",
                            confidence=0.5, details={"candidates": [{"kind": "article", "reason": words}]},
                            router_version="t"))
        await s.commit()


async def about(db, mention_id: int) -> tuple[TriageResult, RouteDecision]:
    async with db.session() as s:
        return (await s.scalar(select(TriageResult).where(TriageResult.mention_id == mention_id)),
                await s.scalar(select(RouteDecision).where(RouteDecision.mention_id == mention_id)))


def assert_removed(row: Mention, triage: TriageResult, decision: RouteDecision, words: str) -> None:
    """The content gone, the labels, ids and thread kept, and not an erasure."""
    assert (row.text, row.deleted, row.hidden, row.content_hash) == (DELETED_TEXT, True, True,
                                                                      content_key(DELETED_TEXT))
    assert words not in repr(row.raw) and not erased(row)
    assert (triage.sentiment, triage.issue_type, triage.pii_exposed) == ("negative", "delivery", True)
    assert triage.scores["sentiment"]["label"] == "negative" and words not in repr(triage.scores)
    assert decision.outcome == "agent_queue" and words not in decision.reason + repr(decision.details)


@pytest.mark.parametrize("how", ["deleted", "protected", "withheld"])
async def test_a_tweet_gone_from_x_loses_its_content_here_and_gets_it_back_when_x_shows_it_again(
        x, made, any_db, how):
    """Deleted (or its account deactivated: X answers alike), its author protected or suspended, or
    withheld where the team reads: each is removed at once; and when X shows it again (a reactivated
    account, made public, no longer withheld) it is back with the words X shows and triaged again."""
    c, pipeline = x_connector(x, made), Pipeline(any_db)
    first, cursor = await c.poll_once(None)
    await pipeline.run(first)
    before = (await pipeline.rows())[TWEET["id"]]
    await quoted(any_db, before.id, "parcel 4471")
    if how == "deleted":
        x.deactivated.add(TOM)
    elif how == "protected":
        x.protected.add(TOM)
    else:
        withhold(x.tweets[-1], "DE")
    (gone,), cursor = await c.poll_once(cursor)
    assert (gone.external_id, gone.event, gone.remove_content) == (TWEET["id"], "delete", True)
    assert await pipeline.run([gone]) == []
    rows = await pipeline.rows()
    row = rows[TWEET["id"]]
    assert_removed(row, *await about(any_db, row.id), "parcel 4471")
    assert set(row.raw) <= {"id", "recheck", "withheld"} and row.raw["id"] == TWEET["id"]
    assert row.url == before.url == f"https://x.com/user3214/status/{TWEET['id']}"  # a handle and an id: no words
    assert (row.author_id, row.conversation_id, row.created_at) == (before.author_id, before.conversation_id,
                                                                    before.created_at)
    assert not any(r.deleted for i, r in rows.items() if i != TWEET["id"])

    x.deactivated.clear(), x.protected.clear(), x.tweets[-1].pop("withheld", None)  # X shows it again
    (back,), cursor = await c.poll_once(cursor)
    assert (back.event, back.text) == ("restore", WORDS)
    (triaged,) = await pipeline.run([back])
    row = (await pipeline.rows())[TWEET["id"]]
    assert triaged.payload["mention_id"] == row.id and ":edit:" in triaged.key  # triaged again
    assert (row.text, row.deleted, row.hidden, row.content_hash) == (WORDS, False, False, content_key(WORDS))
    assert row.raw["text"] == WORDS and row.url == before.url


@pytest.fixture
async def reddit():
    fake = FakeReddit(posts=[submission(1, sub="acmehelp", title="Charged twice for order 4471",
                                        selftext="my card ends 4242, email tom.h@example.com",
                                        permalink=f"/r/acmehelp/comments/{b36(10_000_001)}/charged_twice_for_order_4471/"),
                             ])
    fake.comments = [comment(1, link=fake.posts[0]["data"]["name"], sub="acmehelp", body="same here, 4471 too",
                             author="a_mod", distinguished="moderator")]
    server = await serve(fake)
    yield fake
    await server.close()


def reddit_connector(fake, made) -> RedditConnector:
    settings = load_settings(
        reddit_client_id=CLIENT_ID, reddit_client_secret=CLIENT_SECRET, reddit_username="acme_support",
        reddit_password=PASSWORD, reddit_subreddits=["acmehelp"], reddit_oauth_url=fake.base, reddit_url=fake.base)
    c = RedditConnector(settings, poll_seconds=0.02, search_seconds=0.0, recheck_seconds=0.0)
    made.append(c)
    return c


async def test_a_reddit_post_its_author_deleted_loses_its_content_and_every_copy_of_it(reddit, made, any_db):
    c, pipeline = reddit_connector(reddit, made), Pipeline(any_db)
    first, cursor = await c.poll_once(None)
    await pipeline.run(first)
    rows = await pipeline.rows()
    question, answer = rows[reddit.posts[0]["data"]["name"]], rows[reddit.comments[0]["data"]["name"]]
    rid = reddit.posts[0]["data"]["id"]
    assert question.url.endswith(f"/comments/{rid}/charged_twice_for_order_4471/")
    await quoted(any_db, question.id, "4242")
    async with any_db.session() as s:  # a moderator's answer kept for later askers, a case that copied the post
        s.add(CommunityAnswer(platform="reddit", external_id=answer.external_id, answer_mention_id=answer.id,
                              question_mention_id=question.id, question="Charged twice for order 4471",
                              answer="same here, 4471 too", url=answer.url, source="distinguished", active=True))
        case = Case(category="fraud", author_id=question.author_id, opened_by_mention_id=question.id)
        s.add(case)
        await s.flush()
        s.add(CaseMessage(case_id=case.id, sender="customer", mention_id=question.id, body="my card ends 4242"))
        await s.commit()

    delete(reddit.posts[0])  # by its author
    (gone,), cursor = await c.poll_once(cursor)
    assert (gone.event, gone.remove_content) == ("delete", True)
    await pipeline.run([gone])
    row = (await pipeline.rows())[question.external_id]
    assert_removed(row, *await about(any_db, row.id), "4242")
    assert row.url.endswith(f"/r/acmehelp/comments/{rid}/_/") and "charged" not in row.url  # the title's slug
    assert set(row.raw) <= {"id", "name", "removed_by_category"}
    async with any_db.session() as s:
        copy = await s.scalar(select(CommunityAnswer))
        assert (copy.question, copy.active) == (DELETED_TEXT, False)  # no longer offered
        assert (await s.scalar(select(CaseMessage))).body == DELETED_TEXT
    assert (await pipeline.rows())[answer.external_id].text == "same here, 4471 too"  # the moderator's words stay


async def test_a_reddit_post_a_moderator_removed_keeps_its_content_and_approved_shows_again(reddit, made, any_db):
    """The brand's moderators must still read a removed post, and may approve it in Reddit's UI."""
    c, pipeline = reddit_connector(reddit, made), Pipeline(any_db)
    first, cursor = await c.poll_once(None)
    await pipeline.run(first)
    target = reddit.posts[0]
    before = (await pipeline.rows())[target["data"]["name"]]
    await quoted(any_db, before.id, "4242")
    remove(target)
    (removed,), cursor = await c.poll_once(cursor)
    assert (removed.event, removed.remove_content) == ("delete", False)
    await pipeline.run([removed])
    row = (await pipeline.rows())[before.external_id]
    assert (row.deleted, row.hidden, row.text, row.url, row.raw) == (True, True, before.text, before.url, before.raw)
    triage, decision = await about(any_db, row.id)
    assert "4242" in repr(triage.scores) and "4242" in decision.reason
    approve(target)
    (back,), cursor = await c.poll_once(cursor)
    assert len(await pipeline.run([back])) == 1  # triaged again
    row = (await pipeline.rows())[before.external_id]
    assert (row.deleted, row.hidden, row.text) == (False, False, before.text)

    remove(target)  # removed again, and then its author deletes it: now its content goes
    (removed,), cursor = await c.poll_once(cursor)
    await pipeline.run([removed])
    delete(target)
    (final,), cursor = await c.poll_once(cursor)
    assert (final.event, final.remove_content) == ("delete", True)
    await pipeline.run([final])
    assert (await pipeline.rows())[before.external_id].text == DELETED_TEXT


async def test_a_post_deleted_on_the_brands_discourse_keeps_its_content(hook, db):  # noqa: F811
    """The brand's own forum: a deletion hides the post; a recovered topic's posts come back with no
    text in its event, so the words must still be here."""
    words = post(103, number=3, raw="the app logs me out every hour")
    for event, body in [("post_created", words), ("post_destroyed", {**words, "deleted_at": "2026-11-20T10:00:00Z"})]:
        assert (await send(hook, event, {"post": body})).status == 202
    created, destroyed = hook.published
    assert destroyed.event == "delete" and destroyed.remove_content is False
    pipeline = Pipeline(db)
    await pipeline.run([created])
    await pipeline.run([destroyed])
    row = (await pipeline.rows())["40/3"]
    assert (row.deleted, row.hidden, row.text) == (True, True, "the app logs me out every hour")
    assert row.raw.get("raw") == "the app logs me out every hour"


def old_delete() -> dict:
    """An X deletion as a release before ``remove_content`` put it on the bus."""
    payload = NormalizedMention(platform="x", external_id=TWEET["id"], text="", created_at=T0,
                                event="delete", raw={"id": TWEET["id"], "recheck": "Not Found Error"}).to_dict()
    del payload["remove_content"]
    return payload


async def test_a_bus_message_written_before_the_field_existed_still_decodes_and_only_hides(db):
    """A message on the stream across the upgrade is read as before (hidden, its content kept until the
    next deletion the connector reports); one a newer release wrote is read by an older one too, which
    drops fields it does not know."""
    payload = old_delete()
    fields = codec.encode(f"x:{TWEET['id']}:delete", {"mention": payload})  # as Redis holds it
    m = NormalizedMention.from_dict(codec.decode(fields).payload["mention"])
    assert (m.event, m.remove_content) == ("delete", False)
    assert mention_from_dict(payload).remove_content is False
    with pytest.raises(ValueError, match="remove_content: true or false"):
        mention_from_dict({**payload, "remove_content": "yes"})
    pipeline = Pipeline(db)
    await pipeline.run([NormalizedMention(platform="x", external_id=TWEET["id"], text=WORDS,
                                          created_at=T0)])
    await pipeline.bus.publish("ingest", {"mention": payload}, ingest_key(m))
    while await pipeline.worker.run_once():
        pass
    row = (await pipeline.rows())[TWEET["id"]]
    assert (row.deleted, row.text) == (True, WORDS)


def mention(event: str = "upsert", text: str = WORDS, **kw) -> NormalizedMention:
    return NormalizedMention(platform="x", external_id=TWEET["id"], text=text, created_at=T0,
                             event=event, remove_content=event == "delete", **kw)


async def ingest(db, *mentions) -> list[str]:
    async with db.session() as s:
        out = await ingest_batch(s, list(mentions))
        await s.commit()
    return [r.outcome for r in out]


async def stored(db) -> Mention:
    async with db.session() as s:
        return await s.scalar(select(Mention))


async def test_only_a_restore_brings_words_back_never_a_late_edit_or_a_redelivered_copy(db):
    later = T0 + timedelta(hours=1)
    assert await ingest(db, mention(), mention("delete", "")) == ["new", "deleted"]
    assert await ingest(db, mention(text="edited words", edited_at=later), mention()) == ["duplicate"] * 2
    assert await ingest(db, mention("delete", "")) == ["duplicate"]  # said twice: nothing more to do
    assert (await stored(db)).text == DELETED_TEXT
    assert await ingest(db, mention("restore", "words X shows now")) == ["restored"]
    assert (await stored(db)).text == "words X shows now"


async def test_an_erasure_still_wins_over_a_removal_and_a_later_restore(any_db, monkeypatch):
    """Removed content is not erased (a restore brings it back); an erased post stays erased whatever
    its platform says next, even when the erasure lands while ingest is removing its content."""
    async def erase() -> None:
        async with any_db.session() as s:
            await erase_posts(s, [(await s.scalar(select(Mention.id)))], Counter())
            await s.commit()

    await ingest(any_db, mention(), mention("delete", ""))
    assert not erased(await stored(any_db))
    await erase()
    assert await ingest(any_db, mention("restore"), mention("delete", "")) == ["duplicate"] * 2
    assert ((await stored(any_db)).text, (await stored(any_db)).url) == (ERASED_TEXT, None)

    await ingest(any_db, NormalizedMention(platform="x", external_id="2", text="second", created_at=T0))
    real = ingest_module._conversations

    async def erased_meanwhile(session, batch):  # ingest has read post 2 as shown, not erased
        async with any_db.session() as s:
            await erase_posts(s, [await s.scalar(select(Mention.id).where(Mention.external_id == "2"))], Counter())
            await s.commit()
        return await real(session, batch)

    monkeypatch.setattr(ingest_module, "_conversations", erased_meanwhile)
    gone = NormalizedMention(platform="x", external_id="2", text="", created_at=T0, event="delete",
                             remove_content=True)
    assert await ingest(any_db, gone) == ["duplicate"]
    async with any_db.session() as s:
        assert (await s.scalar(select(Mention.text).where(Mention.external_id == "2"))) == ERASED_TEXT


async def test_triage_that_read_a_post_before_its_deletion_does_not_write_its_words_back(db):
    """The triage stage reads a post, its deletion (content removed) commits while the models score
    it, and the stage's explanations, written after, keep none of its words."""
    from service.bus import Envelope
    from service.stages.base import StageContext
    from service.stages.triage import TriageStage
    from triage.protocol import PiiSpan, Score, TriageOutput

    def scored(text: str) -> TriageOutput:  # explanations that quote the words read
        def score(label: str) -> Score:
            return Score(label, 0.9, "m", "1", {label: 0.9}, [f"'{w}'" for w in text.split()])
        return TriageOutput(sentiment=score("negative"), sensitivity=score("none"), issue_type=score("billing"),
                            toxicity=score("not_offensive"), spam=score("ham"), pii=[PiiSpan("email", 0, 5)],
                            pii_exposed=False, language="en", priority=40.0, priority_explanation=[text],
                            redacted_text="")

    await ingest(db, mention())
    row = await stored(db)

    class DeletedMeanwhile:
        model_version = "test"

        async def score_batch(self, items):
            assert await ingest(db, mention("delete", "")) == ["deleted"]
            return [scored(i.text) for i in items]

    stage = TriageStage(StageContext(settings=None, db=db, triager=DeletedMeanwhile()))
    await stage.handle([Envelope(id="1", topic="triage", key=f"m:{row.id}", payload={"mention_id": row.id})])
    async with db.session() as s:
        tri = await s.scalar(select(TriageResult).where(TriageResult.mention_id == row.id))
    assert (await stored(db)).text == DELETED_TEXT
    assert tri.issue_type == "billing" and "parcel" not in repr(tri.scores) and "4471" not in repr(tri.scores)


async def test_the_daily_purge_removes_what_x_deleted_before_deletions_removed_content(any_db):
    """Tweets deleted under an older release, or by a deletion message published before the upgrade
    (no ``remove_content``), still hold their words: the retention purge, whatever its cutoff, removes
    them and what quotes them, as X's terms ask. Erased posts, and Reddit's (a moderator's removal
    keeps its words), stay as they are."""
    from datetime import timedelta

    from service import retention

    old_delete = NormalizedMention(platform="x", external_id=TWEET["id"], text="", created_at=T0, event="delete")
    reddit = NormalizedMention(platform="reddit", external_id="t3_abc", text="removed by a moderator",
                               created_at=T0)
    await ingest(any_db, mention(), reddit, old_delete, NormalizedMention(**{**reddit.__dict__, "event": "delete"}))
    async def tweet_row() -> Mention:
        async with any_db.session() as s:
            return await s.scalar(select(Mention).where(Mention.platform == "x"))

    row = await tweet_row()
    assert (row.deleted, row.text) == (True, WORDS)  # as an older release left it
    await quoted(any_db, row.id, "parcel 4471")

    counts = await retention.purge(any_db, cutoff=T0 - timedelta(days=365))
    assert counts["deleted_posts_content_removed"] == 1
    assert_removed(await tweet_row(), *await about(any_db, row.id), "parcel 4471")
    async with any_db.session() as s:
        assert await s.scalar(select(Mention.text).where(Mention.platform == "reddit")) == "removed by a moderator"
    assert not (await retention.purge(any_db, cutoff=T0 - timedelta(days=365)))["deleted_posts_content_removed"]


async def test_on_postgresql_a_deletion_waits_for_a_stage_writing_about_the_post_and_then_removes_its_words(
        postgres_url):
    """Triage has written its explanations (uncommitted) when the deletion arrives: its foreign-key
    check's lock does not hold back a plain UPDATE, so each would miss the other's row and the words
    would stay. The removal locks the post first: it waits for triage's commit, then sees its row."""
    import asyncio

    from models.bulk import add_rows
    from models.db import Database

    db = Database(postgres_url)
    await db.upgrade()
    try:
        await ingest(db, mention())
        row = await stored(db)
        async with db.session() as triage_tx, db.session() as ingest_tx:
            await add_rows(triage_tx, TriageResult, [dict(
                mention_id=row.id, model_version="t", sentiment="negative", sensitivity="none",
                issue_type="delivery", toxicity="none", spam="ham", pii_exposed=False, priority=0.5,
                scores={"priority_explanation": [WORDS]})])
            removal = asyncio.create_task(ingest_batch(ingest_tx, [mention("delete", "")]))
            await asyncio.sleep(0.5)
            assert not removal.done()  # held by the post's lock until triage commits
            await triage_tx.commit()
            assert [r.outcome for r in await asyncio.wait_for(removal, 10)] == ["deleted"]
            await ingest_tx.commit()
        async with db.session() as s:
            scores = await s.scalar(select(TriageResult.scores))
        assert (await stored(db)).text == DELETED_TEXT and "4471" not in repr(scores)
    finally:
        await db.close()


async def test_on_postgresql_the_retention_purge_waits_for_a_stage_writing_about_a_post_it_erases(postgres_url):
    """The same race for the purge's erasure of old posts: it waits for triage's commit, then erases
    the explanations triage wrote."""
    import asyncio

    from models.bulk import add_rows
    from models.db import Database
    from service import retention

    db = Database(postgres_url)
    await db.upgrade()
    try:
        await ingest(db, mention())
        row = await stored(db)
        async with db.session() as triage_tx:
            await add_rows(triage_tx, TriageResult, [dict(
                mention_id=row.id, model_version="t", sentiment="negative", sensitivity="none",
                issue_type="delivery", toxicity="none", spam="ham", pii_exposed=False, priority=0.5,
                scores={"priority_explanation": [WORDS]})])
            purge = asyncio.create_task(retention.purge(db, cutoff=T0 + timedelta(days=1)))
            await asyncio.sleep(0.5)
            assert not purge.done()  # held by the post's lock until triage commits
            await triage_tx.commit()
            counts = await asyncio.wait_for(purge, 10)
            assert counts["posts"] == 1 and counts["triage_results"] == 1
        async with db.session() as s:
            scores = await s.scalar(select(TriageResult.scores))
        assert (await stored(db)).text == ERASED_TEXT and "4471" not in repr(scores)
    finally:
        await db.close()
