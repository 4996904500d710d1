"""A Reddit backlog (after an outage) or a subreddit busier than one listing (100 things) a pause:
the streams read on, listing by listing, while listings come back full, and where asyncpraw loses
its place (the thing it reads ``before`` is deleted, or no longer listed) the gap is read back, as
far as Reddit lists, and what could not be read is logged. Through the real asyncpraw client
against the local fake of Reddit."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from listener.reddit.connector import RedditConnector
from service.settings import load_settings

from .fakes.reddit import CLIENT_ID, CLIENT_SECRET, PASSWORD, FakeReddit, comment, served, submission


@pytest.fixture
async def reddit():
    fake = FakeReddit()
    fake.posts = [submission(1), submission(2)]
    async with served(fake):
        yield fake


def connector(fake, **kwargs) -> RedditConnector:
    settings = load_settings(reddit_client_id=CLIENT_ID, reddit_client_secret=CLIENT_SECRET,
                             reddit_username="acme_support", reddit_password=PASSWORD, reddit_subreddits=["acme"],
                             reddit_keywords=[], reddit_oauth_url=fake.base, reddit_url=fake.base)
    c = RedditConnector(settings, **{"search_seconds": 0.0, **kwargs})
    fake.clients.append(c)
    return c


def comments(fake, first: int, last: int) -> list[str]:
    link = fake.posts[0]["data"]["name"]
    fake.comments += [comment(n, link=link) for n in range(first, last + 1)]
    return [c["data"]["name"] for c in fake.comments[-(last - first + 1):]]


def name(thing: dict) -> str:
    return thing["data"]["name"]


class Reader:
    """The connector's stream, read in the background: every batch and cursor it yields."""

    def __init__(self, c: RedditConnector, cursor: str) -> None:
        self.ids: list[str] = []
        self.cursors: list[str | None] = []
        self.task = asyncio.create_task(self._read(c.stream(cursor)))

    async def _read(self, rounds) -> None:
        try:
            async for batch, cursor in rounds:
                self.ids += [m.external_id for m in batch]
                self.cursors.append(cursor)
        finally:
            await rounds.aclose()

    async def until(self, wanted: set[str], seconds: float = 10.0) -> None:
        async def seen() -> None:
            while not wanted <= set(self.ids):
                if self.task.done():
                    self.task.result()
                await asyncio.sleep(0.01)
        await asyncio.wait_for(seen(), seconds)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_a_backlog_is_caught_up_within_a_round_listing_by_listing(reddit):
    """350 comments since the cursor and 20 more before every listing's answer: each full listing
    is published and the stream reads on without the pause (an hour here), until one comes back
    short; then the round ends and the stream pauses."""
    cursor_comment = comments(reddit, 0, 0)[0]
    backlog = comments(reddit, 1, 350)
    reddit.busy = 20
    cursor = json.dumps({"t3": name(reddit.posts[-1]), "t1": cursor_comment})
    reader = Reader(connector(reddit, poll_seconds=3600.0), cursor)
    try:
        await reader.until(set(backlog))
        await asyncio.sleep(0.3)  # the round ends once a listing comes back short ...
        requests = len(reddit.requests)
        await asyncio.sleep(0.3)
        assert len(reddit.requests) == requests  # ... and the stream pauses: no request until poll_seconds
    finally:
        await reader.stop()
    listed = [name(c) for c in reddit.comments[1:]]
    read = [i for i in reader.ids if i.startswith("t1_")]
    assert read == listed  # every comment, in order, once (those arrived while catching up too)
    assert json.loads(reader.cursors[-1])["t1"] == listed[-1]
    assert len(reader.cursors) > 1  # published listing by listing, each with its cursor
    assert [json.loads(c)["t1"] for c in reader.cursors] == sorted(json.loads(c)["t1"] for c in reader.cursors)


async def test_reading_on_is_bounded_per_round(reddit):
    """A subreddit where every listing comes back full: at most ``catchup_listings`` listings a
    round, then the pause; each is published as it is read."""
    comments(reddit, 0, 0)
    reddit.busy = 150
    cursor = json.dumps({"t3": name(reddit.posts[-1]), "t1": name(reddit.comments[-1])})
    reader = Reader(connector(reddit, poll_seconds=3600.0, catchup_listings=3), cursor)
    try:
        await asyncio.wait_for(_count(reader, 3), 10)
        await asyncio.sleep(0.5)
        assert len(reader.cursors) == 3  # the fourth listing waits for poll_seconds
    finally:
        await reader.stop()
    assert len([i for i in reader.ids if i.startswith("t1_")]) == 300  # 100 a listing, in order
    assert len(set(reader.ids)) == len(reader.ids)


async def _count(reader: Reader, n: int) -> None:
    while len(reader.cursors) < n:
        await asyncio.sleep(0.01)


async def test_a_deleted_anchor_loses_nothing_the_gap_is_read_back(reddit, caplog):
    """The comment the cursor names is deleted (Reddit answers ``before`` it with an empty listing),
    and 250 came since: asyncpraw reads the newest page next; the 150 below it are read back with
    ``after``, and nothing is reported lost."""
    gone = comments(reddit, 0, 0)[0]
    reddit.comments.clear()  # deleted: no longer listed
    since = comments(reddit, 1, 250)
    cursor = json.dumps({"t3": name(reddit.posts[-1]), "t1": gone})
    reader = Reader(connector(reddit, poll_seconds=0.05), cursor)
    with caplog.at_level(logging.WARNING, logger="socialcare.listener.reddit"):
        try:
            await reader.until(set(since))
        finally:
            await reader.stop()
    assert [i for i in reader.ids if i.startswith("t1_")] == since
    assert any("after=" in r for r in reddit.requests if "/comments" in r)
    assert not [r for r in caplog.records if "lost the place" in r.getMessage()]


async def test_an_anchor_no_longer_listed_is_read_back_as_far_as_reddit_lists_and_the_gap_logged(reddit, caplog):
    """More came since the cursor than Reddit lists (150 here, ~1000 on Reddit): what is still
    listed is read, and the gap is logged, both ends named, rather than passed silently."""
    reddit.depth = 150
    anchor = comments(reddit, 0, 0)[0]
    since = comments(reddit, 1, 250)
    cursor = json.dumps({"t3": name(reddit.posts[-1]), "t1": anchor})
    c = connector(reddit, poll_seconds=0.05)
    c.listed = reddit.depth
    reader = Reader(c, cursor)
    with caplog.at_level(logging.WARNING, logger="socialcare.listener.reddit"):
        try:
            await reader.until(set(since[-150:]))
            started = time.monotonic()
            while not [r for r in caplog.records if "lost the place" in r.getMessage()]:
                assert time.monotonic() - started < 5
                await asyncio.sleep(0.01)
        finally:
            await reader.stop()
    assert [i for i in reader.ids if i.startswith("t1_")] == since[-150:]
    (warning,) = [r.getMessage() for r in caplog.records if "lost the place" in r.getMessage()]
    assert f"after {anchor}" in warning and f"read back to {since[-150]}" in warning
    assert "comments of r/acme" in warning
