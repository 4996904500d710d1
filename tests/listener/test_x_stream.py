"""Keyword listening on X: tweepy's AsyncStreamingClient against a local fake filtered stream
(NDJSON with keep-alives), with rule sync, reconnects, catch-up and the recent-search fallback."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from aiohttp.test_utils import TestServer

from listener.cursors import MemoryCursorStore
from listener.errors import AuthError, RateLimited, TransientError
from listener.registry import build_connectors
from listener.runner import run_connector
from listener.x.connector import XConnector
from listener.x.recheck import since_id
from listener.x.stream import XStreamConnector, rules_query
from service.settings import load_settings

from .fakes.x_api import CLOSE, DROP, NOT_ENROLLED, FakeX, tweet

RULES = ["acme outage", "@acme_help -is:retweet"]


@pytest.fixture
async def fake():
    x = FakeX()
    server = TestServer(x.app(), host="127.0.0.1")
    await server.start_server()
    x.base = str(server.make_url("")).rstrip("/")
    yield x
    await server.close()


def settings(fake, **extra):
    return load_settings(**{"x_api_base": fake.base, "x_bearer_token": "test", "x_user_id": "99",
                            "x_stream_rules": RULES, **extra})


def stream_connector(fake, **kw) -> XStreamConnector:
    kw = {"poll_seconds": 0.05, "idle_seconds": 0.1, "stall_seconds": 2.0, **kw}
    return XStreamConnector(settings(fake), **kw)


async def take(agen, n: int, timeout: float = 10.0) -> tuple[list, str | None]:
    """Pull batches until ``n`` mentions arrived; returns them and the last cursor."""
    got, cursor = [], None

    async def go():
        nonlocal cursor
        async for batch, cursor in agen:
            got.extend(batch)
            if len(got) >= n:
                return

    await asyncio.wait_for(go(), timeout)
    return got, cursor


async def test_our_own_replies_matching_a_rule_are_not_mentions(fake):
    c = stream_connector(fake)
    ours, theirs = tweet(1, "@jane the acme outage is over", author="99"), tweet(2, "acme outage again?")
    fake.push(ours)
    fake.push(theirs)
    got, cursor = await take(c.stream(None), 1)
    assert [m.external_id for m in got] == [theirs["id"]] and since_id(cursor) == theirs["id"]


async def test_rules_are_synced_leaving_other_tools_rules_alone(fake):
    fake.rules = [{"id": "1", "value": "old brand name", "tag": "socialcare"},
                  {"id": "2", "value": "from:competitor", "tag": "other-tool"},
                  {"id": "3", "value": "acme outage", "tag": "socialcare"}]
    active = await stream_connector(fake).sync_rules()
    assert sorted(r["value"] for r in fake.rules) == sorted(["from:competitor", *RULES])
    assert sorted(r["value"] for r in active) == sorted(r["value"] for r in fake.rules)
    assert [r["id"] for r in fake.rules if r["value"] == "acme outage"] == ["3"]  # kept, not re-created


async def test_stream_delivers_tweets_between_keep_alives_normalized_like_the_mentions_timeline(fake):
    c = stream_connector(fake)
    t1, t2 = tweet(1), tweet(2, reply_to=tweet(1)["id"])
    fake.push(t1)
    fake.push(t2)
    got, cursor = await take(c.stream(None), 2)
    assert [m.external_id for m in got] == [t1["id"], t2["id"]] and since_id(cursor) == t2["id"]
    assert got[1].in_reply_to == t1["id"] and got[1].conversation_id == t1["id"]
    assert got[0].url == f"https://x.com/user4945/status/{t1['id']}" and got[0].channel == "x:stream"
    (connect,) = [unquote(r) for r in fake.requests if r.startswith("/2/tweets/search/stream?")]
    assert "expansions=author_id,referenced_tweets.id" in connect and "user.fields=username,name" in connect
    fake.tweets = [t1]  # the same tweet, seen by the mentions connector: same identity
    (m,), _ = await XConnector(settings(fake)).poll_once(None)
    assert (m.platform, m.external_id, m.url, m.author_handle) == (got[0].platform, got[0].external_id, got[0].url,
                                                                   got[0].author_handle)
    assert set(fake.hosts) == {fake.base.split("//")[1]}  # the Host header followed the redirect
    await c.close()


async def test_a_malformed_line_is_skipped_and_the_stream_goes_on(fake):
    c = stream_connector(fake)
    fake.lines.put_nowait(b'{"data": {"id": "18500000')
    fake.push(tweet(5))
    got, _ = await take(c.stream(None), 1)
    assert [m.external_id for m in got] == [tweet(5)["id"]]
    await c.close()


@pytest.mark.parametrize("status,headers,expected", [
    (401, {}, AuthError),
    (429, {"x-rate-limit-reset": "1900000000"}, RateLimited),
    (503, {}, TransientError),
])
async def test_connect_errors_are_classified(fake, status, headers, expected):
    fake.stream_fail_next = [(status, headers, {"title": "error", "type": "about:blank", "status": status})]
    with pytest.raises(expected) as err:
        await take(stream_connector(fake).stream(None), 1)
    if status == 429:
        assert err.value.reset_at == 1900000000


async def test_a_stalled_stream_is_detected_and_reported_as_transient(fake):
    fake.keepalive_seconds = 5.0  # X promises a keep-alive every 20 s; this fake goes silent
    with pytest.raises(TransientError):
        await take(stream_connector(fake, stall_seconds=0.3).stream(None), 1)


async def test_drops_and_restarts_lose_nothing_and_repeat_nothing(fake):
    """Tweets posted while disconnected (dropped stream, killed process) are caught up by recent search."""
    all_tweets = [tweet(i) for i in range(1, 10)]
    store, published = MemoryCursorStore(), []

    async def publish(batch):
        published.extend(m.external_id for m in batch)

    def post(t, live: bool) -> None:
        fake.found.append(t)  # recent search indexes every matching tweet
        if live:
            fake.push(t)

    async def until(n):
        while len(published) < n:
            await asyncio.sleep(0.01)

    stop = asyncio.Event()
    run = asyncio.create_task(run_connector(stream_connector(fake), publish, store, stop, backoff_base=0.01))
    post(all_tweets[0], True)
    post(all_tweets[1], True)
    await asyncio.wait_for(until(2), 10)
    fake.lines.put_nowait(DROP)  # the connection is cut ...
    post(all_tweets[2], False)  # ... and this one is posted before the reconnect
    await asyncio.wait_for(until(3), 10)
    post(all_tweets[3], True)
    await asyncio.wait_for(until(4), 10)
    fake.lines.put_nowait(CLOSE)  # X closes the stream cleanly: reconnect as well
    await asyncio.wait_for(until(4), 10)
    run.cancel()  # kill the process mid-stream
    await asyncio.gather(run, return_exceptions=True)
    for t in all_tweets[4:7]:
        post(t, False)  # posted while the service is down
    while not fake.lines.empty():
        fake.lines.get_nowait()
    run = asyncio.create_task(run_connector(stream_connector(fake), publish, store, stop, backoff_base=0.01))
    await asyncio.wait_for(until(7), 10)
    for t in all_tweets[7:]:
        post(t, True)
    await asyncio.wait_for(until(9), 10)
    stop.set()
    await asyncio.wait_for(run, 10)
    assert published == [t["id"] for t in all_tweets]
    assert since_id(store.values["x-stream"]) == all_tweets[-1]["id"]
    assert fake.stream_connects >= 3


async def test_without_the_filtered_stream_on_the_tier_it_polls_recent_search(fake):
    fake.stream_fail_next = [(403, {}, NOT_ENROLLED)]
    fake.found = [tweet(1), tweet(2)]
    c = stream_connector(fake)
    agen = c.stream(None)
    got, cursor = await take(agen, 2)
    fake.found.append(tweet(3))
    more, cursor = await take(agen, 1)
    assert [m.external_id for m in got + more] == [tweet(i)["id"] for i in (1, 2, 3)] and since_id(cursor) == tweet(3)["id"]
    assert fake.stream_connects == 0 and c.streaming is False
    searches = [r for r in fake.requests if r.startswith("/2/tweets/search/recent")]
    assert parse_qs(urlsplit(searches[0]).query)["query"] == ["(acme outage) OR (@acme_help -is:retweet)"]
    check = await stream_connector(fake).check()
    assert check["ok"] and "recent search" in check["listens_to"]
    await agen.aclose()
    await c.close()


def test_registry_builds_the_stream_connector_only_with_rules_and_a_bearer_token(fake):
    names = [c.name for c in build_connectors(settings(fake))]
    assert names == ["x-stream", "x"]
    assert [c.name for c in build_connectors(settings(fake, x_stream_rules=[]))] == ["x"]
    user_only = load_settings(x_api_key="k", x_api_secret="s", x_access_token="t", x_access_secret="a",
                              x_stream_rules=RULES)
    assert [c.name for c in build_connectors(user_only)] == ["x"]
    assert rules_query(["a b"]) == "a b" and rules_query(["a", "b c"]) == "(a) OR (b c)"
