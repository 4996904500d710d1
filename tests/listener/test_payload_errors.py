"""What platforms send when things go wrong: malformed JSON, a huge post, and a storm of 429s then
500s, through the real clients (asyncpraw, aiohttp, tweepy) and the runner. Nothing is lost."""

from __future__ import annotations

import asyncio

import pytest

from listener.cursors import MemoryCursorStore
from listener.discourse.connector import DiscourseConnector, parse_cursor
from listener.errors import TransientError
from listener.ingest import ingest_batch
from listener.protocol import NormalizedMention
from listener.reddit.connector import RedditConnector
from listener.runner import run_connector
from listener.text import MAX_TEXT_CHARS
from listener.x.connector import XConnector
from listener.x.recheck import since_id
from models import Mention
from service.bus.codec import dumps_payload, loads_payload
from service.settings import load_settings

from .fakes import serve
from .fakes.discourse import API_KEY, FakeDiscourse, post
from .fakes.reddit import CLIENT_ID, CLIENT_SECRET, PASSWORD, FakeReddit, comment, submission
from .fakes.x_api import FakeX, tweet

HUGE = 1_000_000


@pytest.fixture
async def reddit():
    fake = FakeReddit(posts=[submission(i) for i in range(1, 4)])
    fake.comments = [comment(1, link=fake.posts[0]["data"]["name"])]
    server = await serve(fake)
    yield fake
    await server.close()


@pytest.fixture
async def forum():
    fake = FakeDiscourse(posts=[post(100 + i, topic_id=40 + i // 3, number=1 + i % 3, raw=f"post {i}")
                                for i in range(6)])
    server = await serve(fake)
    yield fake
    await server.close()


def reddit_connector(fake) -> RedditConnector:
    return RedditConnector(load_settings(
        reddit_client_id=CLIENT_ID, reddit_client_secret=CLIENT_SECRET, reddit_username="acme_support",
        reddit_password=PASSWORD, reddit_subreddits=["acme"], reddit_oauth_url=fake.base, reddit_url=fake.base),
        poll_seconds=0.02)


def forum_connector(fake) -> DiscourseConnector:
    return DiscourseConnector(load_settings(discourse_url=fake.base, discourse_api_key=API_KEY,
                                            discourse_api_username="acme_support"), poll_seconds=0.02)


async def collect(connector, store, until, *, on_publish=None, timeout=30.0):
    got, stop = [], asyncio.Event()

    async def publish(batch):
        got.extend(m.external_id for m in batch)
        if on_publish:
            on_publish()
        if until(got):
            stop.set()

    status = await asyncio.wait_for(run_connector(connector, publish, store, stop, backoff_base=0.01), timeout)
    return got, status


async def store_all(db, mentions: list[NormalizedMention]) -> list[Mention]:
    via_bus = [NormalizedMention.from_dict(loads_payload(dumps_payload({"m": m.to_dict()}))["m"]) for m in mentions]
    async with db.session() as s:
        results = await ingest_batch(s, via_bus)
        await s.commit()
        return [await s.get(Mention, r.mention_id) for r in results]


# --- malformed JSON ------------------------------------------------------------------------------

async def test_malformed_json_from_reddit_is_transient_and_the_runner_loses_nothing(reddit, waits):
    c = reddit_connector(reddit)
    reddit.malformed_next = 1
    with pytest.raises(TransientError):
        await c.poll_once(None)
    reddit.malformed_next = 2
    got, status = await collect(c, MemoryCursorStore(), lambda g: len(g) >= 4)
    assert sorted(got) == sorted(t["data"]["name"] for t in reddit.posts + reddit.comments)
    assert len(waits) == 2 and status.state == "stopped" and status.last_error is None
    await c.close()


async def test_malformed_json_from_discourse_is_transient_and_the_runner_loses_nothing(forum, waits):
    c = forum_connector(forum)
    forum.malformed_next = 1
    with pytest.raises(TransientError, match="malformed JSON"):
        await c.poll_once(None)
    store = MemoryCursorStore()
    await store.set("discourse", "99")
    forum.malformed_next = 2
    got, _ = await collect(c, store, lambda g: len(g) >= 6)
    assert len(got) == len(set(got)) == 6 and len(waits) == 2
    assert parse_cursor(await store.get("discourse")) == 105
    await c.close()


# --- a huge post -------------------------------------------------------------------------------

async def test_a_one_megabyte_tweet_is_truncated_and_flagged_and_the_others_are_kept(db):
    fake = FakeX(tweets=[tweet(1), tweet(2, text="@acme_help " + "a" * HUGE), tweet(3)], page_size=10)
    server = await serve(fake)
    try:
        c = XConnector(load_settings(x_api_base=fake.base, x_bearer_token="t", x_user_id="99"))
        mentions, cursor = await c.poll_once(None)
        assert len(mentions) == 3 and since_id(cursor) == fake.tweets[-1]["id"]
        small1, huge, small3 = await store_all(db, mentions)
        assert len(huge.text) == MAX_TEXT_CHARS and huge.raw["socialcare_truncated_from"] == HUGE + 11
        assert small1.text == "@acme_help post 1" and small3.text == "@acme_help post 3"
        assert "socialcare_truncated_from" not in small1.raw
        await c.close()
    finally:
        await server.close()


async def test_a_one_megabyte_reddit_post_is_truncated_and_flagged_and_the_others_are_kept(reddit, db):
    reddit.posts.insert(1, submission(9, title="Huge", selftext="b" * HUGE))
    reddit.posts.sort(key=lambda t: int(t["data"]["id"], 36))
    c = reddit_connector(reddit)
    mentions, _ = await c.poll_once(None)
    assert len(mentions) == 5
    rows = {r.external_id: r for r in await store_all(db, mentions)}
    huge = rows[reddit.posts[-1]["data"]["name"]]
    assert len(huge.text) == MAX_TEXT_CHARS and huge.raw["socialcare_truncated_from"] == len("Huge\n\n") + HUGE
    assert all(len(r.text) < 100 for name, r in rows.items() if r is not huge)
    await c.close()


# --- a storm: 429s with reset headers, then 500s, then success --------------------------------

async def test_a_reddit_storm_of_429s_then_500s_is_ridden_out_without_losing_a_post(reddit, waits):
    c = reddit_connector(reddit)
    reset = {"x-ratelimit-remaining": "0", "x-ratelimit-used": "600", "x-ratelimit-reset": "1"}
    reddit.fail_next = [(429, reset)] * 3 + [(500, {})] * 6  # asyncprawcore tries a 500 three times itself
    arriving = iter([submission(20), submission(21)])

    def more_posts_meanwhile():
        nxt = next(arriving, None)
        if nxt is not None:
            reddit.posts.append(nxt)

    got, status = await collect(c, MemoryCursorStore(), lambda g: len(g) >= 6, on_publish=more_posts_meanwhile)
    assert sorted(got) == sorted(t["data"]["name"] for t in reddit.posts + reddit.comments)
    assert len(got) == len(set(got)) == 6
    assert waits[:3] == [1.0, 1.0, 1.0]  # each 429: until its window resets (Reddit's x-ratelimit-reset)
    assert len(waits) == 5 and all(0 <= w <= 0.01 * 2 ** (i + 1) for i, w in enumerate(waits[3:]))  # jittered
    assert reddit.fail_next == [] and status.last_error is None
    await c.close()


async def test_a_discourse_storm_of_429s_then_500s_is_ridden_out_without_losing_a_post(forum, waits):
    c = forum_connector(forum)
    store = MemoryCursorStore()
    await store.set("discourse", "99")
    forum.fail_next = [(429, {"Retry-After": "3"})] * 3 + [(500, {}), (502, {}), (503, {})]
    got, status = await collect(c, store, lambda g: len(g) >= 6)
    assert sorted(got) == sorted(f"{p['topic_id']}/{p['post_number']}" for p in forum.posts)
    assert len(got) == len(set(got))
    assert waits[:3] == [3.0, 3.0, 3.0]  # each 429: its Retry-After
    assert len(waits) == 6 and all(0 <= w <= 0.01 * 2 ** (i + 1) for i, w in enumerate(waits[3:]))
    assert forum.fail_next == [] and parse_cursor(await store.get("discourse")) == 105 and status.last_error is None
    forum.posts.append(post(106, topic_id=60, raw="after the storm"))
    more, _ = await collect(c, store, lambda g: len(g) >= 1)
    assert more == ["60/1"]
    await c.close()

