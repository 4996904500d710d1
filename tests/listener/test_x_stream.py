"""Keyword listening on X: tweepy's AsyncStreamingClient against a local fake filtered stream
(NDJSON with keep-alives), with rule sync, reconnects, catch-up and the recent-search fallback."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from aiohttp.test_utils import TestServer

from listener.cursors import MemoryCursorStore
from listener.errors import AuthError, RateLimited, TransientError
from listener.registry import build_connectors
from listener.runner import run_connector
from listener.x.connector import XConnector
from listener.x.recheck import since_id
from listener.x.stream import XStreamConnector
from listener.x.stream_catchup import rules_query
from service.settings import load_settings

from .fakes.x_api import CLOSE, DROP, NOT_ENROLLED, FakeX, posted_ms, tweet

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


def gaps(cursor: str | None) -> list[list[str]]:
    """The tweets a cursor says are still owed: its ``[since_id, until_id]`` pairs."""
    data = json.loads(cursor) if cursor and not cursor.isdigit() else {}
    return data.get("gaps", [])


def searched_since(fake) -> list[str | None]:
    """The ``since_id`` of every recent search so far."""
    return [(parse_qs(urlsplit(r).query).get("since_id") or [None])[0] for r in fake.requests
            if r.startswith("/2/tweets/search/recent")]


async def run_until(fake, c, store, published, n, publish=None, timeout: float = 10.0):
    """Run ``c`` under the runner until ``n`` tweet ids were published; stops it and returns its status."""
    stop = asyncio.Event()

    async def keep(batch):
        published.extend(m.external_id for m in batch)

    run = asyncio.create_task(run_connector(c, publish or keep, store, stop, backoff_base=0.01))
    try:
        async def until():
            while len(published) < n:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(until(), timeout)
    finally:
        stop.set()
        status = await asyncio.wait_for(run, 10)
        await c.close()
    return status


async def test_a_batch_whose_publishing_failed_comes_again_and_is_not_skipped(fake):
    """The runner saves the cursor only after publishing, and after a failure (the bus down a moment)
    streams again from the cursor it had: the batch comes out again (ingest skips a duplicate), never
    skipped as "already yielded" - a catch-up batch, found again by the catch-up, as a live one,
    which recent search may not have indexed yet, even when that catch-up fails first."""
    last, missed, live = tweet(1, "acme outage"), tweet(2, "acme outage: charged twice"), tweet(3, "acme outage still")
    fake.found = [last, missed]
    store, published, attempts = MemoryCursorStore(), [], []
    store.values["x-stream"] = last["id"]

    async def publish(batch):
        attempts.append([m.external_id for m in batch])
        if len(attempts) == 3:  # the live batch fails, and then the catch-up's search too (X answers 503)
            fake.fail_next = [(503, {})]
        if len(attempts) in (1, 3):
            raise ConnectionError("Redis: connection refused")
        published.extend(m.external_id for m in batch)
        if len(published) == 1:
            fake.push(live)  # on the stream only: not in recent search yet

    status = await run_until(fake, stream_connector(fake), store, published, 2, publish)
    assert attempts == [[missed["id"]], [missed["id"]], [live["id"]], [live["id"]]]
    assert published == [missed["id"], live["id"]] and since_id(store.values["x-stream"]) == live["id"]
    assert status.mentions_seen == 2 and fake.stream_connects == 2


@pytest.mark.parametrize("tier", ["filtered stream", "polling"])
async def test_after_more_than_7_days_the_catch_up_starts_where_recent_search_reaches(fake, tier, caplog):
    """X refuses a ``since_id`` posted more than 7 days ago (HTTP 400): the cursor's, older, is moved
    to the oldest one recent search takes, with a warning of what could not be caught up; the catch-up
    goes on and the stream opens (or the polls go on) instead of retrying that 400 for ever."""
    if tier == "polling":
        fake.stream_fail_next = [(403, {}, NOT_ENROLLED)]
    eight_days_ago = time.time() - 8 * 86400
    last = tweet(1, "acme outage", at=eight_days_ago)  # the last mention caught, before the service went down
    beyond = tweet(2, "acme outage", at=eight_days_ago + 3600)  # out of recent search's reach now
    recent = tweet(3, "acme outage again", at=time.time() - 2 * 86400)
    live = tweet(4, "acme outage, still?")
    fake.found = [last, beyond, recent]
    store, published = MemoryCursorStore(), []
    store.values["x-stream"] = last["id"]
    if tier == "polling":
        fake.found.append(live)  # found by the next poll
    else:
        fake.push(live)  # on the stream, once it is opened
    with caplog.at_level(logging.WARNING, logger="socialcare.listener.x"):
        status = await run_until(fake, stream_connector(fake), store, published, 2)
    assert published == [recent["id"], live["id"]]
    assert status.last_error is None and status.state == "stopped" and not status.stopped_by_error
    assert last["id"] not in searched_since(fake)  # never sent, so never refused
    assert (fake.stream_connects >= 1) == (tier == "filtered stream")
    (warning,) = [r.getMessage() for r in caplog.records if "7 days" in r.getMessage()]
    assert "could not be caught up" in warning


async def test_a_since_id_x_finds_too_old_by_its_own_clock_is_moved_to_the_edge_it_names(fake, caplog):
    """X's clock ahead of ours: a ``since_id`` still inside 7 days here is refused there (HTTP 400,
    ``'since_id' must be a tweet id created after ...``); the search is asked again from the edge
    X's answer names, so the round goes on."""
    fake.clock_ahead = 600.0
    last = tweet(1, at=time.time() - 7 * 86400 + 300)  # 5 minutes inside the 7 days here, 5 outside at X
    recent = tweet(2, at=time.time() - 60)
    fake.found = [last, recent]
    c = stream_connector(fake)
    with caplog.at_level(logging.WARNING, logger="socialcare.listener.x"):
        mentions, cursor = await c.poll_once(last["id"])
    assert [m.external_id for m in mentions] == [recent["id"]] and since_id(cursor) == recent["id"]
    first, again = searched_since(fake)
    assert first == last["id"] and posted_ms(again) > (time.time() + 600 - 7 * 86400) * 1000
    assert any("could not be caught up" in r.getMessage() for r in caplog.records)
    await c.close()


async def test_what_a_gap_still_owes_is_fetched_from_no_further_back_than_7_days(fake, caplog):
    """A gap kept in the cursor since an outage longer than 7 days: one wholly older is dropped,
    one straddling the edge is fetched from the edge on, each with a warning; the rest is caught up."""
    now = time.time()
    old_gap = [tweet(1, at=now - 10 * 86400)["id"], tweet(2, at=now - 9 * 86400)["id"]]
    beyond, inside = tweet(3, at=now - 8 * 86400), tweet(4, at=now - 3 * 86400)
    straddling = [tweet(5, at=now - 8.5 * 86400)["id"], tweet(6, at=now - 2 * 86400)["id"]]
    newest = tweet(7, at=now - 5 * 3600)
    fake.found = [beyond, inside, newest]
    cursor = json.dumps({"since_id": newest["id"], "gaps": [old_gap, straddling]})
    c = stream_connector(fake)
    with caplog.at_level(logging.WARNING, logger="socialcare.listener.x"):
        dropped, cursor = await c.poll_once(cursor)
        caught, cursor = await c.poll_once(cursor)
    assert dropped == [] and [m.external_id for m in caught] == [inside["id"]] and gaps(cursor) == []
    assert since_id(cursor) == newest["id"] and not [s for s in searched_since(fake) if s in (old_gap[0], straddling[0])]
    assert len([r for r in caplog.records if "could not be caught up" in r.getMessage()]) == 2
    await c.close()


async def test_a_quiet_cursor_moves_on_so_it_never_falls_out_of_recent_searchs_reach(fake):
    """Days without a mention: a round that covered them moves the ``since_id`` on to an hour ago,
    so 7 quiet days stop nothing (and warn of nothing)."""
    c = stream_connector(fake)
    _, cursor = await c.poll_once(tweet(1, at=time.time() - 2 * 86400)["id"])
    assert abs(posted_ms(since_id(cursor)) - (time.time() - 3600) * 1000) < 60_000
    await c.close()


async def test_a_catch_up_longer_than_a_rounds_pages_keeps_the_rest_owed_in_the_cursor(fake):
    """Recent search pages newest first: a round that stops (``max_pages``) before reaching the
    cursor leaves a gap, kept in the cursor, and the next rounds (after a restart too) fill it from
    where the last stopped; the cursor's ``since_id`` is the newest tweet's all the while."""
    fake.page_size = 2
    last, backlog = tweet(1), [tweet(i) for i in range(2, 13)]
    fake.found = [last, *backlog]
    c = stream_connector(fake, max_pages=2)
    first, cursor = await c.poll_once(last["id"])  # the 4 newest, then the gap's 4 newest
    assert [m.external_id for m in first] == [t["id"] for t in backlog[3:]]
    assert since_id(cursor) == backlog[-1]["id"] and gaps(cursor) == [[last["id"], backlog[3]["id"]]]
    await c.close()
    c = stream_connector(fake, max_pages=2)  # restarted
    rest, cursor = await c.poll_once(cursor)
    assert [m.external_id for m in rest] == [t["id"] for t in backlog[:3]]
    assert since_id(cursor) == backlog[-1]["id"] and gaps(cursor) == []
    await c.close()


@pytest.mark.parametrize("tier", ["filtered stream", "polling"])
async def test_a_long_outage_is_caught_up_to_the_last_tweet_before_the_stream_opens(fake, tier):
    """More tweets were posted while down than a round's pages hold: none is skipped, none repeats,
    and the stream opens once the catch-up reached the cursor."""
    if tier == "polling":
        fake.stream_fail_next = [(403, {}, NOT_ENROLLED)]
    fake.page_size = 2
    last, backlog, live = tweet(1), [tweet(i) for i in range(2, 15)], tweet(20)
    fake.found = [last, *backlog]
    store, published = MemoryCursorStore(), []
    store.values["x-stream"] = last["id"]
    fake.push(live)
    fake.found.append(live)
    await run_until(fake, stream_connector(fake, max_pages=2), store, published, len(backlog) + 1)
    assert sorted(published, key=int) == [t["id"] for t in [*backlog, live]] and len(set(published)) == len(published)
    # streaming, what may be posted between the catch-up (which found the live tweet too) and the
    # stream's connecting stays owed until searched; polling owes nothing
    owed_from = [live["id"]] if tier == "filtered stream" else []
    assert since_id(store.values["x-stream"]) == live["id"]
    assert [since for since, _ in gaps(store.values["x-stream"])] == owed_from


async def wait_for(condition, timeout: float = 10.0) -> None:
    async def poll():
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def test_a_tweet_posted_between_the_catch_up_and_the_streams_connecting_is_fetched_while_streaming(fake):
    """The stream delivers only what is posted once it is connected: a tweet posted after the
    catch-up's search and before then is owed in the cursor from the stream's opening (a restart
    would catch it up) and searched for while the stream runs; a search refused meanwhile (429)
    leaves the stream up and the tweet owed, asked again later. Nothing repeats."""
    last, caught, between, live = tweet(1), tweet(2), tweet(3), tweet(4)
    fake.found = [last, caught]
    store, published = MemoryCursorStore(), []
    store.values["x-stream"] = last["id"]
    stop = asyncio.Event()

    async def keep(batch):
        published.extend(m.external_id for m in batch)

    c = stream_connector(fake, bridge_seconds=0.2, poll_seconds=0.2)
    run = asyncio.create_task(run_connector(c, keep, store, stop, backoff_base=0.01))
    try:
        await wait_for(lambda: fake.stream_connects >= 1)
        fake.found.append(between)  # posted meanwhile: search indexes it, the stream never sends it
        fake.fail_next = [(429, {"x-rate-limit-reset": str(int(time.time()))})]  # the first fill is refused
        fake.push(live)
        fake.found.append(live)
        await wait_for(lambda: published == [caught["id"], live["id"]])
        assert gaps(store.values["x-stream"]) == [[caught["id"], live["id"]]]  # owed: a restart would fetch it
        await wait_for(lambda: len(published) == 3)
        await asyncio.sleep(0.5)  # later fills find nothing new
    finally:
        stop.set()
        await asyncio.wait_for(run, 10)
        await c.close()
    assert published == [caught["id"], live["id"], between["id"]]
    assert fake.stream_connects == 1  # the refused search never tore the stream down
    searches = [r for r in fake.requests if r.startswith("/2/tweets/search/recent")]
    assert sum(f"until_id={live['id']}" in r for r in searches) == 2  # refused once, asked again
    assert since_id(store.values["x-stream"]) == live["id"] and gaps(store.values["x-stream"]) == []
