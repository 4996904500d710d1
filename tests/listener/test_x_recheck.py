"""X deletions: outside the Enterprise compliance streams X never says a tweet was deleted, so the
connectors look the tweets they ingested up again (``GET /2/tweets?ids=``, through the real tweepy
client against the local fake X API) and a deleted one is deleted here too; a tweet whose author's
account went protected or suspended is withdrawn the same way until X shows it again."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from listener.cursors import MemoryCursorStore
from listener.ingest import ingest_batch
from listener.runner import run_connector
from listener.x import recheck as xrecheck
from listener.x.connector import XConnector
from listener.x.recheck import changes, since_id
from listener.x.stream import XStreamConnector
from models import Mention
from service.settings import load_settings

from .fakes import serve
from .fakes.x_api import TOO_MANY_IDS, FakeX, edited, lookup_error, tweet
from .test_x_stream import take

JANE, TOM = "2244994945", "783214"


@pytest.fixture
async def fake():
    x = FakeX(tweets=[tweet(i) for i in range(4)] + [tweet(4, author=TOM)], page_size=100)
    server = await serve(x)
    yield x
    await server.close()


def connector(fake, made, **kw) -> XConnector:
    settings = load_settings(x_api_base=fake.base, x_bearer_token="test", x_user_id="99")
    c = XConnector(settings, **{"poll_seconds": 0.01, "recheck_seconds": 0.0, **kw})
    made.append(c)
    return c


def window(cursor: str) -> list[str]:
    """The ids the cursor's re-check window holds, oldest first."""
    return [entry[0] for entry in json.loads(cursor)["recheck"]["ids"]]


def mark(cursor: str, original: str) -> str | None:
    """The window's mark for a tweet: its newest version id, after ``-`` while hidden here, after
    ``+`` for a spare entry; None when it is not in the window."""
    return next((m for i, _, m in json.loads(cursor)["recheck"]["ids"] if i == original), None)


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
    assert mark(cursor, target) == "+-" + target  # still followed, spare: see the deactivation test
    before = len(fake.lookup_ids())
    assert (await c.poll_once(cursor))[0] == []  # said once
    assert target in fake.lookup_ids()[before]


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


FORBIDDEN = {"title": "Forbidden", "type": "about:blank", "status": 403,
             "detail": "You are not permitted to perform this action."}
LOOKUP_FAILURES = {  # what GET /2/tweets?ids= may answer instead of a lookup
    "503": (503, {}),
    "403": (403, {}, FORBIDDEN),
    "400": (400, {}, TOO_MANY_IDS),
    "malformed JSON": (200, {}, '{"data": [ {"id": '),
    "data not a list": (200, {}, {"data": 42}),
}


@pytest.mark.parametrize("failure", LOOKUP_FAILURES.values(), ids=LOOKUP_FAILURES.keys())
async def test_a_failing_lookup_never_holds_back_new_mentions_nor_stops_the_connector(fake, made, waits, failure,
                                                                                    caplog):
    c = connector(fake, made)
    _, saved = await c.poll_once(None)
    target = fake.tweets[1]["id"]
    fake.gone.add(target)
    fake.tweets.append(tweet(7))  # new meanwhile
    fake.lookup_fail_next = [failure]
    store, stop, got, cursors = MemoryCursorStore(), asyncio.Event(), [], []
    await store.set("x", saved)

    async def publish(batch):
        got.append([(m.event, m.external_id) for m in batch])
        cursors.append(await store.get("x"))
        if len(got) == 2:
            stop.set()

    status = await asyncio.wait_for(run_connector(c, publish, store, stop), 10)
    assert got == [[("upsert", tweet(7)["id"])],  # in the very round whose lookup failed
                   [("delete", target)]]  # the next round's re-check
    assert waits == [] and not status.stopped_by_error and status.last_error is None  # no back-off, no stop
    assert target in window(cursors[1])  # the failed round left the window as it was
    assert mark(store.values["x"], target) == "+-" + target and since_id(store.values["x"]) == tweet(7)["id"]
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("socialcare.listener")]
    assert any("re-check" in line for line in logged)
    assert not any(word in line for line in logged for word in ("@acme_help", "permitted", "parameters", "{"))


async def test_a_lookup_page_not_understood_is_skipped_and_the_others_count(fake, made):
    fake.tweets = [tweet(i) for i in range(250)]
    c = connector(fake, made)
    _, cursor = await c.poll_once(None)
    first_page, last_page = fake.tweets[10]["id"], fake.tweets[240]["id"]
    fake.gone.update({first_page, last_page})
    fake.lookup_fail_next = [(200, {}, {"errors": 7})]  # the first of three pages
    gone, cursor = await c.poll_once(cursor)
    assert [(m.event, m.external_id) for m in gone] == [("delete", last_page)]
    assert first_page in window(cursor)  # asked again next round
    gone, cursor = await c.poll_once(cursor)
    assert [(m.event, m.external_id) for m in gone] == [("delete", first_page)]


async def test_a_429_on_the_lookup_delays_no_mention_and_the_recheck_waits_for_its_reset(fake, made, monkeypatch):
    """X limits the lookup endpoint apart from the mentions: its 429 holds back the re-check alone,
    until the ``x-rate-limit-reset`` it announced, a restart included."""
    c = connector(fake, made)
    _, saved = await c.poll_once(None)
    target = fake.tweets[1]["id"]
    fake.gone.add(target)
    fake.tweets.append(tweet(7))
    reset = int(time.time()) + 600
    fake.lookup_fail_next = [(429, {"x-rate-limit-reset": str(reset), "x-rate-limit-remaining": "0"})]
    got, cursor = await c.poll_once(saved)  # nothing raised: the runner has nothing to wait for
    assert [(m.event, m.external_id) for m in got] == [("upsert", tweet(7)["id"])]
    asked = len(fake.lookup_ids())
    fake.tweets.append(tweet(8))
    got, cursor = await c.poll_once(cursor)
    assert [(m.event, m.external_id) for m in got] == [("upsert", tweet(8)["id"])]
    await c.close()
    again = connector(fake, made)  # a restart, from the saved cursor
    fake.tweets.append(tweet(9))
    got, cursor = await again.poll_once(cursor)
    assert [(m.event, m.external_id) for m in got] == [("upsert", tweet(9)["id"])]
    assert len(fake.lookup_ids()) == asked  # not asked again before the reset
    real = time.time
    monkeypatch.setattr(xrecheck, "time", SimpleNamespace(time=lambda: real() + 602))
    (deleted,), cursor = await again.poll_once(cursor)  # past the reset
    assert (deleted.event, deleted.external_id) == ("delete", target)
    assert len(fake.lookup_ids()) == asked + 1 and "wait" not in json.loads(cursor)["recheck"]


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
    fake.gone.add(toms)  # deleted while withdrawn: already hidden here, nothing more to say
    nothing, cursor = await c.poll_once(cursor)
    assert nothing == [] and mark(cursor, toms) == "+-" + toms  # a spare entry now, like any tweet not found


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
    assert mark(cursor, live[0]["id"]) == "+-" + live[0]["id"] and mark(cursor, live[1]["id"]) == live[1]["id"]
    await agen.aclose()


async def test_the_stream_keeps_streaming_when_a_lookup_fails(fake, made):
    settings = load_settings(x_api_base=fake.base, x_bearer_token="test", x_user_id="99", x_stream_rules=["acme"])
    c = XStreamConnector(settings, poll_seconds=0.05, idle_seconds=0.05, stall_seconds=2.0, recheck_seconds=0.0)
    made.append(c)
    live = [tweet(21), tweet(22)]
    for t in live:
        fake.push(t)
    agen = c.stream(None)
    await take(agen, 2)
    fake.lookup_fail_next = [LOOKUP_FAILURES[k] for k in ("503", "403", "malformed JSON", "data not a list")]
    fake.gone.add(live[0]["id"])
    fake.push(tweet(23))
    got, cursor = await take(agen, 2)
    assert sorted((m.event, m.external_id) for m in got) == sorted([("upsert", tweet(23)["id"]),
                                                                   ("delete", live[0]["id"])])
    assert not fake.lookup_fail_next and fake.stream_connects == 1  # every failure met, on the one connection
    assert window(cursor) == [live[0]["id"], live[1]["id"], tweet(23)["id"]]
    assert mark(cursor, live[0]["id"]).startswith("+-")
    await agen.aclose()


async def test_a_catch_up_search_comes_through_a_failing_lookup(fake, made):
    """The (re)connect's catch-up and the fallback's poll: the search's tweets come first."""
    settings = load_settings(x_api_base=fake.base, x_bearer_token="test", x_user_id="99", x_stream_rules=["acme"])
    c = XStreamConnector(settings, recheck_seconds=0.0)
    made.append(c)
    fake.found = [tweet(31)]
    _, cursor = await c.poll_once(None)
    fake.found.append(tweet(32))
    fake.gone.add(tweet(31)["id"])
    fake.lookup_fail_next = [(503, {})]
    got, cursor = await c.poll_once(cursor)
    assert [(m.event, m.external_id) for m in got] == [("upsert", tweet(32)["id"])]
    got, cursor = await c.poll_once(cursor)
    assert [(m.event, m.external_id) for m in got] == [("delete", tweet(31)["id"])]


def test_errors_about_included_tweets_are_not_about_the_ids_asked():
    """A lookup's ``errors`` also list referenced tweets of ``includes`` that are gone: not ours."""
    from listener.x.recheck import TweetWindow

    w = TweetWindow({"1850000000000000001": (1, "1850000000000000001")})
    about_parent = {**lookup_error("1850000000000000001", "Not Found Error"), "section": "includes",
                    "parameter": "referenced_tweets.id"}
    other = {**lookup_error("1850000000000000001", "Not Found Error"), "resource_type": "user"}
    assert changes({"errors": [about_parent, other]}, w, w.asked(), None, 0.0) == []
    assert list(w.seen) == ["1850000000000000001"]
