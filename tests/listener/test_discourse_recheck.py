"""Discourse edits and deletions whose webhook never arrived: the connector re-reads the recent posts
it published (the ``/posts.json`` pages it reads anyway, and ``GET /posts/{id}.json`` for a post
missing from them) against the local fake forum, and the pipeline re-triages an edit, marks a
deletion deleted and shows a recovered post again."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from listener.cursors import MemoryCursorStore
from listener.discourse import connector as discourse_connector
from listener.discourse.connector import DiscourseConnector
from listener.discourse.recheck import PostWindow
from listener.recheck import digest
from listener.runner import run_connector
from service.settings import load_settings

from .fakes import serve
from .fakes.discourse import API_KEY, FakeDiscourse, post
from .ingest_path import Pipeline

CARD = "same here. My card is 4111 1111 1111 1111, can you check?"


@pytest.fixture
async def forum():
    """Two topics, three posts a page; 41/2 is our own reply."""
    fake = FakeDiscourse(posts=[
        post(100, topic_id=40, number=1, raw="The app logs me out every hour"),
        post(101, topic_id=40, number=2, reply_to=1, raw="same here", username="bob", user_id=18),
        post(102, topic_id=40, number=3, reply_to=2, raw="@bob try clearing the cache", username="carol", user_id=19),
        post(103, topic_id=41, number=1, raw="Refund for order 12345?"),
        post(104, topic_id=41, number=2, reply_to=1, raw="Sorry to hear that! Could you DM us?",
             username="acme_support", user_id=2),
        post(105, topic_id=41, number=3, reply_to=2, raw="sent you a message")])
    server = await serve(fake)
    yield fake
    await server.close()


def connector(fake, made, **kwargs) -> DiscourseConnector:
    settings = load_settings(discourse_url=fake.base, discourse_api_key=API_KEY, discourse_api_username="acme_support")
    c = DiscourseConnector(settings, **{"poll_seconds": 0.02, "recheck_seconds": 0.0, **kwargs})
    made.append(c)
    return c


def sent(fake, since: int) -> list[str]:
    return fake.requests[since:]


async def test_an_edit_made_while_the_webhook_was_down_is_caught_and_triaged_again(forum, made, db):
    c, pipeline = connector(forum, made), Pipeline(db)
    first, cursor = await c.poll_once("99")  # a cursor saved before the window: the bare post id
    assert len(await pipeline.run(first)) == 5  # our own reply is neither published nor triaged
    target = forum.edit(forum.find(40, 2), CARD, grace=True)
    assert target["version"] == 1  # within Discourse's grace period: only the words tell
    forum.edit(forum.find(41, 2), "Please DM us your order number")  # our own reply: not re-checked
    before = len(forum.requests)
    (edited,), cursor = await c.poll_once(cursor)
    assert (edited.external_id, edited.event, edited.text) == ("40/2", "upsert", CARD)
    assert edited.edited_at == datetime(2026, 11, 20, 9, tzinfo=UTC)  # the post's updated_at
    assert sent(forum, before) == ["/posts.json", "/posts.json?before=103"]  # the pages alone told
    (again,) = await pipeline.run([edited])
    rows = await pipeline.rows()
    assert ":edit:" in again.key and again.payload["mention_id"] == rows["40/2"].id  # a triage of its own
    assert rows["40/2"].text == CARD and len(rows) == 5
    assert (await c.poll_once(cursor))[0] == []  # read again, unchanged: nothing more


@pytest.mark.parametrize("staff", [False, True], ids=["404", "deleted_at"])
async def test_deletions_are_caught_and_a_recovered_post_comes_back(forum, made, db, staff):
    """A moderator's deletion takes the post off /posts.json: read alone it is a 404 (a non-staff
    API user) or carries ``deleted_at`` (staff). An author's stays listed, ``user_deleted``."""
    forum.staff = staff
    c, pipeline = connector(forum, made), Pipeline(db)
    first, cursor = await c.poll_once("99")
    await pipeline.run(first)
    forum.destroy(forum.find(40, 3))
    forum.destroy(forum.find(41, 3), by_author=True)
    before = len(forum.requests)
    gone, cursor = await c.poll_once(cursor)
    assert [(m.external_id, m.event) for m in gone] == [("40/3", "delete"), ("41/3", "delete")]
    assert sent(forum, before) == ["/posts.json", "/posts.json?before=103", "/posts/102.json"]
    assert await pipeline.run(gone) == []  # nothing to triage
    rows = await pipeline.rows()
    assert all(rows[k].deleted and rows[k].hidden for k in ("40/3", "41/3")) and not rows["40/2"].deleted
    before = len(forum.requests)
    assert (await c.poll_once(cursor))[0] == []  # still deleted: said once, and not asked again
    assert sent(forum, before) == ["/posts.json", "/posts.json?before=103"]
    forum.recover(forum.find(40, 3))
    forum.recover(forum.find(41, 3))
    back, cursor = await c.poll_once(cursor)
    assert [(m.external_id, m.event, m.text) for m in back] == [("40/3", "restore", "@bob try clearing the cache"),
                                                                ("41/3", "restore", "sent you a message")]
    await pipeline.run(back)
    rows = await pipeline.rows()
    assert not any(rows[k].deleted or rows[k].hidden for k in ("40/3", "41/3"))
    assert rows["41/3"].text == "sent you a message"
    assert (await c.poll_once(cursor))[0] == []


async def test_unchanged_posts_emit_nothing_and_the_pages_are_read_only_when_due(forum, made):
    c = connector(forum, made)
    _, cursor = await c.poll_once("99")
    forum.find(40, 1).update(updated_at="2026-11-20T09:30:00.000Z", version=2)  # a new stamp, the same words
    forum.find(40, 2)["hidden"] = True  # hidden by flags: off the pages, still there and unchanged
    before = len(forum.requests)
    for _ in range(3):
        mentions, cursor = await c.poll_once(cursor)
        assert mentions == []
    assert sent(forum, before) == ["/posts.json", "/posts.json?before=103", "/posts/101.json"] * 3
    calm = connector(forum, made, recheck_seconds=300.0)  # its window was read back just now
    before = len(forum.requests)
    assert (await calm.poll_once(cursor))[0] == []
    assert sent(forum, before) == ["/posts.json"]  # the poll's own page, nothing more
    forum.find(40, 2)["hidden"] = False
    quiet = FakeDiscourse(posts=forum.posts, page_size=50)  # Discourse's own page size: one page holds all
    server = await serve(quiet)
    try:
        c2 = connector(quiet, made)
        _, cursor = await c2.poll_once("99")
        before = len(quiet.requests)
        assert (await c2.poll_once(cursor))[0] == []
        assert sent(quiet, before) == ["/posts.json"]  # a quiet forum: the re-check costs no request at all
    finally:
        await server.close()


async def test_posts_beyond_the_page_budget_wait_for_a_round_that_reaches_them(forum, made):
    """With one page a round (posts 105 to 103), post 100 is neither compared nor read alone."""
    now = int(time.time())
    window = {"40/1": (100, "Cannot log in since update\n\nThe app logs me out every hour"),
              "41/1": (103, "Cannot log in since update\n\nRefund for order 12345?")}
    cursor = json.dumps({"after": 105, "recheck": {
        "at": 0, "ids": [[k, now, digest(text)] for k, (_, text) in window.items()],
        "post_ids": {k: pid for k, (pid, _) in window.items()}}})
    forum.edit(forum.find(40, 1), "fixed, thanks")
    forum.edit(forum.find(41, 1), "Refund for order 12345? My card is 4111 1111 1111 1111")
    before = len(forum.requests)
    (edited,), cursor = await connector(forum, made, max_pages=1, recheck_pages=0).poll_once(cursor)
    assert edited.external_id == "41/1" and sent(forum, before) == ["/posts.json"]
    (edited,), _ = await connector(forum, made, max_pages=1, recheck_pages=1).poll_once(cursor)
    assert edited.external_id == "40/1" and edited.text.endswith("fixed, thanks")


async def test_the_window_is_bounded_and_kept_across_a_restart(forum, made):
    store, published, stop = MemoryCursorStore(), [], asyncio.Event()
    await store.set("discourse", "99")

    async def publish(batch):
        published.extend((m.external_id, m.event) for m in batch)

    async def until(n):
        while len(published) < n:
            await asyncio.sleep(0.01)

    run = asyncio.create_task(run_connector(connector(forum, made, recheck_size=4), publish, store, stop,
                                            backoff_base=0.01))
    await asyncio.wait_for(until(5), 10)
    await asyncio.sleep(0.1)  # rounds that read the window back and find nothing
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    saved = json.loads(await store.get("discourse"))
    assert saved["after"] == 105 and len(published) == 5
    assert [entry[0] for entry in saved["recheck"]["ids"]] == ["40/2", "40/3", "41/1", "41/3"]  # the 4 newest
    assert saved["recheck"]["post_ids"] == {"40/2": 101, "40/3": 102, "41/1": 103, "41/3": 105}
    forum.edit(forum.find(41, 1), "Refund for order 12345? My card is 4111 1111 1111 1111")  # while down
    forum.destroy(forum.find(40, 3), by_author=True)
    forum.edit(forum.find(40, 1), "edited too, but out of the window")
    run = asyncio.create_task(run_connector(connector(forum, made, recheck_size=4), publish, store, stop,
                                            backoff_base=0.01))
    await asyncio.wait_for(until(7), 10)
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(run, 10)
    assert sorted(published[5:]) == [("40/3", "delete"), ("41/1", "upsert")] and len(published) == 7


async def test_posts_first_seen_longer_ago_than_the_window_are_dropped_unread(forum, made):
    now = int(time.time())
    cursor = json.dumps({"after": 105, "recheck": {"at": 0, "post_ids": {"40/1": 100, "41/3": 105}, "ids": [
        ["40/1", now - 25 * 3600, "0000000000000000"],  # a day and an hour ago, and changed since
        ["41/3", now - 3600, digest("sent you a message")]]}})
    mentions, cursor = await connector(forum, made, recheck_hours=24.0).poll_once(cursor)
    assert mentions == [] and json.loads(cursor)["recheck"]["post_ids"] == {"41/3": 105}


@pytest.mark.parametrize("where", ["page", "lookup"])
async def test_a_429_on_the_recheck_holds_no_new_post_back_and_the_recheck_waits_for_retry_after(
        forum, made, waits, monkeypatch, where):
    """A 429 on a page read for the re-check alone (below the poll's own, posts 106 to 104) or on a
    post read alone: the round's new post is published and the cursor moves on, the window is left
    unchecked, and no round re-checks before ``Retry-After`` has passed; then one does."""
    c = connector(forum, made)
    _, cursor = await c.poll_once("99")
    checked = json.loads(cursor)["recheck"]["at"]
    forum.destroy(forum.find(40, 3))  # off the pages: read alone, GET /posts/102.json
    forum.edit(forum.find(40, 2), "fixed after the update")  # post 101: on the page below, re-check's alone
    forum.posts.append(post(106, topic_id=42, raw="a new post in the same round"))
    forum.fail_on["/posts.json?before=104" if where == "page" else "GET /posts/{id}.json"] = [
        (429, {"Retry-After": "30"})]
    store, stop, got = MemoryCursorStore(), asyncio.Event(), []
    await store.set("discourse", cursor)

    async def publish(batch):
        got.append([(m.external_id, m.event) for m in batch])
        stop.set()

    status = await asyncio.wait_for(run_connector(c, publish, store, stop), 30)
    assert got == [[("42/1", "upsert")]] and waits == [] and status.last_error is None  # the runner never waited
    assert not any(forum.fail_on.values())
    saved = json.loads(await store.get("discourse"))
    assert saved["after"] == 106 and saved["recheck"]["post_ids"]["42/1"] == 106  # the new post joins the window
    assert saved["recheck"]["at"] == checked and saved["recheck"]["wait"] >= time.time() + 29  # not marked checked
    before = len(forum.requests)
    mentions, cursor = await c.poll_once(await store.get("discourse"))
    assert mentions == [] and sent(forum, before) == ["/posts.json"]  # before Retry-After: no re-check
    later = SimpleNamespace(time=lambda: time.time() + 31, monotonic=time.monotonic)  # Retry-After has passed
    monkeypatch.setattr(discourse_connector, "time", later)
    mentions, cursor = await c.poll_once(cursor)
    assert sorted((m.external_id, m.event) for m in mentions) == [("40/2", "upsert"), ("40/3", "delete")]
    assert "wait" not in json.loads(cursor)["recheck"]


@pytest.mark.parametrize("trouble", ["timeout", 502])
async def test_a_lookup_that_times_out_or_fails_with_a_5xx_ends_the_lookups_of_the_round(forum, made,
                                                                                       trouble, caplog):
    """Two posts off the pages (102 deleted, 101 hidden), read alone newest first: after the first
    times out (or answers 502) the other is not asked that round; the round's new post comes back."""
    c = connector(forum, made, timeout=0.3)
    _, cursor = await c.poll_once("99")
    forum.destroy(forum.find(40, 3))
    forum.find(40, 2)["hidden"] = True
    forum.posts.append(post(106, topic_id=42, raw="a new post in the same round"))
    if trouble == "timeout":
        forum.slow_on["/posts/102.json"] = [1.0]
    else:
        forum.fail_on["/posts/102.json"] = [(trouble, {})]
    before = len(forum.requests)
    mentions, cursor = await c.poll_once(cursor)
    assert [(m.external_id, m.event) for m in mentions] == [("42/1", "upsert")]
    assert sent(forum, before) == ["/posts.json", "/posts.json?before=104", "/posts/102.json"]  # not 101
    assert json.loads(cursor)["after"] == 106
    assert any("post 102 unknown this round" in r.getMessage() and "no more posts read alone" in r.getMessage()
               for r in caplog.records)
    before = len(forum.requests)
    (gone,), cursor = await c.poll_once(cursor)  # the next round reads both
    assert (gone.external_id, gone.event) == ("40/3", "delete")
    assert sent(forum, before)[-2:] == ["/posts/102.json", "/posts/101.json"]


async def test_a_post_whose_lookup_fails_holds_no_new_post_back_and_is_read_again_later(forum, made, waits,
                                                                                       caplog):
    """One post read alone whose answer is an error (500, 400, a body cut off) is unknown for that
    round: left as it was, read again next round; the round's new posts and edits come through."""
    c = connector(forum, made)
    _, cursor = await c.poll_once("99")
    forum.destroy(forum.find(40, 3))  # off the pages: read alone, GET /posts/102.json
    forum.fail_on["GET /posts/{id}.json"] = [(500, {}), (400, {}), (200, {}, '{"post": {"id": 10')]
    forum.edit(forum.find(40, 2), "fixed after the update")  # on the pages
    forum.posts.append(post(106, topic_id=42, raw="a new post in the same round"))
    store, stop, got = MemoryCursorStore(), asyncio.Event(), []
    await store.set("discourse", cursor)

    async def publish(batch):
        got.append(sorted((m.external_id, m.event) for m in batch))
        if len(got) == 2:
            stop.set()

    status = await asyncio.wait_for(run_connector(c, publish, store, stop), 30)
    assert got == [[("40/2", "upsert"), ("42/1", "upsert")],  # in the round whose lookup failed
                   [("40/3", "delete")]]  # three rounds later, when the lookup answered
    assert not forum.fail_on["GET /posts/{id}.json"] and forum.requests.count("/posts/102.json") == 4
    assert waits == [] and not status.stopped_by_error and status.last_error is None
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("socialcare.listener")]
    assert sum("post 102 unknown this round" in line for line in logged) == 3
    assert not any("error_type" in line or "{" in line for line in logged)  # the status, never a body


async def test_a_page_read_for_the_recheck_alone_never_loses_a_new_post(forum, made, waits):
    """Below the poll's own page (posts 106 to 104), a failing page ends this round's re-check there
    (a 429 there: the test above)."""
    c = connector(forum, made)
    _, cursor = await c.poll_once("99")
    forum.edit(forum.find(40, 2), "fixed after the update")  # post 101: on the page below, re-check's alone
    forum.posts.append(post(106, topic_id=42, raw="a new post in the same round"))
    forum.fail_on["/posts.json?before=104"] = [(500, {})]
    store, stop, got = MemoryCursorStore(), asyncio.Event(), []
    await store.set("discourse", cursor)

    async def publish(batch):
        got.extend((m.external_id, m.event) for m in batch)
        if len(got) == 2:
            stop.set()

    await asyncio.wait_for(run_connector(c, publish, store, stop), 30)
    assert sorted(got) == [("40/2", "upsert"), ("42/1", "upsert")] and not forum.fail_on["/posts.json?before=104"]
    assert waits == [] and got[0] == ("42/1", "upsert")  # the new post first, the edit a round later
    assert json.loads(await store.get("discourse"))["after"] == 106


def test_posts_first_seen_in_the_same_second_are_trimmed_and_saved_by_post_id():
    """Keys are ``topic/number``: as text "10/1" (post 100) would pass for newer than "9/5" (post 200)."""
    window = PostWindow({"10/1": (5, "aa"), "9/5": (5, "bb"), "9/6": (4, "cc")},
                        post_ids={"10/1": 100, "9/5": 200, "9/6": 300})
    assert [entry[0] for entry in window.dump()["ids"]] == ["10/1", "9/5", "9/6"]  # the forum's order
    window.trim(5, 24, 2)
    assert window.seen == {"10/1": (5, "aa"), "9/5": (5, "bb")}  # first seen later beats a higher id
    window.trim(5, 24, 1)
    assert window.seen == {"9/5": (5, "bb")} and window.post_ids == {"9/5": 200}


def test_a_cursor_without_a_window_or_with_a_broken_one_starts_an_empty_one():
    for cursor in (None, "", "107", "not json", '{"after": 107}', '{"recheck": "x"}',
                   '{"recheck": {"ids": [["40/1", 5, "ff"]]}}',  # no post id: it could not be read back
                   '{"recheck": {"ids": [["40/1", 5, "ff"]], "post_ids": {"40/1": "100"}}}'):
        assert PostWindow.from_cursor(cursor).seen == {}, cursor
    window = PostWindow.from_cursor('{"recheck": {"at": 9, "ids": [["40/1", 5, "ff"]], "post_ids": {"40/1": 100}}}')
    assert (window.seen, window.post_ids, window.checked_at) == ({"40/1": (5, "ff")}, {"40/1": 100}, 9.0)
