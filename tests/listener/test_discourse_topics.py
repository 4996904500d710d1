"""Discourse: a whole topic deleted or recovered (``topic_destroyed``, ``topic_recovered``), from its
signed webhook through the ingest stage, and the re-check that reads the topic's posts as 404s
meanwhile without undoing the recovery."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from listener.discourse import webhook
from listener.discourse.normalize import topic_to_mention
from models import Mention
from service.bus import Envelope
from service.pipeline import ingest_key
from service.stages.base import StageContext
from service.stages.ingest import IngestStage

from .fakes import serve
from .fakes.discourse import FakeDiscourse, post, topic, webhook_request
from .ingest_path import Pipeline
from .test_discourse import FORUM, SECRET, hook, send  # noqa: F401 (hook: the webhook's fixture)
from .test_discourse_recheck import connector


async def through_ingest(hook, db, since: int) -> list[int]:  # noqa: F811
    """What the webhook published from ``since`` on, through the ingest stage one delivery at a time
    (as the bus carries them); the ids it sent on to triage."""
    stage = IngestStage(StageContext(settings=None, db=db))
    out = []
    for n, m in enumerate(hook.published[since:], start=since):
        env = Envelope(id=str(n), topic="ingest", key=ingest_key(m), payload={"mention": m.to_dict()})
        out += [o.payload["mention_id"] for o in await stage.handle([env])]
    return out


async def rows(db) -> dict[str, Mention]:
    async with db.session() as s:
        return {m.external_id: m for m in await s.scalars(select(Mention))}


def states(stored: dict[str, Mention]) -> dict[str, tuple[bool, bool]]:
    return {k: (m.deleted, m.hidden) for k, m in sorted(stored.items())}


async def test_a_deleted_topic_hides_its_posts_and_its_recovery_shows_again_and_triages_what_it_hid(hook, db):  # noqa: F811
    """Discourse deletes the topic and its first post (``post_destroyed`` for that one alone), and
    ``topic_destroyed`` names no post: every post of the topic we hold is deleted, none of another.
    Its recovery shows again what the deletion hid and sends it to triage: not a reply a moderator
    deleted on its own before, not an erased post; a rule's hide stays."""
    from community import moderation
    from service.privacy import erase_posts

    forum = FakeDiscourse(posts=[post(100 + n, topic_id=40, number=n, reply_to=1 if n > 1 else None,
                                      raw=f"post {n} of 40", username="bob" if n % 2 else "carol")
                                 for n in range(1, 6)]
                          + [post(200 + n, topic_id=41, number=n, raw=f"post {n} of 41") for n in (1, 2)])
    for p in forum.posts:
        assert (await send(hook, "post_created", {"post": p})).status == 202
    own = forum.destroy(forum.find(40, 5), at="2026-11-20T09:00:00.000Z")  # a moderator's, on its own, earlier
    assert (await send(hook, "post_destroyed", {"post": own})).status == 202
    await through_ingest(hook, db, 0)
    stored = await rows(db)
    async with db.session() as s:  # a rule hid 40/3
        await moderation.add_action(s, "mod:40/3", await s.get(Mention, stored["40/3"].id), "hide", "spam", rule="spam")
        await s.commit()

    before = len(hook.published)
    gone = forum.destroy_topic(40)
    assert forum.find(40, 2)["deleted_at"] is None  # the replies carry no deletion of their own
    resp = await send(hook, "topic_destroyed", {"topic": gone})
    assert resp.status == 202
    assert await resp.json() == {"accepted": 1, "event": "topic_destroyed", "external_id": "40/1"}
    (event,) = hook.published[before:]
    assert (event.event, event.conversation_id, event.author_id, event.text) == ("thread_delete", "40/1", None, "")
    assert event.created_at == datetime(2026, 11, 20, 10, tzinfo=UTC)  # the topic's deleted_at: its own time
    assert (await send(hook, "post_destroyed", {"post": forum.find(40, 1)})).status == 202
    assert await through_ingest(hook, db, before) == []  # nothing to triage
    stored = await rows(db)
    assert states(stored) == {"40/1": (True, False), "40/2": (True, False), "40/3": (True, True),
                              "40/4": (True, False), "40/5": (True, True), "41/1": (False, False),
                              "41/2": (False, False)}
    assert stored["40/2"].text == "post 2 of 40" and stored["40/2"].raw["id"] == 102  # deleted, not rewritten

    before = len(hook.published)  # Discourse redelivers (a timeout on its side); a reply was on its way
    assert (await send(hook, "topic_destroyed", {"topic": gone})).status == 202
    assert ingest_key(hook.published[before]) == ingest_key(event)
    late = post(106, topic_id=40, number=6, reply_to=1, raw="anyone?")
    assert (await send(hook, "post_created", {"post": late})).status == 202
    assert await through_ingest(hook, db, before) == []  # stored deleted with its topic, not triaged
    assert {k: (r.deleted, r.text) for k, r in (await rows(db)).items() if k != "40/6"} == {
        k: (r.deleted, r.text) for k, r in stored.items()}
    async with db.session() as s:  # 40/4's author asks to be forgotten meanwhile
        await erase_posts(s, [stored["40/4"].id], Counter())
        await s.commit()

    before = len(hook.published)
    back = forum.recover_topic(40)
    resp = await send(hook, "topic_recovered", {"topic": back})
    assert resp.status == 202 and (await resp.json())["external_id"] == "40/1"
    assert hook.published[before].event == "thread_restore"
    assert (await send(hook, "post_recovered", {"post": forum.find(40, 1)})).status == 202
    triaged = await through_ingest(hook, db, before)
    after = await rows(db)
    assert sorted(set(triaged)) == sorted(after[k].id for k in ("40/1", "40/2", "40/3", "40/6"))
    assert states(after) == {"40/1": (False, False), "40/2": (False, False),
                             "40/3": (False, True),  # the rule's hide stays
                             "40/4": (True, False),  # erased
                             "40/5": (True, True),  # deleted on its own: Discourse keeps it deleted
                             "40/6": (False, False), "41/1": (False, False), "41/2": (False, False)}

    before = len(hook.published)  # the first deletion once more, retried by Discourse after the recovery
    assert (await send(hook, "topic_destroyed", {"topic": gone})).status == 202
    await through_ingest(hook, db, before)
    assert states(await rows(db)) == states(after)


async def test_topic_events_are_signed_checked_and_validated_before_publishing(hook):  # noqa: F811
    gone = topic(40, deleted_at="2026-11-20T10:00:00.000Z")
    resp = await send(hook, "topic_destroyed", {"topic": gone}, secret="forged")
    assert resp.status == 401 and (await resp.json())["error"] == "invalid signature"
    _, headers = webhook_request("topic_destroyed", {"topic": gone}, SECRET)
    resp = await hook.post(webhook.PATH, data=b'{"topic": {"id": 41}}', headers=headers)  # another body
    assert resp.status == 401
    for payload in ({"topic": {"title": "no id"}}, {"topic": {"id": "40"}}, {"topic": {"id": 0}}, {"topic": 40},
                    {"post": post(1)}, {"topic": {"id": 40, "slug": ["s"]}}, {"topic": {"id": 40, "title": "nul\x00"}},
                    {"topic": {"id": 40, "deleted_at": "yesterday"}}):
        resp = await send(hook, "topic_destroyed", payload)
        assert resp.status == 400 and (await resp.json())["error"] == "invalid topic", payload
    assert hook.published == []
    resp = await send(hook, "topic_created", {"topic": topic(42)})  # still acknowledged, nothing published
    assert resp.status == 200 and (await resp.json())["accepted"] == 0 and hook.published == []


async def test_a_recovery_is_timed_by_its_arrival_and_a_private_message_we_started_counts(hook):  # noqa: F811
    """The recovered topic's payload says nothing of when (``deleted_at`` is null again). Our own
    topic's deletion still applies: a private message we started holds the customer's replies."""
    ours = topic(77, archetype="private_message", user_id=2,
                 created_by={"id": 2, "username": "acme_support", "name": "Acme Support"})
    start = datetime.now(UTC)
    assert (await send(hook, "topic_recovered", {"topic": ours})).status == 202
    (m,) = hook.published
    assert (m.external_id, m.event, m.kind, m.is_public) == ("77/1", "thread_restore", "dm", False)
    assert start <= m.created_at <= datetime.now(UTC)


@pytest.fixture
async def forum():
    fake = FakeDiscourse(posts=[
        post(100, topic_id=40, number=1, raw="The app logs me out every hour"),
        post(101, topic_id=40, number=2, reply_to=1, raw="same here", username="bob", user_id=18),
        post(102, topic_id=40, number=3, reply_to=2, raw="@bob try clearing the cache", username="carol", user_id=19),
        post(103, topic_id=41, number=1, raw="Refund for order 12345?")])
    server = await serve(fake)
    yield fake
    await server.close()


@pytest.mark.parametrize("webhook_recovery", [True, False], ids=["topic_recovered", "webhooks-missed"])
async def test_the_recheck_reads_a_deleted_topics_posts_as_404s_and_a_later_recovery_wins(
        forum, made, db, webhook_recovery):
    """To a non-staff API user every post of a deleted topic is a 404: the re-check publishes a
    deletion of each, which changes nothing (already deleted with the topic). After the recovery
    they show on the pages again: the re-check's restores re-hide nothing; and where
    ``topic_recovered`` never came, the first post's restore recovers the topic."""
    c, pipeline = connector(forum, made), Pipeline(db)
    first, cursor = await c.poll_once("99")
    await pipeline.run(first)
    gone = forum.destroy_topic(40)
    assert await pipeline.run([topic_to_mention(gone, forum.base, "topic_destroyed", datetime.now(UTC))]) == []
    deletions, cursor = await c.poll_once(cursor)
    assert sorted((m.external_id, m.event) for m in deletions) == [("40/1", "delete"), ("40/2", "delete"),
                                                                   ("40/3", "delete")]
    assert await pipeline.run(deletions) == []
    stored = await pipeline.rows()
    assert all(stored[k].deleted and stored[k].deleted_with_thread for k in ("40/1", "40/2", "40/3"))

    back = forum.recover_topic(40)
    triaged = []
    if webhook_recovery:
        triaged += await pipeline.run([topic_to_mention(back, forum.base, "topic_recovered", datetime.now(UTC))])
    restores, cursor = await c.poll_once(cursor)
    assert sorted((m.external_id, m.event) for m in restores) == [("40/1", "restore"), ("40/2", "restore"),
                                                                  ("40/3", "restore")]
    triaged += await pipeline.run(restores)
    stored = await pipeline.rows()
    assert {k: (m.deleted, m.hidden) for k, m in stored.items()} == dict.fromkeys(stored, (False, False))
    assert {e.payload["mention_id"] for e in triaged} == {stored[k].id for k in ("40/1", "40/2", "40/3")}
    assert (await c.poll_once(cursor))[0] == []
