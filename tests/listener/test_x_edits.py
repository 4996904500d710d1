"""X edits: an edit is a new tweet id listing the chain in ``edit_history_tweet_ids``; the stored
mention is updated, never stored twice, whichever connector (timeline or stream) sees it."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from listener.ingest import ingest_batch
from listener.x.connector import XConnector
from listener.x.normalize import tweet_to_mention, version_id
from listener.x.recheck import since_id
from listener.x.stream import XStreamConnector
from models import Mention
from service.settings import load_settings

from .fakes import serve
from .fakes.x_api import FakeX, edited, tweet
from .test_x_stream import take


@pytest.fixture
async def fake():
    x = FakeX(tweets=[tweet(i) for i in range(3)], page_size=10)
    server = await serve(x)
    yield x
    await server.close()


def settings(fake, **extra):
    return load_settings(x_api_base=fake.base, x_bearer_token="test", x_user_id="99", **extra)


async def ingest(db, mentions):
    async with db.session() as s:
        results = await ingest_batch(s, mentions)
        await s.commit()
    return [r.outcome for r in results]


async def rows(db) -> list[Mention]:
    async with db.session() as s:
        return list(await s.scalars(select(Mention).order_by(Mention.id)))


async def test_an_edit_seen_by_the_mentions_timeline_updates_the_stored_mention(fake, db):
    c = XConnector(settings(fake))
    first, cursor = await c.poll_once(None)
    assert await ingest(db, first) == ["new"] * 3
    original = fake.tweets[1]
    fake.tweets.append(edited(original, 30, "@acme_help post 1 (edit: it works again, thanks)"))
    (edit,), cursor2 = await c.poll_once(cursor)
    assert edit.external_id == original["id"] and version_id(edit) == fake.tweets[-1]["id"]
    assert edit.edited_at is not None and edit.raw["edit_of"] == original["id"]
    assert since_id(cursor2) == fake.tweets[-1]["id"]  # since_id moves on to the edit's own id
    assert await ingest(db, [edit]) == ["edited"]
    stored = await rows(db)
    assert len(stored) == 3
    row = next(r for r in stored if r.external_id == original["id"])
    assert row.text.endswith("thanks)") and row.edited_at == edit.edited_at
    assert row.url.endswith(fake.tweets[-1]["id"]) and row.raw["id"] == fake.tweets[-1]["id"]
    assert (await c.poll_once(cursor2))[0] == []
    await c.close()


async def test_every_version_in_one_page_and_an_older_version_arriving_late_store_one_mention(fake, db):
    base = tweet(7)
    v2 = edited(base, 31, "@acme_help second wording")
    v3 = edited(v2, 32, "@acme_help final wording")
    fake.tweets = [base, v2, v3]
    c = XConnector(settings(fake))
    got, _ = await c.poll_once(None)
    assert [m.external_id for m in got] == [base["id"]] * 3
    assert await ingest(db, got) == ["new", "edited", "edited"]
    late_v2 = tweet_to_mention(v2, {})  # a stale copy of an intermediate version, from another connector
    assert await ingest(db, [late_v2, tweet_to_mention(base, {})]) == ["duplicate", "duplicate"]
    (row,) = await rows(db)
    assert row.text == "@acme_help final wording"
    await c.close()


async def test_an_edit_whose_original_was_never_seen_is_stored_under_the_original_id(db):
    base = tweet(9)
    only_edit = edited(base, 40, "@acme_help edited before we looked")
    m = tweet_to_mention(only_edit, {})
    assert await ingest(db, [m]) == ["new"]
    (row,) = await rows(db)
    assert row.external_id == base["id"] and row.platform_conversation_id == base["id"]
    assert await ingest(db, [tweet_to_mention(base, {})]) == ["duplicate"]  # the original itself, later


def test_an_edited_thread_root_keeps_the_originals_thread_and_a_reply_keeps_its_own():
    root = tweet(3)
    edit = edited(root, 33, "reworded")
    edit["conversation_id"] = edit["id"]  # names itself
    assert tweet_to_mention(edit, {}).conversation_id == root["id"]
    reply = tweet(4, reply_to=root["id"])
    assert tweet_to_mention(edited(reply, 34, "reworded reply"), {}).conversation_id == root["id"]
    never_edited = tweet_to_mention(root, {})
    assert never_edited.edited_at is None and "edit_of" not in never_edited.raw


async def test_the_filtered_stream_passes_an_edit_of_a_tweet_it_already_yielded(fake, db):
    c = XStreamConnector(settings(fake, x_stream_rules=["acme"]), poll_seconds=0.05, idle_seconds=0.1,
                         stall_seconds=2.0)
    fake.rules = [{"id": "1590000000000000000", "value": "acme", "tag": "socialcare"}]
    base = tweet(11)
    fake.push(base)
    fake.push(base)  # X may deliver a tweet twice: still once
    edit = edited(base, 41, "@acme_help edited on the stream")
    fake.push(edit)
    got, cursor = await take(c.stream(None), 2)
    assert [m.external_id for m in got] == [base["id"], base["id"]] and got[1].edited_at is not None
    assert since_id(cursor) == edit["id"]
    assert await ingest(db, got) == ["new", "edited"]
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Mention)) == 1
    await c.close()
