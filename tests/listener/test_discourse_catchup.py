"""Discourse catch-up after a long outage: a backlog larger than a round's pages (``max_pages`` of 50)
is read on over the next rounds from where the paging stopped, none skipped, the cursor's ``after``
moving only once the pages reach it; against the local fake forum (3 posts a page, 2 pages a round)."""

from __future__ import annotations

import asyncio
import json

import pytest

from listener.cursors import MemoryCursorStore
from listener.discourse.connector import DiscourseConnector
from listener.errors import TransientError
from listener.runner import run_connector
from service.settings import load_settings

from .fakes import serve
from .fakes.discourse import API_KEY, FakeDiscourse, post


@pytest.fixture
async def forum():
    """Post 100 was read before the outage; 101 to 114 came while nothing listened."""
    fake = FakeDiscourse(posts=[post(100, topic_id=40, raw="read before the outage")]
                         + [post(101 + i, topic_id=41 + i, raw=f"post {i} needs help") for i in range(14)])
    server = await serve(fake)
    yield fake
    await server.close()


def connector(fake, made, **kwargs) -> DiscourseConnector:
    settings = load_settings(discourse_url=fake.base, discourse_api_key=API_KEY, discourse_api_username="acme_support")
    c = DiscourseConnector(settings, **{"max_pages": 2, "poll_seconds": 0.01, **kwargs})
    made.append(c)
    return c


def ids(mentions) -> list[int]:
    return [m.raw["id"] for m in mentions]


async def test_a_backlog_larger_than_a_rounds_pages_is_read_on_over_the_next_rounds(forum, made):
    c = connector(forum, made)
    first, cursor = await c.poll_once(json.dumps({"after": 100}))
    assert ids(first) == list(range(109, 115))  # the newest two pages
    saved = json.loads(cursor)
    assert saved["after"] == 100 and saved["catchup"] == {"before": 109, "newest": 114}  # 101-108 still to read
    forum.posts.append(post(115, topic_id=60, raw="a new post meanwhile"))
    before = len(forum.requests)
    second, cursor = await connector(forum, made).poll_once(cursor)  # a restart carries on where it stopped
    assert ids(second) == list(range(103, 109))
    assert forum.requests[before:] == ["/posts.json?before=109", "/posts.json?before=106"]
    third, cursor = await c.poll_once(cursor)
    saved = json.loads(cursor)
    assert ids(third) == [101, 102] and saved["after"] == 114 and "catchup" not in saved  # reached: caught up
    fourth, cursor = await c.poll_once(cursor)
    assert ids(fourth) == [115] and json.loads(cursor)["after"] == 115  # then from the top again
    got = ids(first + second + third + fourth)
    assert sorted(got) == list(range(101, 116)) and len(got) == len(set(got))  # each once, none skipped
    assert (await c.poll_once(cursor))[0] == []


async def test_a_failed_backlog_page_repeats_the_round_and_nonsense_in_the_cursor_is_ignored(forum, made):
    c = connector(forum, made)
    _, cursor = await c.poll_once(json.dumps({"after": 100}))
    forum.fail_on["/posts.json?before=106"] = [(502, {})]
    with pytest.raises(TransientError):
        await c.poll_once(cursor)  # the caller keeps its cursor: the round is repeated
    again, _ = await c.poll_once(cursor)
    assert ids(again) == list(range(103, 109))
    for gap in ({"before": 99, "newest": 114}, {"before": 109, "newest": 108}, {"before": "109", "newest": 114}, []):
        got, _ = await c.poll_once(json.dumps({"after": 100, "catchup": gap}))  # read from the top, as before
        assert ids(got) == list(range(109, 115))


async def test_the_runner_publishes_every_post_of_a_long_outage_once(forum, made, waits):
    store, published, stop = MemoryCursorStore(), [], asyncio.Event()
    await store.set("discourse", json.dumps({"after": 100}))
    forum.fail_on["/posts.json?before=106"] = [(502, {})]  # and a hiccup on the way

    async def publish(batch):
        published.extend(ids(batch))
        if len(published) >= 14:
            stop.set()

    status = await asyncio.wait_for(run_connector(connector(forum, made), publish, store, stop, backoff_base=0.01), 10)
    assert sorted(published) == list(range(101, 115)) and len(published) == 14
    assert json.loads(await store.get("discourse"))["after"] == 114 and status.last_error is None
