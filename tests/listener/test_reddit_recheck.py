"""Reddit edits and removals after first sight: the connector re-reads the recent posts it published
(``/api/info``, through the real asyncpraw client against the local fake Reddit) and the pipeline
re-triages an edit, marks a deletion or removal deleted, and shows a removed post a moderator
approved again, one already removed when first listed included (then stored as new)."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from listener.cursors import MemoryCursorStore
from listener.errors import RateLimited
from listener.recheck import Window, digest
from listener.reddit.connector import RedditConnector
from listener.runner import run_connector
from service.settings import load_settings

from .fakes import serve
from .fakes.reddit import (
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    FakeReddit,
    approve,
    comment,
    delete,
    edit,
    rate_limited,
    remove,
    submission,
)
from .ingest_path import Pipeline

EDITED_AT = 1795690000.0


@pytest.fixture
async def reddit():
    fake = FakeReddit(posts=[submission(1), submission(2, sub="acmehelp")])
    fake.comments = [comment(1, link=fake.posts[0]["data"]["name"]), comment(2, link=fake.posts[1]["data"]["name"],
                                                                             sub="acmehelp")]
    fake.hits = [submission(50, sub="gadgets", title="Is the acme app down for anyone?")]
    server = await serve(fake)
    yield fake
    await server.close()


def connector(fake, made, **kwargs) -> RedditConnector:
    settings = load_settings(
        reddit_client_id=CLIENT_ID, reddit_client_secret=CLIENT_SECRET, reddit_username="acme_support",
        reddit_password=PASSWORD, reddit_subreddits=["acme", "acmehelp"], reddit_keywords=["acme app"],
        reddit_oauth_url=fake.base, reddit_url=fake.base)
    c = RedditConnector(settings, **{"poll_seconds": 0.02, "search_seconds": 0.0, "recheck_seconds": 0.0, **kwargs})
    made.append(c)
    return c


def info_ids(fake) -> list[list[str]]:
    """The ids of each ``/api/info`` request so far, one list per request."""
    return [parse_qs(urlsplit(r).query)["id"][0].split(",") for r in fake.requests if r.startswith("/api/info")]


async def test_an_edit_after_first_sight_is_triaged_again_through_ingest(reddit, made, db):
    c, pipeline = connector(reddit, made), Pipeline(db)
    first, cursor = await c.poll_once(None)
    assert len(await pipeline.run(first)) == 5  # two posts, two comments, one keyword hit: all triaged
    target = reddit.comments[0]
    edit(target, "same for me. My card is 4111 1111 1111 1111, can you check?", at=EDITED_AT)
    (edited,), cursor = await c.poll_once(cursor)
    assert edited.external_id == target["data"]["name"] and edited.event == "upsert"
    assert edited.edited_at.timestamp() == EDITED_AT and "4111" in edited.text
    (again,) = await pipeline.run([edited])
    rows = await pipeline.rows()
    assert len(rows) == 5 and again.payload["mention_id"] == rows[edited.external_id].id
    assert ":edit:" in again.key  # a triage message of its own, not the first one's duplicate
    assert "4111" in rows[edited.external_id].text and rows[edited.external_id].edited_at.timestamp() == EDITED_AT
    assert (await c.poll_once(cursor))[0] == []  # read again, unchanged: nothing more


async def test_an_edit_reddit_did_not_stamp_is_still_seen(reddit, made, db):
    """Reddit leaves ``edited`` false for an edit in the first minutes: the text tells."""
    c, pipeline = connector(reddit, made), Pipeline(db)
    first, cursor = await c.poll_once(None)
    await pipeline.run(first)
    edit(reddit.posts[0], "never mind, fixed after the update", at=False)
    (edited,), _ = await c.poll_once(cursor)
    assert edited.text == "Acme app problem 1\n\nnever mind, fixed after the update" and edited.edited_at is not None
    assert len(await pipeline.run([edited])) == 1
    assert (await pipeline.rows())[edited.external_id].text.endswith("fixed after the update")


async def test_a_deletion_and_moderator_removals_mark_the_mentions_deleted(reddit, made, db):
    c, pipeline = connector(reddit, made), Pipeline(db)
    first, cursor = await c.poll_once(None)
    await pipeline.run(first)
    deleted = delete(reddit.comments[0])  # by its author
    in_our_sub = remove(reddit.posts[1])  # we moderate r/acmehelp: the text stays, "removed" says it
    elsewhere = remove(reddit.hits[0])  # r/gadgets is not ours: "[removed]", the author still named
    removed_comment = remove(reddit.comments[1])
    assert reddit.view(in_our_sub)["data"]["selftext"] == "It keeps crashing"
    assert reddit.view(elsewhere)["data"]["selftext"] == "[removed]"
    assert reddit.view(elsewhere)["data"]["author"] == "jane_doe"
    gone, cursor = await c.poll_once(cursor)
    names = [t["data"]["name"] for t in (deleted, in_our_sub, elsewhere, removed_comment)]
    assert sorted(m.external_id for m in gone) == sorted(names) and {m.event for m in gone} == {"delete"}
    assert await pipeline.run(gone) == []  # nothing to triage
    rows = await pipeline.rows()
    assert all(rows[n].deleted and rows[n].hidden for n in names)
    assert not rows[reddit.posts[0]["data"]["name"]].deleted
    before = len(info_ids(reddit))
    assert (await c.poll_once(cursor))[0] == []
    (asked,) = info_ids(reddit)[before:]  # the deleted one is not asked again; the removed ones are
    assert sorted(asked) == sorted([reddit.posts[0]["data"]["name"], *names[1:]])


async def test_a_post_our_own_moderation_held_is_left_to_the_moderation_queue(reddit, made, db):
    """Our hold removes the post on Reddit until a moderator approves it: not a deletion. An edit
    while it is held is still an edit, and the author deleting it still deletes it."""
    c, pipeline = connector(reddit, made), Pipeline(db)
    first, cursor = await c.poll_once(None)
    await pipeline.run(first)
    held = remove(reddit.posts[0], by="Acme_Support")
    assert reddit.view(held)["data"]["removed"] is True
    assert (await c.poll_once(cursor))[0] == []
    edit(held, "here is my order number 12345", at=EDITED_AT)
    (edited,), cursor = await c.poll_once(cursor)
    assert edited.event == "upsert" and edited.external_id == held["data"]["name"]
    delete(held)
    (deleted,), _ = await c.poll_once(cursor)
    assert deleted.event == "delete" and deleted.external_id == held["data"]["name"]


async def test_a_removed_post_a_moderator_approves_again_is_restored_through_ingest(reddit, made, db):
    """Removed by a moderator (in our subreddit or elsewhere) or Reddit's spam filter, then approved
    in Reddit's own UI: shown again in socialcare, and triaged again. Words edited while it was
    removed come back as an edit."""
    c, pipeline = connector(reddit, made), Pipeline(db)
    first, cursor = await c.poll_once(None)
    await pipeline.run(first)
    things = [remove(reddit.posts[1]), remove(reddit.hits[0]), remove(reddit.comments[1], by=True)]
    assert reddit.view(things[2])["data"]["banned_by"] is True and reddit.view(things[2])["data"]["spam"] is True
    names = [t["data"]["name"] for t in things]
    gone, cursor = await c.poll_once(cursor)
    assert sorted(m.external_id for m in gone) == sorted(names) and {m.event for m in gone} == {"delete"}
    await pipeline.run(gone)
    assert (await c.poll_once(cursor))[0] == []  # still removed: nothing
    edit(things[2], "approved at last: order 12345 never came", at=EDITED_AT)  # while removed
    for t in things:
        approve(t)
    assert reddit.view(things[0])["data"]["approved_by"] == "a_moderator"
    back, cursor = await c.poll_once(cursor)
    assert sorted(m.external_id for m in back) == sorted(names) and {m.event for m in back} == {"restore"}
    by_name = {m.external_id: m for m in back}
    assert by_name[names[2]].edited_at.timestamp() == EDITED_AT and "12345" in by_name[names[2]].text
    assert by_name[names[1]].text == "Is the acme app down for anyone?\n\nIt keeps crashing"  # not "[removed]"
    assert len(await pipeline.run(back)) == 3  # each triaged again
    rows = await pipeline.rows()
    assert all(not rows[n].deleted and not rows[n].hidden for n in names)
    assert rows[names[2]].text == "approved at last: order 12345 never came"
    assert rows[names[2]].edited_at.timestamp() == EDITED_AT
    assert rows[names[0]].text == "Acme app problem 2\n\nIt keeps crashing"
    before = len(info_ids(reddit))
    assert (await c.poll_once(cursor))[0] == []  # shown and unchanged: nothing more
    (asked,) = info_ids(reddit)[before:]
    assert set(names) <= set(asked)  # back in the window as any other post: an edit is still seen


async def test_a_post_still_removed_emits_nothing_and_stays_until_it_ages_out(reddit, made):
    c = connector(reddit, made)
    _, cursor = await c.poll_once(None)
    name = remove(reddit.posts[0])["data"]["name"]
    (gone,), cursor = await c.poll_once(cursor)
    assert gone.event == "delete"
    [saved] = [e for e in json.loads(cursor)["recheck"]["ids"] if e[0] == name]
    assert saved[2].startswith("-") and saved[2].endswith(digest(gone.text))  # a marker, the same words
    for _ in range(2):
        before = len(info_ids(reddit))
        assert (await c.poll_once(cursor))[0] == []
        assert name in info_ids(reddit)[before]
    data = json.loads(cursor)
    data["recheck"]["ids"] = [[n, first - 2 * 86400 if n == name else first, d] for n, first, d in
                              data["recheck"]["ids"]]  # first seen two days ago: past recheck_hours
    aged = json.dumps(data)
    before = len(info_ids(reddit))
    assert (await c.poll_once(aged))[0] == []
    assert name not in info_ids(reddit)[before]
    approve(reddit.posts[0])
    assert (await c.poll_once(aged))[0] == []  # out of the window: no longer followed


async def test_only_reddit_showing_a_post_again_restores_it_not_our_own_removal(reddit, made):
    """Our own moderator removing a post someone else removed keeps it removed on Reddit: no restore.
    A post our account alone removed (a hold) was never a deletion, so its approval restores nothing."""
    c = connector(reddit, made)
    _, cursor = await c.poll_once(None)
    removed, held = remove(reddit.posts[1]), remove(reddit.posts[0], by="Acme_Support")
    (gone,), cursor = await c.poll_once(cursor)
    assert (gone.external_id, gone.event) == (removed["data"]["name"], "delete")
    remove(removed, by="acme_support")  # our moderation removes it too: still removed on Reddit
    assert reddit.view(removed)["data"]["banned_by"] == "acme_support"
    assert (await c.poll_once(cursor))[0] == []
    approve(held, by="another_moderator")
    assert (await c.poll_once(cursor))[0] == []  # held, approved: unchanged, and never deleted here
    approve(removed)
    (back,), _ = await c.poll_once(cursor)
    assert (back.external_id, back.event, back.edited_at) == (removed["data"]["name"], "restore", None)


async def test_a_post_its_author_deleted_is_never_restored_and_leaves_the_window(reddit, made):
    c = connector(reddit, made)
    _, cursor = await c.poll_once(None)
    deleted, removed = delete(reddit.comments[0]), remove(reddit.posts[1])
    gone, cursor = await c.poll_once(cursor)
    assert {(m.external_id, m.event, m.remove_content) for m in gone} == {
        (deleted["data"]["name"], "delete", True), (removed["data"]["name"], "delete", False)}
    delete(removed)  # removed, then deleted by its author: final
    before = len(info_ids(reddit))
    (final,), cursor = await c.poll_once(cursor)  # already deleted here: now its content goes too
    assert (final.external_id, final.event, final.remove_content) == (removed["data"]["name"], "delete", True)
    (asked,) = info_ids(reddit)[before:]
    assert deleted["data"]["name"] not in asked and removed["data"]["name"] in asked  # read once more
    _, cursor = await c.poll_once(cursor)
    assert removed["data"]["name"] not in {e[0] for e in json.loads(cursor)["recheck"]["ids"]}
    for t in (deleted, removed):
        approve(t)  # whatever a moderator does, the author's "[deleted]" stays
    assert reddit.view(removed)["data"]["selftext"] == "[deleted]"
    before = len(info_ids(reddit))
    assert (await c.poll_once(cursor))[0] == []
    asked = {name for ids in info_ids(reddit)[before:] for name in ids}
    assert not {deleted["data"]["name"], removed["data"]["name"]} & asked


async def test_a_cursor_saved_before_the_removed_marker_still_loads_and_restores(reddit, made, db):
    """A cursor as the connector saved it before removals stayed in the window: every entry is a post
    shown (three fields, a plain digest); a removal and an approval from there on restore it."""
    c, pipeline = connector(reddit, made), Pipeline(db)
    first, _ = await c.poll_once(None)
    await pipeline.run(first)
    now = int(time.time())
    old = json.dumps({"t1": reddit.comments[-1]["data"]["name"], "t3": reddit.posts[-1]["data"]["name"],
                      "search": reddit.hits[-1]["data"]["name"],
                      "recheck": {"at": now - 600, "ids": [[m.external_id, now - 60, digest(m.text)] for m in first]}})
    window = Window.from_cursor(old)
    assert len(window.seen) == 5 and Window.load(window.dump()).seen == window.seen
    assert (await c.poll_once(old))[0] == []  # the digests match: nothing changed
    name = remove(reddit.comments[1])["data"]["name"]
    (gone,), cursor = await c.poll_once(old)
    assert gone.event == "delete"
    assert all(len(e) == 3 for e in json.loads(cursor)["recheck"]["ids"])  # the same shape, marker and all
    await pipeline.run([gone])
    approve(reddit.comments[1])
    (back,), _ = await c.poll_once(cursor)
    assert (back.external_id, back.event) == (name, "restore")
    await pipeline.run([back])
    row = (await pipeline.rows())[name]
    assert not row.deleted and not row.hidden


def entry(cursor: str, name: str) -> str | None:
    """The window's digest for ``name`` in a saved cursor; None when it is not in the window."""
    return next((d for n, _, d in json.loads(cursor)["recheck"]["ids"] if n == name), None)


async def test_a_comment_the_spam_filter_removed_before_we_saw_it_is_stored_once_a_moderator_approves_it(
        reddit, made, db):
    """A new account's first comment, caught by Reddit's spam filter seconds after posting: listed to
    our moderator account removed, not stored, but followed; approved from the modqueue, it is
    stored and shown as a new post, and triaged."""
    c, pipeline = connector(reddit, made), Pipeline(db)
    first, cursor = await c.poll_once(None)
    await pipeline.run(first)
    words = "First time posting here: my order 12345 never arrived and nobody answers"
    caught = remove(comment(3, link=reddit.posts[0]["data"]["name"], body=words, author="new_customer"), by=True)
    reddit.comments.append(caught)
    name = caught["data"]["name"]
    assert reddit.view(caught)["data"]["spam"] is True and reddit.view(caught)["data"]["body"] == words
    listed, cursor = await c.poll_once(cursor)
    assert [(m.external_id, m.event) for m in listed] == [(name, "delete")]
    assert await pipeline.run(listed) == [] and name not in await pipeline.rows()  # nothing to delete
    assert entry(cursor, name) == "+-" + digest(words)  # a spare entry, marked removed, the words a moderator sees
    assert (await c.poll_once(cursor))[0] == []  # still in the modqueue: nothing
    approve(caught)
    (back,), cursor = await c.poll_once(cursor)
    assert (back.external_id, back.event, back.text, back.edited_at) == (name, "restore", words, None)
    (triaged,) = await pipeline.run([back])  # through the real ingest path: new to it, so stored
    row = (await pipeline.rows())[name]
    assert (row.text, row.deleted, row.hidden, row.edited_at) == (words, False, False, None)
    assert triaged.payload["mention_id"] == row.id and ":edit:" not in triaged.key  # triaged as a new post
    assert entry(cursor, name) == digest(words)  # an ordinary window entry from now on
    edit(caught, words + " (order placed on the 3rd)", at=EDITED_AT)
    (edited,), _ = await c.poll_once(cursor)
    assert (edited.external_id, edited.event) == (name, "upsert") and edited.edited_at.timestamp() == EDITED_AT


async def test_a_removed_comment_whose_words_we_were_not_shown_is_stored_with_them_once_approved(
        reddit, made, db):
    """In a subreddit our account does not moderate, a removed comment reads ``[removed]`` with no
    author: it joins the window with no words seen, and comes back with its own, unstamped."""
    reddit.moderates = {"acme"}
    c, pipeline = connector(reddit, made), Pipeline(db)
    first, cursor = await c.poll_once(None)
    await pipeline.run(first)
    caught = remove(comment(3, link=reddit.posts[1]["data"]["name"], sub="acmehelp", body="where is my refund?"),
                    by=True)
    reddit.comments.append(caught)
    name = caught["data"]["name"]
    assert reddit.view(caught)["data"]["body"] == "[removed]"
    (listed,), cursor = await c.poll_once(cursor)
    assert (listed.external_id, listed.event) == (name, "delete") and entry(cursor, name) == "+-"
    approve(caught)
    (back,), _ = await c.poll_once(cursor)
    assert (back.external_id, back.event, back.text, back.author_handle) == (name, "restore", "where is my refund?",
                                                                              "bob")
    assert back.edited_at is None  # no words seen before: not an edit
    assert len(await pipeline.run([back])) == 1
    row = (await pipeline.rows())[name]
    assert (row.text, row.deleted, row.hidden) == ("where is my refund?", False, False)


async def test_a_post_removed_before_we_saw_it_and_never_approved_is_never_stored_and_ages_out(
        reddit, made, db):
    c, pipeline = connector(reddit, made), Pipeline(db)
    first, cursor = await c.poll_once(None)
    await pipeline.run(first)
    post = remove(submission(3, title="Cheap followers", selftext="buy now"), by="a_moderator")
    reddit.posts.append(post)
    name = post["data"]["name"]
    listed, cursor = await c.poll_once(cursor)
    assert [(m.external_id, m.event) for m in listed] == [(name, "delete")]
    await pipeline.run(listed)
    assert entry(cursor, name) == "+-" + digest("Cheap followers\n\nbuy now")
    for _ in range(2):
        before = len(info_ids(reddit))
        assert (await c.poll_once(cursor))[0] == []  # read back, still removed: nothing
        assert name in info_ids(reddit)[before]
    assert name not in await pipeline.rows()
    data = json.loads(cursor)
    data["recheck"]["ids"] = [[n, first_seen - 2 * 86400 if n == name else first_seen, d]
                              for n, first_seen, d in data["recheck"]["ids"]]  # past recheck_hours
    aged = json.dumps(data)
    before = len(info_ids(reddit))
    assert (await c.poll_once(aged))[0] == []
    assert name not in info_ids(reddit)[before]
    approve(post)
    out, after = await c.poll_once(aged)
    assert out == [] and entry(after, name) is None  # out of the window: no longer followed
    assert await pipeline.run(out) == [] and name not in await pipeline.rows()


async def test_a_post_its_author_deleted_before_we_saw_it_never_joins_the_window(reddit, made):
    """Deleted by its author before we first list it (removed first, or not): final, never followed;
    one merely removed in the same round is."""
    c = connector(reddit, made)
    _, cursor = await c.poll_once(None)
    link = reddit.posts[0]["data"]["name"]
    deleted_post = delete(submission(3))
    deleted_comment = delete(comment(3, link=link))
    removed_then_deleted = delete(remove(comment(4, link=link), by=True))
    removed = remove(comment(5, link=link), by=True)
    reddit.posts.append(deleted_post)
    reddit.comments += [deleted_comment, removed_then_deleted, removed]
    gone = [deleted_post, deleted_comment, removed_then_deleted]
    listed, cursor = await c.poll_once(cursor)
    assert {(m.external_id, m.event) for m in listed} == {(t["data"]["name"], "delete") for t in [*gone, removed]}
    assert all(entry(cursor, t["data"]["name"]) is None for t in gone)
    assert entry(cursor, removed["data"]["name"]).startswith("+-")
    for t in [*gone, removed]:
        approve(t)  # whatever a moderator does, the author's "[deleted]" stays
    before = len(info_ids(reddit))
    (back,), _ = await c.poll_once(cursor)
    assert (back.external_id, back.event) == (removed["data"]["name"], "restore")
    asked = {name for ids in info_ids(reddit)[before:] for name in ids}
    assert not {t["data"]["name"] for t in gone} & asked


async def test_unchanged_posts_are_not_emitted_and_a_round_costs_bounded_requests(reddit, made):
    reddit.posts += [submission(100 + i) for i in range(150)]
    c = connector(reddit, made)
    first, cursor = await c.poll_once(None)
    assert len(first) == 103  # a listing page of posts (100), two comments, one keyword hit
    for _ in range(3):
        assert (await c.poll_once(cursor))[0] == []
    rounds = info_ids(reddit)
    assert len(rounds) == 6 and all(len(ids) <= 100 for ids in rounds)  # 103 ids: two requests a round
    assert sorted(rounds[0] + rounds[1]) == sorted(m.external_id for m in first)
    small = connector(reddit, made, recheck_size=40)
    assert (await small.poll_once(cursor))[0] == []
    (last,) = info_ids(reddit)[6:]
    assert len(last) == 40  # the newest 40: one request
    calm = connector(reddit, made, recheck_seconds=300.0)
    _, cursor2 = await calm.poll_once(None)
    await calm.poll_once(cursor2)
    assert len(info_ids(reddit)) == 7  # read back only every recheck_seconds


async def test_the_window_survives_a_restart_in_the_cursor(reddit, made):
    store, published, stop = MemoryCursorStore(), [], asyncio.Event()

    async def publish(batch):
        published.extend((m.external_id, m.event, m.edited_at is not None) for m in batch)

    async def until(n):
        while len(published) < n:
            await asyncio.sleep(0.01)

    run = asyncio.create_task(run_connector(connector(reddit, made), publish, store, stop, backoff_base=0.01))
    await asyncio.wait_for(until(5), 10)
    await asyncio.sleep(0.1)  # rounds that read the window back and find nothing new
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    saved = json.loads(await store.get("reddit"))
    assert len(saved["recheck"]["ids"]) == 5
    edit(reddit.comments[1], "solved it, thanks", at=EDITED_AT)  # while down
    delete(reddit.posts[0])
    run = asyncio.create_task(run_connector(connector(reddit, made), publish, store, stop, backoff_base=0.01))
    await asyncio.wait_for(until(7), 10)
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(run, 10)
    assert len(published) == 7 and len(set(published)) == 7
    assert sorted(published[5:]) == sorted([(reddit.comments[1]["data"]["name"], "upsert", True),
                                            (reddit.posts[0]["data"]["name"], "delete", False)])


async def test_a_429_on_api_info_backs_off_and_keeps_the_window(reddit, made, waits):
    c = connector(reddit, made)
    _, cursor = await c.poll_once(None)
    store = MemoryCursorStore()
    await store.set("reddit", cursor)
    edit(reddit.comments[0], "it works again", at=EDITED_AT)
    reddit.posts.append(submission(3))  # a new post in the same round: not lost either
    reddit.fail_on["/api/info"] = [rate_limited(reset=1)]
    with pytest.raises(RateLimited) as limited:
        await connector(reddit, made).poll_once(cursor)
    assert limited.value.retry_after == 1.0  # Reddit's x-ratelimit-reset, through translate()
    reddit.fail_on["/api/info"] = [rate_limited(reset=1)]
    got, stop = [], asyncio.Event()

    async def publish(batch):
        got.extend(m.external_id for m in batch)
        stop.set()

    await asyncio.wait_for(run_connector(c, publish, store, stop, backoff_base=0.01), 30)
    assert waits == [1.0] and not reddit.fail_on["/api/info"]
    assert sorted(got) == sorted([reddit.comments[0]["data"]["name"], reddit.posts[-1]["data"]["name"]])
    saved = Window.from_cursor(await store.get("reddit"))
    assert len(saved.seen) == 6  # the five of the window kept, and the new post


def test_a_cursor_without_a_window_or_with_a_broken_one_starts_an_empty_one():
    for cursor in (None, "", "not json", '{"t3": "t3_abc"}', '{"recheck": "x"}', '{"recheck": {"ids": [[1, 2]]}}'):
        assert Window.from_cursor(cursor).seen == {}
    window = Window.from_cursor('{"recheck": {"at": 100, "ids": [["t3_a", 50, "ff"], ["t1_b", 3650, "ee"]]}}')
    window.trim(now=3700.0, hours=1.0, size=10)
    assert list(window.seen) == ["t1_b"]  # first seen over an hour ago: aged out
