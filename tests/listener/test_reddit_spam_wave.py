"""A spam wave in the Reddit re-check window: posts already removed when first listed (Reddit's spam
filter, AutoModerator) are followed only as spare entries, at most a quarter of ``recheck_size``, and
leave a full window before any post we published, so the posts we show stay followed for their edits
and deletions. Through the real asyncpraw client against the local fake Reddit."""

from __future__ import annotations

import json

import pytest

from listener.recheck import SPARE_SHARE, Window, digest, spare_limit

from .fakes import serve
from .fakes.reddit import FakeReddit, approve, comment, delete, edit, remove, submission
from .test_reddit_recheck import EDITED_AT, connector, entry, info_ids

SIZE = 8  # the window: at most two spare entries (a quarter)


@pytest.fixture
async def reddit():
    fake = FakeReddit(posts=[submission(1), submission(2, sub="acmehelp")])
    fake.comments = [comment(1, link=fake.posts[0]["data"]["name"]), comment(2, link=fake.posts[1]["data"]["name"],
                                                                             sub="acmehelp")]
    fake.hits = [submission(50, sub="gadgets", title="Is the acme app down for anyone?")]
    server = await serve(fake)
    yield fake
    await server.close()


def spam_wave(fake: FakeReddit, count: int, start: int = 100) -> list[dict]:
    """New accounts' comments, each caught by Reddit's spam filter seconds after posting."""
    link = fake.posts[0]["data"]["name"]
    wave = [remove(comment(start + i, link=link, body=f"cheap followers, DM me {i}", author=f"spam{i}"), by=True)
            for i in range(count)]
    fake.comments += wave
    return wave


def names(things: list[dict]) -> list[str]:
    return [t["data"]["name"] for t in things]


def in_window(cursor: str) -> set[str]:
    return {name for name, _, _ in json.loads(cursor)["recheck"]["ids"]}


def first_seen_earlier(cursor: str, seconds: dict[str, int]) -> str:
    """The cursor with these posts first seen that many seconds earlier (to order them by age)."""
    data = json.loads(cursor)
    data["recheck"]["ids"] = [[n, first - seconds.get(n, 0), d] for n, first, d in data["recheck"]["ids"]]
    return json.dumps(data)


def test_the_spare_share_is_a_quarter_of_the_window_rounded_down():
    assert SPARE_SHARE == 0.25
    assert [spare_limit(n) for n in (0, 3, 4, SIZE, 300)] == [0, 0, 1, 2, 75]


async def test_a_spam_wave_takes_at_most_a_quarter_of_the_window_and_the_posts_we_show_stay_followed(
        reddit, made):
    c = connector(reddit, made, recheck_size=SIZE)
    first, cursor = await c.poll_once(None)
    shown = [m.external_id for m in first]
    assert len(shown) == 5
    wave = spam_wave(reddit, 10)
    listed, cursor = await c.poll_once(cursor)
    assert sorted(m.external_id for m in listed) == sorted(names(wave)) and {m.event for m in listed} == {"delete"}
    assert in_window(cursor) == set(shown) | set(names(wave)[-2:])  # the two newest of the wave, no more
    assert all(entry(cursor, n).startswith("+-") for n in names(wave)[-2:])  # spare, marked removed
    edit(reddit.comments[0], "update: my card 4111 1111 1111 1111 was charged twice", at=EDITED_AT)
    delete(reddit.posts[1])
    changed, cursor = await c.poll_once(cursor)
    assert {(m.external_id, m.event) for m in changed} == {(reddit.comments[0]["data"]["name"], "upsert"),
                                                           (reddit.posts[1]["data"]["name"], "delete")}
    for t in wave:
        approve(t)  # a moderator clears the modqueue: only the spam still followed is seen
    back, _ = await c.poll_once(cursor)
    assert sorted((m.external_id, m.event) for m in back) == [(n, "restore") for n in sorted(names(wave)[-2:])]


async def test_a_full_window_lets_its_spare_entries_go_first_then_its_oldest_posts(reddit, made):
    c = connector(reddit, made, recheck_size=SIZE)
    first, cursor = await c.poll_once(None)
    oldest = first[0].external_id
    cursor = first_seen_earlier(cursor, {m.external_id: 3600 + (100 if m.external_id == oldest else 0)
                                         for m in first})  # an hour ago, ``oldest`` a little before
    older_spam, newer_spam = spam_wave(reddit, 2)
    _, cursor = await c.poll_once(cursor)
    cursor = first_seen_earlier(cursor, {names([older_spam])[0]: 1801, names([newer_spam])[0]: 1800})
    assert len(in_window(cursor)) == 7  # five posts shown, two spare: room for one more
    reddit.posts += [submission(3), submission(4)]
    _, cursor = await c.poll_once(cursor)
    assert len(in_window(cursor)) == SIZE
    assert names([older_spam])[0] not in in_window(cursor) and names([newer_spam])[0] in in_window(cursor)
    assert oldest in in_window(cursor)  # a post we show outlives every spare entry
    reddit.posts += [submission(5), submission(6)]
    _, cursor = await c.poll_once(cursor)
    assert names([newer_spam])[0] not in in_window(cursor)  # spare entries go first ...
    assert oldest not in in_window(cursor)  # ... then the oldest of the posts we show
    assert len(in_window(cursor)) == SIZE and not any(e.startswith("+") for _, _, e in
                                                      json.loads(cursor)["recheck"]["ids"])
    before = len(info_ids(reddit))
    await c.poll_once(cursor)
    (asked,) = info_ids(reddit)[before:]
    assert sorted(asked) == sorted(in_window(cursor))


async def test_an_approved_spam_filter_catch_is_an_ordinary_post_from_then_on(reddit, made):
    c = connector(reddit, made, recheck_size=SIZE)
    _, cursor = await c.poll_once(None)
    (caught,) = spam_wave(reddit, 1)
    _, cursor = await c.poll_once(cursor)
    approve(caught)
    (back,), cursor = await c.poll_once(cursor)
    assert back.event == "restore" and entry(cursor, caught["data"]["name"]) == digest(back.text)  # not spare


async def test_a_cursor_saved_before_spare_entries_loads_its_removed_entries_as_ordinary_ones(reddit, made):
    """A cursor of the previous release: a post first listed removed was saved as ``-`` before the
    digest (or alone), like a removal of a post we published. It loads, counts as an ordinary entry
    until it ages out, and its approval is still seen."""
    c = connector(reddit, made, recheck_size=SIZE)
    _, cursor = await c.poll_once(None)
    caught, unseen = spam_wave(reddit, 2)
    data = json.loads(cursor)
    first = data["recheck"]["ids"][0][1]
    data["recheck"]["ids"] += [[caught["data"]["name"], first, "-" + digest(caught["data"]["body"])],
                               [unseen["data"]["name"], first, "-"]]
    data["t1"] = unseen["data"]["name"]  # already listed by the previous release
    old = json.dumps(data)
    assert len(Window.from_cursor(old).seen) == 7
    spam_wave(reddit, 4, start=200)  # a new wave: only two of it may join
    _, cursor = await c.poll_once(old)
    assert {caught["data"]["name"], unseen["data"]["name"]} <= in_window(cursor)
    assert entry(cursor, caught["data"]["name"]).startswith("-")  # as it was saved: not spare
    assert len(in_window(cursor)) == SIZE  # seven ordinary entries leave room for one spare
    approve(caught)
    approve(unseen)
    back, _ = await c.poll_once(cursor)
    assert sorted((m.external_id, m.event) for m in back) == sorted([(caught["data"]["name"], "restore"),
                                                                    (unseen["data"]["name"], "restore")])
