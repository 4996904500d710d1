"""X deletions: outside the Enterprise compliance streams X never says a tweet was deleted, so the
connectors look the tweets they ingested up again (``GET /2/tweets?ids=``, through the real tweepy
client against the local fake X API) and a deleted one is deleted here too; a tweet whose author's
account went protected or suspended is withdrawn the same way until X shows it again."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from listener import runner
from listener.cursors import MemoryCursorStore
from listener.errors import RateLimited
from listener.ingest import ingest_batch
from listener.runner import run_connector
from listener.x.connector import XConnector
from listener.x.recheck import changes, since_id
from listener.x.stream import XStreamConnector
from models import Mention
from service.settings import load_settings

from .fakes import serve
from .fakes.x_api import FakeX, edited, lookup_error, tweet
from .test_x_stream import take

JANE, TOM = "2244994945", "783214"


@pytest.fixture
async def fake():
    x = FakeX(tweets=[tweet(i) for i in range(4)] + [tweet(4, author=TOM)], page_size=100)
    server = await serve(x)
    yield x
    await server.close()


@pytest.fixture
async def made():
    connectors: list = []
    yield connectors
    for c in connectors:
        await c.close()


def connector(fake, made, **kw) -> XConnector:
    settings = load_settings(x_api_base=fake.base, x_bearer_token="test", x_user_id="99")
    c = XConnector(settings, **{"poll_seconds": 0.01, "recheck_seconds": 0.0, **kw})
    made.append(c)
    return c


def window(cursor: str) -> list[str]:
    """The ids the cursor's re-check window holds, oldest first."""
    return [entry[0] for entry in json.loads(cursor)["recheck"]["ids"]]


async def ingest(db, mentions) -> list[str]:
    async with db.session() as s:
        results = await ingest_batch(s, mentions)
        await s.commit()
    return [r.outcome for r in results]


async def stored(db) -> dict[str, Mention]:
    async with db.session() as s:
        return {m.external_id: m for m in await s.scalars(select(Mention))}


async def test_a_tweet_deleted_on_x_is_deleted_in_socialcare_after_the_next_recheck(fake, made, db):
    c = connector(fake, made)
    first, cursor = await c.poll_once(None)
    assert await ingest(db, first) == ["new"] * 5
    target = fake.tweets[2]["id"]
    fake.gone.add(target)  # its author deleted it: X says nothing
    (deleted,), cursor = await c.poll_once(cursor)
    assert (deleted.platform, deleted.external_id, deleted.event) == ("x", target, "delete")
    assert deleted.raw["recheck"] == "Not Found Error"
    assert await ingest(db, [deleted]) == ["deleted"]
    rows = await stored(db)
    assert rows[target].deleted and rows[target].hidden
    assert not any(r.deleted for i, r in rows.items() if i != target)
    assert target not in window(cursor)  # final: never asked again
    before = len(fake.lookup_ids())
    assert (await c.poll_once(cursor))[0] == []
    assert target not in fake.lookup_ids()[before]


async def test_tweets_still_there_emit_nothing_and_our_own_replies_are_never_looked_up(fake, made):
    fake.tweets.append(tweet(5, "@jane_doe sorry about that, we are on it", author="99"))  # ours
    c = connector(fake, made)
    first, cursor = await c.poll_once(None)
    theirs = [t["id"] for t in fake.tweets[:-1]]
    assert [m.external_id for m in first] == theirs and window(cursor) == theirs
    for _ in range(2):
        again, cursor = await c.poll_once(cursor)
        assert again == []
    assert fake.lookup_ids() == [theirs, theirs]  # one request a round, the window in id order
    asked = parse_qs(urlsplit(next(r for r in fake.requests if r.startswith("/2/tweets?"))).query)
    assert asked["expansions"] == ["author_id"]  # gone parents of replies would only add errors


async def test_more_than_100_ids_are_looked_up_100_at_a_time(fake, made, db):
    fake.tweets = [tweet(i) for i in range(250)]
    c = connector(fake, made)
    first, cursor = await c.poll_once(None)
    assert len(first) == 250 and len(window(cursor)) == 250
    fake.gone.update({fake.tweets[10]["id"], fake.tweets[240]["id"]})
    gone, _ = await c.poll_once(cursor)
    requests = fake.lookup_ids()
    assert [len(ids) for ids in requests] == [100, 100, 50]  # X refuses more than 100 (HTTP 400)
    assert sorted(i for ids in requests for i in ids) == sorted(t["id"] for t in fake.tweets)
    assert sorted(m.external_id for m in gone) == sorted([fake.tweets[10]["id"], fake.tweets[240]["id"]])
    assert {m.event for m in gone} == {"delete"}


async def test_the_window_is_bounded_by_size_and_age_and_survives_a_restart(fake, made):
    first = connector(fake, made, recheck_size=3)
    _, cursor = await first.poll_once(None)
    ids = [t["id"] for t in fake.tweets]
    assert window(cursor) == ids[-3:] and since_id(cursor) == ids[-1]  # the newest 3
    store = MemoryCursorStore()
    await store.set("x", cursor)
    await first.close()
    fake.gone.update({ids[0], ids[3]})  # one out of the window, one in it
    second = connector(fake, made, recheck_size=3)  # a new process, from the saved cursor
    (gone,), cursor = await second.poll_once(await store.get("x"))
    assert gone.external_id == ids[3] and fake.lookup_ids() == [ids[-3:]]
    assert window(cursor) == [ids[2], ids[4]]
    data = json.loads(cursor)
    data["recheck"]["ids"][0][1] -= 2 * 86400  # first seen two days ago: past recheck_hours (24)
    fake.gone.add(ids[2])
    assert (await second.poll_once(json.dumps(data)))[0] == []  # aged out: no longer followed
    assert fake.lookup_ids()[-1] == [ids[4]]
    fake.tweets.append(tweet(9))
    more, old_style = await second.poll_once(ids[-1])  # a bare since_id, as saved before the window
    assert [m.external_id for m in more] == [tweet(9)["id"]] and window(old_style) == [tweet(9)["id"]]


async def test_a_429_on_the_recheck_leaves_the_cursor_as_it_was_and_the_runner_waits(fake, made, monkeypatch):
    c = connector(fake, made)
    _, saved = await c.poll_once(None)
    target = fake.tweets[1]["id"]
    fake.gone.add(target)
    fake.tweets.append(tweet(7))  # new meanwhile: not lost either
    fake.lookup_fail_next = [(429, {"x-rate-limit-reset": str(int(time.time()) + 600),
                                    "x-rate-limit-remaining": "0"})]
    with pytest.raises(RateLimited) as limited:
        await c.poll_once(saved)
    assert limited.value.reset_at >= time.time() + 590
    store, stop, got, waited = MemoryCursorStore(), asyncio.Event(), [], []
    await store.set("x", saved)

    async def no_sleep(_stop, seconds):
        waited.append((seconds, store.values["x"]))
        await asyncio.sleep(0)

    async def publish(batch):
        got.extend((m.event, m.external_id) for m in batch)
        stop.set()

    monkeypatch.setattr(runner, "_sleep", no_sleep)
    fake.lookup_fail_next = [(429, {"x-rate-limit-reset": str(int(time.time()) + 600)})]
    await asyncio.wait_for(run_connector(c, publish, store, stop), 10)
    (seconds, during), = waited
    assert 500 < seconds <= 610 and during == saved  # it waited for the reset, the cursor untouched
    assert got == [("delete", target), ("upsert", tweet(7)["id"])]  # then the same round again
    assert target not in window(store.values["x"]) and since_id(store.values["x"]) == tweet(7)["id"]


async def test_a_protected_or_suspended_author_withdraws_the_tweet_until_x_shows_it_again(fake, made, db):
    """X's policy: a tweet no longer public is not shown, for as long as that lasts. So an
    Authorization Error hides it (a delete), keeps following it, and its return restores it."""
    c = connector(fake, made)
    first, cursor = await c.poll_once(None)
    await ingest(db, first)
    toms = fake.tweets[4]["id"]
    fake.protected.add(TOM)
    (withdrawn,), cursor = await c.poll_once(cursor)
    assert (withdrawn.external_id, withdrawn.event, withdrawn.raw["recheck"]) == (toms, "delete",
                                                                                 "Authorization Error")
    assert await ingest(db, [withdrawn]) == ["deleted"]
    assert toms in window(cursor)  # still followed ...
    assert (await c.poll_once(cursor))[0] == []  # ... but said once
    fake.protected.discard(TOM)  # public again
    (back,), cursor = await c.poll_once(cursor)
    assert (back.external_id, back.event, back.text) == (toms, "restore", fake.tweets[4]["text"])
    assert back.author_handle == "user3214" and back.url.endswith(f"/status/{toms}")
    assert await ingest(db, [back]) == ["restored"]
    row = (await stored(db))[toms]
    assert not row.deleted and not row.hidden
    assert (await c.poll_once(cursor))[0] == []  # shown and unchanged: nothing more
    fake.protected.add(TOM)
    (again,), cursor = await c.poll_once(cursor)
    assert again.event == "delete"
    fake.gone.add(toms)  # deleted while withdrawn: already hidden here, it just leaves
    nothing, cursor = await c.poll_once(cursor)
    assert nothing == [] and toms not in window(cursor)


async def test_an_edited_tweet_is_looked_up_by_its_newest_version(fake, made, db):
    c = connector(fake, made)
    first, cursor = await c.poll_once(None)
    base = fake.tweets[0]
    fake.tweets.append(edited(base, 30, "@acme_help edit: my email is jane@example.com"))
    (edit,), cursor = await c.poll_once(cursor)
    assert await ingest(db, first + [edit]) == ["new"] * 5 + ["edited"]
    newest = fake.tweets[-1]["id"]
    assert (await c.poll_once(cursor))[0] == []
    assert newest in fake.lookup_ids()[-1] and base["id"] not in fake.lookup_ids()[-1]
    fake.gone.update({base["id"], newest})  # deleting a post deletes every version
    (deleted,), _ = await c.poll_once(cursor)
    assert (deleted.external_id, deleted.event) == (base["id"], "delete")
    assert await ingest(db, [deleted]) == ["deleted"]


async def test_the_filtered_stream_connector_rechecks_what_it_yielded(fake, made):
    settings = load_settings(x_api_base=fake.base, x_bearer_token="test", x_user_id="99", x_stream_rules=["acme"])
    c = XStreamConnector(settings, poll_seconds=0.05, idle_seconds=0.05, stall_seconds=2.0, recheck_seconds=0.0)
    made.append(c)
    live = [tweet(21), tweet(22)]
    for t in live:
        fake.push(t)
    agen = c.stream(None)
    got, cursor = await take(agen, 2)
    assert [m.external_id for m in got] == [t["id"] for t in live] and window(cursor) == [t["id"] for t in live]
    fake.gone.add(live[0]["id"])
    (deleted,), cursor = await take(agen, 1)
    assert (deleted.external_id, deleted.event, deleted.channel) == (live[0]["id"], "delete", "x:stream")
    assert window(cursor) == [live[1]["id"]]
    await agen.aclose()


def test_errors_about_included_tweets_are_not_about_the_ids_asked():
    """A lookup's ``errors`` also list referenced tweets of ``includes`` that are gone: not ours."""
    from listener.x.recheck import TweetWindow

    w = TweetWindow({"1850000000000000001": (1, "1850000000000000001")})
    about_parent = {**lookup_error("1850000000000000001", "Not Found Error"), "section": "includes",
                    "parameter": "referenced_tweets.id"}
    other = {**lookup_error("1850000000000000001", "Not Found Error"), "resource_type": "user"}
    assert changes({"errors": [about_parent, other]}, w, w.asked(), None, 0.0) == []
    assert list(w.seen) == ["1850000000000000001"]
