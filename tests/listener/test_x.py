"""The X connector, through the real tweepy client, against a local fake of the X API v2."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp.test_utils import TestServer

from listener.cursors import MemoryCursorStore
from listener.errors import AuthError, RateLimited, TransientError
from listener.protocol import Action
from listener.runner import run_connector
from listener.x.connector import XConnector, split_thread
from listener.x.recheck import since_id
from service.settings import load_settings

from .fakes.x_api import NOT_ENROLLED, STALL, FakeX, long_post, tweet


@pytest.fixture
async def fake():
    x = FakeX(tweets=[tweet(i) for i in range(5)])
    server = TestServer(x.app(), host="127.0.0.1")
    await server.start_server()
    x.base = str(server.make_url("")).rstrip("/")
    yield x
    await server.close()


def connector(fake, **extra) -> XConnector:
    settings = load_settings(x_api_base=fake.base, x_bearer_token="test", x_user_id="99", x_api_key="k",
                             x_api_secret="s", x_access_token="t", x_access_secret="a", **extra)
    return XConnector(settings)


async def test_mentions_follow_pagination_oldest_first_and_resume_from_since_id(fake):
    c = connector(fake)
    mentions, cursor = await c.poll_once(None)
    assert [m.external_id for m in mentions] == [t["id"] for t in fake.tweets]
    assert since_id(cursor) == fake.tweets[-1]["id"]
    assert mentions[0].author_handle == "user4945" and mentions[0].author_followers == 120
    assert mentions[0].url == f"https://x.com/user4945/status/{fake.tweets[0]['id']}"
    assert any("expansions=author_id%2Creferenced_tweets.id" in r for r in fake.requests)
    fake.tweets.append(tweet(9, reply_to=fake.tweets[0]["id"]))
    newer, cursor2 = await c.poll_once(cursor)
    assert [m.external_id for m in newer] == [fake.tweets[-1]["id"]]
    assert newer[0].in_reply_to == fake.tweets[0]["id"] and newer[0].conversation_id == fake.tweets[0]["id"]
    again, _ = await c.poll_once(cursor2)
    assert again == []


async def test_a_request_x_leaves_hanging_gives_up_and_the_next_round_goes_on(fake, monkeypatch):
    monkeypatch.setattr("listener.x.actions.TIMEOUT", (2.0, 0.5))  # tweepy sets none of its own
    c = connector(fake)
    fake.stall_next = 1
    started = time.monotonic()
    with pytest.raises(TransientError):
        await c.poll_once(None)
    assert time.monotonic() - started < STALL
    mentions, _ = await c.poll_once(None)
    assert len(mentions) == 5


async def test_a_response_with_only_default_fields_is_still_ingested(fake):
    fake.tweets = [{"id": "1850000000000000777", "text": "@acme_help bare tweet", "edit_history_tweet_ids": ["1"]}]
    (m,), _ = await connector(fake).poll_once(None)
    assert m.author_handle is None and m.text == "@acme_help bare tweet"
    assert m.url == "https://x.com/i/web/status/1850000000000000777"


async def test_a_long_post_arrives_whole_not_cut_at_280_characters(fake):
    whole = ("@acme_help " + "I have been a customer for years and never had a problem like this. " * 4
             + "This morning someone changed my password and my email from another country.")
    fake.tweets = [long_post(1, whole)]
    (m,), _ = await connector(fake).poll_once(None)
    assert len(whole) > 300 and m.text == whole
    assert any("note_tweet" in r for r in fake.requests)


async def test_text_arrives_as_written_not_as_x_escapes_it(fake):
    fake.tweets = [tweet(1, "@acme_help Q&amp;A said &lt;3 days &gt; a week, and my card ending &amp;amp; broke")]
    (m,), _ = await connector(fake).poll_once(None)
    assert m.text == "@acme_help Q&A said <3 days > a week, and my card ending &amp; broke"


async def test_errors_are_classified(fake):
    c = connector(fake)
    fake.fail_next = [(429, {"x-rate-limit-reset": "1900000000", "x-rate-limit-remaining": "0"})]
    with pytest.raises(RateLimited) as rl:
        await c.poll_once(None)
    assert rl.value.reset_at == 1900000000
    fake.fail_next = [(401, {})]
    with pytest.raises(AuthError):
        await c.poll_once(None)
    fake.fail_next = [(503, {})]
    with pytest.raises(TransientError):
        await c.poll_once(None)
    fake.malformed_next = 1
    with pytest.raises(TransientError):
        await c.poll_once(None)


async def test_the_runner_rides_out_500s_and_429s_and_loses_nothing(fake):
    c = connector(fake)
    c.poll_seconds = 0.05
    fake.fail_next = [(500, {}), (429, {"x-rate-limit-reset": str(int(time.time()))})]
    got, store, stop = [], MemoryCursorStore(), asyncio.Event()

    async def publish(batch):
        got.extend(m.external_id for m in batch)
        if len(got) >= 5:
            stop.set()

    started = time.monotonic()
    await asyncio.wait_for(run_connector(c, publish, store, stop, max_wait=1.5, backoff_base=0.01), 20)
    assert got == [t["id"] for t in fake.tweets]  # each once, in order
    assert since_id(store.values["x"]) == fake.tweets[-1]["id"]
    assert time.monotonic() - started >= 0.9  # it did wait for the 429's reset (plus slack), capped by max_wait


async def test_a_failing_publish_keeps_the_cursor_so_the_batch_comes_again(fake):
    c = connector(fake)
    c.poll_seconds = 0.01
    store, stop, calls, got = MemoryCursorStore(), asyncio.Event(), [], []

    async def publish(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            assert store.values.get("x") is None
            raise ConnectionError("bus down")
        got.extend(m.external_id for m in batch)
        stop.set()

    await asyncio.wait_for(run_connector(c, publish, store, stop, backoff_base=0.01), 10)
    assert got == [t["id"] for t in fake.tweets] and since_id(store.values["x"]) == fake.tweets[-1]["id"]


async def test_an_auth_error_stops_only_this_connector(fake):
    fake.fail_next = [(403, {})]
    status = await asyncio.wait_for(run_connector(connector(fake), lambda b: asyncio.sleep(0), MemoryCursorStore(),
                                                  asyncio.Event()), 10)
    assert status.state == "stopped" and status.stopped_by_error
    assert "refused" in status.last_error and "403" in status.last_error


async def test_a_refusal_says_why_in_x_own_words(fake):
    """An operator reads the reason on /connectors: "403 Forbidden" alone would send them to rotate keys."""
    fake.fail_next = [(403, {}, NOT_ENROLLED)]
    status = await asyncio.wait_for(run_connector(connector(fake), lambda b: asyncio.sleep(0), MemoryCursorStore(),
                                                  asyncio.Event()), 10)
    assert status.stopped_by_error and "must use keys and tokens from a Twitter developer App" in status.last_error
    fake.fail_next = [(401, {})]
    with pytest.raises(AuthError, match=r"credentials \(401\): Unauthorized"):
        await connector(fake).poll_once(None)


async def test_a_reply_to_a_deleted_tweet_fails_for_that_reason_not_the_credentials(fake):
    """X has no delete events outside its Enterprise compliance streams: until the next re-check
    (test_x_recheck) the reply is where a deleted mention shows, and its error must say so."""
    fake.gone.add(fake.tweets[1]["id"])
    result = await connector(fake).perform(Action(kind="public_reply", platform="x", text="Sorry about that!",
                                                  target_external_id=fake.tweets[1]["id"]))
    assert not result.ok and fake.posted == []
    assert "deleted or not visible" in result.error and "credentials" not in result.error


async def test_the_brand_account_own_tweets_are_not_mentions(fake):
    """Our reply naming the account comes back in its mentions; stored, it would be triaged and answered."""
    fake.tweets.append(tweet(7, text="@acme_help thanks, we are on it", author="99"))
    mentions, cursor = await connector(fake).poll_once(None)
    assert [m.external_id for m in mentions] == [t["id"] for t in fake.tweets[:-1]]
    assert since_id(cursor) == fake.tweets[-1]["id"]  # read past, never fetched again


async def test_restart_mid_stream_neither_loses_nor_repeats(fake):
    store = MemoryCursorStore()
    seen: list[str] = []
    first = connector(fake)
    mentions, cursor = await first.poll_once(await store.get("x"))
    seen += [m.external_id for m in mentions[:]]
    await store.set("x", cursor)  # published, then saved
    await first.close()
    fake.tweets += [tweet(20), tweet(21)]
    second = connector(fake)  # a new process
    more, cursor = await second.poll_once(await store.get("x"))
    seen += [m.external_id for m in more]
    assert seen == [t["id"] for t in fake.tweets]


async def test_replies_split_into_a_thread_dms_and_hiding(fake):
    c = connector(fake)
    long = "word " * 120
    result = await c.perform(Action(kind="public_reply", platform="x", target_external_id="1850000000000000001",
                                    text=long.strip()))
    assert result.ok and len(result.external_ids) == len(fake.posted) >= 3
    assert fake.posted[0]["reply"]["in_reply_to_tweet_id"] == "1850000000000000001"
    assert fake.posted[1]["reply"]["in_reply_to_tweet_id"] == result.external_ids[0]  # a thread
    assert all(len(p["text"]) <= 280 for p in fake.posted)
    dm = await c.perform(Action(kind="private_message", platform="x", recipient_id="2244994945", text="secure link"))
    assert dm.ok and fake.dms[0]["to"] == "2244994945" and fake.dms[0]["text"] == "secure link"
    hide = await c.perform(Action(kind="hide", platform="x", target_external_id="1850000000000000002"))
    assert hide.ok and fake.hidden == ["1850000000000000002"]


def test_split_thread_keeps_every_word_under_the_limit():
    text = " ".join(f"w{i}" for i in range(300))
    parts = split_thread(text)
    assert all(len(p) <= 280 for p in parts)
    assert " ".join(p.rsplit(" (", 1)[0] for p in parts) == text
    assert split_thread("short") == ["short"]
