"""A post's content removed on its deletion (``remove_content``: listener.deletions) leaves no copy
behind in the two places the first release of it missed: the outgoing webhook deliveries already
stored about the post (console.webhooks_out), and its ingest message dead-lettered on the bus
(service.bus, both backends). A deletion that only hides (a Reddit moderator's removal) leaves both
as they were. The database on SQLite and PostgreSQL, the bus in-process and on Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import ClientSession
from sqlalchemy import select, update

from console import webhooks_deleted, webhooks_out
from listener.ingest import ingest_batch
from listener.protocol import NormalizedMention
from models import Mention, RouteDecision, TriageResult, WebhookDelivery, WebhookSubscription
from models.base import utcnow
from models.mentions import DELETED_TEXT
from service import deadletters
from service.bus.memory import InProcessBus
from service.pipeline import submit
from service.stages import ingest as ingest_stage
from service.stages.base import StageContext
from service.stages.ingest import IngestStage
from service.workers import StageWorker

T0 = datetime(2026, 12, 1, 8, tzinfo=UTC)
TWEET_WORDS = "my parcel 4471 never came, mail tom.h@example.com"  # "4471": the tweet's words
REDDIT_WORDS = "my parcel 5582 came crushed"  # "5582": the Reddit post's


def tweet(eid: str = "1001", *, event: str = "upsert", remove_content: bool = False) -> NormalizedMention:
    return NormalizedMention(platform="x", external_id=eid, text=TWEET_WORDS, created_at=T0, author_id="783214",
                             author_handle="tom", url=f"https://x.com/tom/status/{eid}", event=event,
                             remove_content=remove_content, raw={"id": eid, "text": TWEET_WORDS})


def reddit(eid: str = "abc12", *, event: str = "upsert") -> NormalizedMention:
    """A Reddit submission; deleted here by a moderator (``remove_content`` false: only hidden)."""
    return NormalizedMention(platform="reddit", external_id=f"t3_{eid}", text=REDDIT_WORDS, created_at=T0,
                             author_id="t2_ann", author_handle="ann", channel="acme", event=event,
                             url=f"https://www.reddit.com/r/acme/comments/{eid}/my_parcel_5582_came_crushed/",
                             raw={"id": eid, "name": f"t3_{eid}", "selftext": REDDIT_WORDS})


async def ingest(db, *mentions: NormalizedMention) -> list[int | None]:
    async with db.session() as s:
        done = await ingest_batch(s, list(mentions))
        await s.commit()
    return [r.mention_id for r in done]


async def quoted(db, mention_id: int, words: str) -> None:
    """What triage and routing write about a post: explanations and a reason that quote its words."""
    async with db.session() as s:
        s.add(TriageResult(
            mention_id=mention_id, model_version="t", sentiment="negative", sensitivity="personal_data",
            issue_type="delivery", toxicity="none", spam="ham", pii_exposed=True, priority=0.8,
            scores={"sentiment": {"label": "negative", "score": 0.9, "explanation": [f"says '{words}'"]},
                    "issue_type": {"label": "delivery", "score": 0.8, "explanation": [words]},
                    "priority_explanation": [f"urgent: {words}"], "pii": []}))
        s.add(RouteDecision(mention_id=mention_id, outcome="agent_queue", reason=f"shares '{words}' with an answer",
                            confidence=0.5, router_version="t"))
        await s.commit()


async def subscribe(db, url: str = "http://127.0.0.1:9/hook") -> None:
    async with db.session() as s:
        s.add(WebhookSubscription(name="crm-bot", url=url, secret="a secret of enough length", created_by="test",
                                  events=["mention.triaged", "mention.routed"],
                                  created_at=utcnow() - timedelta(hours=1)))
        await s.commit()


async def deliveries(db) -> dict[tuple[int, str], WebhookDelivery]:
    """Each delivery by (its post's id, its event type)."""
    async with db.session() as s:
        rows = list(await s.scalars(select(WebhookDelivery)))
    return {(d.payload["data"]["mention_id"], d.event_type): d for d in rows}


def later() -> datetime:
    return utcnow() + timedelta(seconds=5)  # past the scanner's settle delay


# --- outgoing webhook deliveries ------------------------------------------------------------------
async def test_a_deleted_tweets_webhook_deliveries_lose_its_words_and_a_hidden_posts_keep_them(any_db, receiver):
    """Delivered or pending, the tweet's deliveries lose its words in the deletion's transaction and
    keep their ids, status and times; the pending one still goes out, with the marker. The Reddit
    post a moderator removed (only hidden) keeps its deliveries as they were."""
    await subscribe(any_db, receiver.url)
    tweet_id, post_id = await ingest(any_db, tweet(), reddit())
    await quoted(any_db, tweet_id, "parcel 4471")
    await quoted(any_db, post_id, "parcel 5582")
    assert await webhooks_out.scan(any_db, now=later()) == 4
    before = await deliveries(any_db)
    assert "4471" in json.dumps(before[tweet_id, "mention.triaged"].payload)
    assert "4471" in json.dumps(before[tweet_id, "mention.routed"].payload)
    sent_at = utcnow() - timedelta(minutes=1)
    async with any_db.session() as s:  # the tweet's triage event went out already
        await s.execute(update(WebhookDelivery).where(WebhookDelivery.id == before[tweet_id, "mention.triaged"].id)
                        .values(status="delivered", attempts=1, last_status=200, delivered_at=sent_at))
        await s.commit()

    await ingest(any_db, tweet(event="delete", remove_content=True), reddit(event="delete"))

    after = await deliveries(any_db)
    for event in ("mention.triaged", "mention.routed"):
        old, new = before[tweet_id, event], after[tweet_id, event]
        assert "parcel 4471" not in json.dumps(new.payload), new.payload
        assert (new.id, new.event_id, new.subscription_id, new.created_at, new.payload["id"],
                new.payload["created_at"]) == (old.id, old.event_id, old.subscription_id, old.created_at,
                                               old.payload["id"], old.payload["created_at"])
        assert after[post_id, event].payload == before[post_id, event].payload  # only hidden: kept
    triaged, routed = after[tweet_id, "mention.triaged"], after[tweet_id, "mention.routed"]
    assert (triaged.status, triaged.attempts, triaged.delivered_at) == ("delivered", 1, sent_at)
    assert triaged.payload["data"]["text"] == DELETED_TEXT
    assert triaged.payload["data"]["url"] == "https://x.com/tom/status/1001"  # a handle and an id: no words
    labels = triaged.payload["data"]["triage"]
    assert (labels["sentiment"], labels["issue_type"], labels["scores"]["sentiment"]["label"]) == (
        "negative", "delivery", "negative")
    assert (routed.status, routed.payload["data"]["reason"], routed.payload["data"]["outcome"]) == (
        "pending", DELETED_TEXT, "agent_queue")

    async with ClientSession() as http:
        assert await webhooks_out.deliver_due(any_db, http, now=later()) == 3
    sent = {(b["data"]["mention_id"], b["type"]): b for b in (json.loads(body) for _, body in receiver.got)}
    assert set(sent) == {(tweet_id, "mention.routed"), (post_id, "mention.triaged"), (post_id, "mention.routed")}
    assert "parcel 4471" not in json.dumps(sent[tweet_id, "mention.routed"])
    assert sent[tweet_id, "mention.routed"]["id"] == routed.event_id
    assert "5582" in json.dumps(sent[post_id, "mention.routed"])


async def test_a_scan_that_read_a_tweet_before_its_deletion_commits_no_words(any_db, monkeypatch):
    """The scanner builds the tweet's event, the deletion commits (finding no delivery yet), then
    the scanner writes: it checks again before committing, so its delivery has no words."""
    await subscribe(any_db)
    await webhooks_out.scan(any_db, now=later())  # the watermarks exist: the next scan writes nothing early
    (tweet_id,) = await ingest(any_db, tweet())
    await quoted(any_db, tweet_id, "parcel 4471")
    source = webhooks_out.SOURCES["mention.triaged"]

    async def build_then_delete(session, row):
        data = await source.build(session, row)
        assert "4471" in json.dumps(data)
        await ingest(any_db, tweet(event="delete", remove_content=True))  # another transaction, committed
        return data

    monkeypatch.setitem(webhooks_out.SOURCES, "mention.triaged", dataclasses.replace(source, build=build_then_delete))
    assert await webhooks_out.scan(any_db, now=later()) == 2
    written = await deliveries(any_db)
    assert set(written) == {(tweet_id, "mention.triaged"), (tweet_id, "mention.routed")}
    for d in written.values():
        assert "parcel 4471" not in json.dumps(d.payload), d.payload
        assert d.mention_id == tweet_id
    assert written[tweet_id, "mention.triaged"].payload["data"]["text"] == DELETED_TEXT


async def test_a_deletion_waits_for_a_scan_about_to_commit_and_then_removes_its_words(any_db, monkeypatch):
    """The other order: the scanner has written (SQLite: it holds the write lock) or locked the
    post ``FOR SHARE`` (PostgreSQL) and checked; the deletion waits for its commit, then finds its
    deliveries and removes the words."""
    await subscribe(any_db)
    await webhooks_out.scan(any_db, now=later())
    (tweet_id,) = await ingest(any_db, tweet())
    await quoted(any_db, tweet_id, "parcel 4471")
    checked, go = asyncio.Event(), asyncio.Event()
    respect = webhooks_deleted.respect_removal

    async def hold(session, written):
        await respect(session, written)
        checked.set()
        await go.wait()

    monkeypatch.setattr(webhooks_deleted, "respect_removal", hold)
    scanning = asyncio.create_task(webhooks_out.scan(any_db, now=later()))
    await asyncio.wait_for(checked.wait(), 10)
    deleting = asyncio.create_task(ingest(any_db, tweet(event="delete", remove_content=True)))
    await asyncio.sleep(0.5)
    assert not deleting.done()  # waits for the scan's transaction
    go.set()
    assert await scanning == 2
    await asyncio.wait_for(deleting, 10)
    written = await deliveries(any_db)
    assert len(written) == 2
    assert all("parcel 4471" not in json.dumps(d.payload) for d in written.values())


# --- ingest dead letters on the bus ---------------------------------------------------------------
@pytest.fixture
def failing(monkeypatch):
    """While ``failing["on"]``, ingest refuses a batch holding a new post, with an error that quotes
    it (as a database error names the values it refused)."""
    state = {"on": True}

    async def ingest_or_fail(session, batch):
        new = [m for m in batch if m.event == "upsert"]
        if state["on"] and new:
            raise ValueError(f"could not store {new[0].text!r}")
        return await ingest_batch(session, batch)

    monkeypatch.setattr(ingest_stage, "ingest_batch", ingest_or_fail)
    return state


async def run_ingest(bus, db) -> None:
    """The ingest stage's worker, until the topic is drained."""
    await bus.ensure_group("ingest", "ingest")
    await bus.ensure_group("triage", "triage")
    worker = StageWorker(bus, IngestStage(StageContext(settings=None, db=db)), batch_size=50, block_ms=10)
    while await worker.run_once():
        pass


def of(letters, platform: str):
    (letter,) = [d for d in letters if d.payload["mention"]["platform"] == platform]
    return letter


async def test_a_dead_lettered_tweet_deleted_on_x_loses_its_words_and_its_retry_stores_none(
        any_db, make_bus, failing):
    """Both posts failed ingest and were dead-lettered. X deletes the tweet: its dead letter keeps
    its id (in-process) or gets a new one (Redis), its key, attempts and failure time, and becomes the
    tweet's deletion, with no words in it or its reason. A moderator removes the Reddit post (only
    hidden): its dead letter stays as it was. The tweet's letter retried stores nothing."""
    bus = await make_bus(1)
    await bus.ensure_group("ingest", "ingest")
    await submit(bus, [tweet(), reddit()])
    await run_ingest(bus, any_db)
    letters = await deadletters.listed(bus)
    assert len(letters) == 2 and "4471" in json.dumps(of(letters, "x").payload) + of(letters, "x").reason
    tweet_letter, reddit_letter = of(letters, "x"), of(letters, "reddit")

    await submit(bus, [tweet(event="delete", remove_content=True), reddit(event="delete")])

    letters = await deadletters.listed(bus)
    assert len(letters) == 2
    gone, kept = of(letters, "x"), of(letters, "reddit")
    assert "parcel 4471" not in json.dumps(gone.payload) + gone.reason + repr(gone.extra), gone
    assert (gone.topic, gone.key, gone.attempts, gone.failed_at) == (
        tweet_letter.topic, tweet_letter.key, tweet_letter.attempts, tweet_letter.failed_at)
    assert gone.reason == f"ValueError: {DELETED_TEXT}"
    mention = gone.payload["mention"]
    assert (mention["event"], mention["remove_content"], mention["text"], mention["external_id"],
            mention["author_id"], mention["raw"]) == ("delete", True, DELETED_TEXT, "1001", "783214", {"id": "1001"})
    assert kept == reddit_letter  # only hidden on Reddit: its dead letter as it was
    assert (gone.id == tweet_letter.id) == isinstance(bus, InProcessBus)  # a Redis entry is replaced

    await run_ingest(bus, any_db)  # the two deletions: of posts never stored
    failing["on"] = False
    outcome = await deadletters.retry(bus, [gone.id])
    assert outcome.done == [gone.id]
    await run_ingest(bus, any_db)
    async with any_db.session() as s:
        rows = list(await s.scalars(select(Mention)))
    assert rows == []  # never stored, and the retry stores nothing
    assert [d.payload["mention"]["platform"] for d in await deadletters.listed(bus)] == ["reddit"]


async def test_a_stored_tweets_dead_lettered_edit_retried_after_its_deletion_brings_no_words_back(
        any_db, make_bus, failing):
    """The tweet is stored; its edit is dead-lettered; X deletes it: the letter becomes the deletion,
    and retried after it, the tweet keeps the marker."""
    bus = await make_bus(1)
    failing["on"] = False
    await submit(bus, [tweet()])
    await run_ingest(bus, any_db)
    edit = dataclasses.replace(tweet(), text=TWEET_WORDS + " (edited: 4471 still)", edited_at=T0 + timedelta(hours=1))
    failing["on"] = True
    await submit(bus, [edit])
    await run_ingest(bus, any_db)
    (letter,) = await deadletters.listed(bus)
    assert "edited: 4471" in json.dumps(letter.payload)
    await submit(bus, [tweet(event="delete", remove_content=True)])
    await run_ingest(bus, any_db)
    (letter,) = await deadletters.listed(bus)
    assert "4471" not in json.dumps(letter.payload) + letter.reason
    failing["on"] = False
    await deadletters.retry(bus, [letter.id])
    await run_ingest(bus, any_db)
    async with any_db.session() as s:
        (row,) = list(await s.scalars(select(Mention)))
    assert (row.text, row.deleted) == (DELETED_TEXT, True) and "4471" not in json.dumps(row.raw)
    assert await deadletters.listed(bus) == []


async def test_a_tweet_dead_lettered_after_its_deletion_was_published_is_buried_without_words(
        any_db, make_bus, failing):
    """The deletion comes while the tweet's message is still being retried: the bus remembers the
    post, and the message dead-lettered afterwards is written without the words."""
    bus = await make_bus(2)
    await submit(bus, [tweet()])
    await bus.ensure_group("ingest", "ingest")
    worker = StageWorker(bus, IngestStage(StageContext(settings=None, db=any_db)), batch_size=50, block_ms=10)
    await worker.run_once()  # fails once: to be tried again
    assert await deadletters.listed(bus) == []
    await submit(bus, [tweet(event="delete", remove_content=True)])
    await run_ingest(bus, any_db)  # fails again: dead-lettered; then the deletion (nothing stored)
    (letter,) = await deadletters.listed(bus)
    assert "4471" not in json.dumps(letter.payload) + letter.reason
    assert (letter.payload["mention"]["event"], letter.attempts) == ("delete", 2)


async def test_a_restore_dead_lettered_after_a_removal_keeps_its_words_and_its_retry_shows_the_post(
        any_db, make_bus):
    """X shows the tweet again days after the deletion that removed its content: the restore, if it
    is dead-lettered, is no deletion of it (the bus forgets the removal when the restore is
    published, and a message published after a removal is never rewritten as one)."""
    bus = await make_bus(1)
    await bus.ensure_group("ingest", "ingest")
    await submit(bus, [tweet(event="delete", remove_content=True)])
    (env,) = await bus.read("ingest", "ingest", "c1", 10, 10)
    await bus.ack("ingest", "ingest", [env.id])
    for published in ("restore", "upsert"):  # the restore itself, then an edit of the tweet shown again
        await submit(bus, [dataclasses.replace(tweet(event=published), edited_at=T0 + timedelta(days=2))])
        (env,) = await bus.read("ingest", "ingest", "c1", 10, 10)
        await bus.fail("ingest", "ingest", env, "OperationalError: database is locked")
    letters = await deadletters.listed(bus)
    assert [(d.payload["mention"]["event"], d.payload["mention"]["text"], d.reason) for d in letters] == [
        ("restore", TWEET_WORDS, "OperationalError: database is locked"),
        ("upsert", TWEET_WORDS, "OperationalError: database is locked")]


async def test_0011_fills_in_the_post_of_the_deliveries_already_stored(any_database_url):
    """Deliveries written before 0011 get their post's id from their payload (none for an event
    about no post), so a later removal finds them too."""
    from sqlalchemy import bindparam, text

    from models.base import JsonDoc
    from models.db import Database

    db = Database(any_database_url)
    insert = text("INSERT INTO webhook_deliveries (subscription_id, event_id, event_type, payload, status, attempts, "
                  "next_attempt_at, created_at) SELECT id, :event_id, :event_type, :payload, 'delivered', 1, "
                  "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM webhook_subscriptions").bindparams(
        bindparam("payload", type_=JsonDoc))
    try:
        await db.upgrade("0010")
        async with db.engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO webhook_subscriptions (name, url, secret, events, active, created_by, created_at) "
                "VALUES ('bot', 'http://127.0.0.1:9/hook', 's', '[]', true, 'test', CURRENT_TIMESTAMP)"))
            await conn.execute(insert, [
                {"event_id": "mention.triaged:1", "event_type": "mention.triaged",
                 "payload": {"data": {"mention_id": 7, "text": "parcel 4471"}}},
                {"event_id": "incident.opened:1", "event_type": "incident.opened",
                 "payload": {"data": {"incident_id": 3}}}])
        await db.upgrade("0011")
        async with db.engine.connect() as conn:
            got = dict((await conn.execute(text("SELECT event_type, mention_id FROM webhook_deliveries"))).all())
        assert got == {"mention.triaged": 7, "incident.opened": None}
        await db.downgrade("0010")
        await db.upgrade("0011")
    finally:
        await db.close()
