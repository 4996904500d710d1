"""X withheld content and reactivated accounts, through the real tweepy client against the local fake
X API. X withholds some tweets (or whole accounts) in some countries, or everywhere for copyright,
and its terms forbid showing them there: a tweet withheld where the team reads the console
(``SOCIALCARE_X_WITHHELD_COUNTRIES``) is hidden like a protected author's, and shown again when X
stops withholding it. A tweet X no longer finds may be its author's deactivated account, which X
answers exactly like a deletion: deleted here at once, and restored if X finds it again in time."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from listener.x.connector import XConnector
from listener.x.stream import XStreamConnector
from service.settings import load_settings

from .fakes import serve
from .fakes.x_api import FakeX, tweet, withhold
from .ingest_path import Pipeline
from .test_x_recheck import JANE, TOM, mark, window
from .test_x_stream import take

TEAM = ["de", "FR"]  # where the care team reads the console


@pytest.fixture
async def fake():
    x = FakeX(tweets=[tweet(i) for i in range(4)] + [tweet(4, author=TOM)], page_size=100)
    server = await serve(x)
    yield x
    await server.close()


def connector(fake, made, countries=TEAM, **kw) -> XConnector:
    settings = load_settings(x_api_base=fake.base, x_bearer_token="test", x_user_id="99",
                             x_withheld_countries=countries)
    c = XConnector(settings, **{"poll_seconds": 0.01, "recheck_seconds": 0.0, **kw})
    made.append(c)
    return c


def asked(fake, path: str) -> dict[str, list[str]]:
    """The query of the last request to ``path``."""
    return parse_qs(urlsplit([r for r in fake.requests if r.startswith(path)][-1]).query)


def test_the_teams_countries_are_a_setting_of_two_letter_codes(monkeypatch):
    monkeypatch.setenv("SOCIALCARE_X_WITHHELD_COUNTRIES", "de, fr")
    assert load_settings().x_withheld_countries == ["DE", "FR"]
    monkeypatch.setenv("SOCIALCARE_X_WITHHELD_COUNTRIES", '["in"]')
    assert load_settings().x_withheld_countries == ["IN"]
    monkeypatch.setenv("SOCIALCARE_X_WITHHELD_COUNTRIES", "Germany")
    with pytest.raises(ValueError, match="two-letter country codes"):
        load_settings()
    monkeypatch.delenv("SOCIALCARE_X_WITHHELD_COUNTRIES")
    assert load_settings().x_withheld_countries == []


async def test_a_tweet_withheld_in_the_teams_country_is_never_shown_until_x_stops_withholding_it(fake, made, db):
    words = "@acme_help my parcel never came, order 12345"
    fake.tweets.append(withhold(tweet(5, words), "DE"))
    c, pipeline = connector(fake, made), Pipeline(db)
    first, cursor = await c.poll_once(None)
    held = next(m for m in first if m.external_id == tweet(5)["id"])
    assert held.event == "delete" and held.text == "" and held.author_handle is None and words not in str(held.raw)
    assert "withheld" in asked(fake, "/2/users/99/mentions")["tweet.fields"][0].split(",")
    assert "withheld" in asked(fake, "/2/users/99/mentions")["user.fields"][0].split(",")
    assert len(await pipeline.run(first)) == 5  # the five others triaged, the withheld one not stored
    assert held.external_id not in await pipeline.rows()
    assert mark(cursor, held.external_id) == "+-" + held.external_id  # followed, spare, hidden
    assert (await c.poll_once(cursor))[0] == []  # still withheld: nothing
    del fake.tweets[-1]["withheld"]  # X lifts it
    (back,), cursor = await c.poll_once(cursor)
    assert (back.external_id, back.event, back.text) == (held.external_id, "restore", words)
    (triaged,) = await pipeline.run([back])  # new to ingest: stored and triaged as a new post
    row = (await pipeline.rows())[held.external_id]
    assert (row.text, row.deleted, row.hidden) == (words, False, False) and ":edit:" not in triaged.key
    assert mark(cursor, held.external_id) == held.external_id  # an ordinary entry from now on


async def test_only_the_teams_countries_and_copyright_hide_a_tweet(fake, made):
    elsewhere, copyrighted, everywhere = withhold(tweet(5), "IN", "TR"), withhold(tweet(6), copyright=True), \
        withhold(tweet(7), "XX")
    fake.tweets += [elsewhere, copyrighted, everywhere]
    for countries, hidden in ((TEAM, {copyrighted["id"], everywhere["id"]}),
                              ([], {copyrighted["id"], everywhere["id"]}),
                              (["in"], {elsewhere["id"], copyrighted["id"], everywhere["id"]})):
        got, _ = await connector(fake, made, countries).poll_once(None)
        assert {m.external_id for m in got if m.event == "delete"} == hidden
        assert all(m.text for m in got if m.event == "upsert")


async def test_an_account_withheld_in_the_teams_country_hides_its_tweets(fake, made):
    fake.withheld_users[TOM] = ["FR"]
    got, cursor = await connector(fake, made).poll_once(None)
    assert {(m.external_id, m.event) for m in got if m.author_id == TOM} == {(fake.tweets[4]["id"], "delete")}
    assert all(m.event == "upsert" for m in got if m.author_id == JANE)
    fake.withheld_users[TOM] = ["RU"]  # now withheld elsewhere only
    (back,), _ = await connector(fake, made).poll_once(cursor)
    assert (back.external_id, back.event) == (fake.tweets[4]["id"], "restore")


async def test_a_tweet_withheld_after_it_was_shown_is_hidden_then_restored_through_ingest(fake, made, db):
    c, pipeline = connector(fake, made), Pipeline(db)
    first, cursor = await c.poll_once(None)
    await pipeline.run(first)
    target = fake.tweets[1]
    withhold(target, "FR", "DE")
    (hidden,), cursor = await c.poll_once(cursor)
    assert (hidden.external_id, hidden.event, hidden.raw["recheck"], hidden.text) == (target["id"], "delete",
                                                                                     "Withheld", "")
    await pipeline.run([hidden])
    row = (await pipeline.rows())[target["id"]]
    assert row.deleted and row.hidden
    assert mark(cursor, target["id"]) == "-" + target["id"]  # hidden, not spare: a tweet we showed
    assert (await c.poll_once(cursor))[0] == []  # said once
    del target["withheld"]
    (back,), _ = await c.poll_once(cursor)
    assert (back.external_id, back.event, back.text) == (target["id"], "restore", target["text"])
    assert len(await pipeline.run([back])) == 1  # triaged again
    row = (await pipeline.rows())[target["id"]]
    assert not row.deleted and not row.hidden


async def test_the_filtered_stream_hides_a_live_tweet_withheld_in_the_teams_country(fake, made):
    settings = load_settings(x_api_base=fake.base, x_bearer_token="test", x_user_id="99", x_stream_rules=["acme"],
                             x_withheld_countries=TEAM)
    c = XStreamConnector(settings, poll_seconds=0.05, idle_seconds=0.05, stall_seconds=2.0, recheck_seconds=0.0)
    made.append(c)
    live = [withhold(tweet(21, "@acme_help withheld words"), "DE"), tweet(22)]
    for t in live:
        fake.push(t)
    agen = c.stream(None)
    got, cursor = await take(agen, 2)
    assert [(m.external_id, m.event, m.text) for m in got] == [(live[0]["id"], "delete", ""),
                                                               (live[1]["id"], "upsert", live[1]["text"])]
    assert mark(cursor, live[0]["id"]) == "+-" + live[0]["id"]
    del live[0]["withheld"]
    (back,), _ = await take(agen, 1)
    assert (back.external_id, back.event, back.text) == (live[0]["id"], "restore", "@acme_help withheld words")
    await agen.aclose()


async def test_a_reactivated_account_brings_its_deleted_tweets_back_through_ingest(fake, made, db):
    """X answers for a deactivated account's tweets exactly as for deleted ones (Not Found), and
    the owner may log in again within 30 days: deleted here at once, restored if X finds them again
    while they are in the window."""
    c, pipeline = connector(fake, made), Pipeline(db)
    first, cursor = await c.poll_once(None)
    await pipeline.run(first)
    fake.deactivated.add(TOM)
    (gone,), cursor = await c.poll_once(cursor)
    toms = fake.tweets[4]["id"]
    assert (gone.external_id, gone.event, gone.raw["recheck"]) == (toms, "delete", "Not Found Error")
    await pipeline.run([gone])
    assert (await pipeline.rows())[toms].deleted
    assert (await c.poll_once(cursor))[0] == []  # still gone: said once
    fake.deactivated.discard(TOM)  # the owner logs in again
    (back,), cursor = await c.poll_once(cursor)
    assert (back.external_id, back.event, back.text) == (toms, "restore", fake.tweets[4]["text"])
    assert back.author_handle == "user3214"
    assert len(await pipeline.run([back])) == 1
    row = (await pipeline.rows())[toms]
    assert not row.deleted and not row.hidden and row.text == fake.tweets[4]["text"]
    assert mark(cursor, toms) == toms


async def test_a_tweet_gone_longer_than_the_window_is_never_restored(fake, made):
    c = connector(fake, made)
    _, cursor = await c.poll_once(None)
    fake.deactivated.add(TOM)
    _, cursor = await c.poll_once(cursor)
    data = json.loads(cursor)
    data["recheck"]["ids"] = [[i, first - 2 * 86400 if i == fake.tweets[4]["id"] else first, m]
                              for i, first, m in data["recheck"]["ids"]]  # past recheck_hours
    fake.deactivated.discard(TOM)
    out, cursor = await c.poll_once(json.dumps(data))
    assert out == [] and fake.tweets[4]["id"] not in window(cursor)


async def test_a_mass_deletion_keeps_at_most_a_quarter_of_the_window_and_every_tweet_shown(fake, made):
    fake.tweets = [tweet(i) for i in range(8)]
    c = connector(fake, made, recheck_size=8)
    _, cursor = await c.poll_once(None)
    fake.gone.update(t["id"] for t in fake.tweets[:5])
    gone, cursor = await c.poll_once(cursor)
    assert len(gone) == 5 and {m.event for m in gone} == {"delete"}  # every deletion said at once
    assert window(cursor) == [t["id"] for t in fake.tweets[3:]]  # three shown, the two newest gone
    fake.tweets += [tweet(8), tweet(9), tweet(10), tweet(11), tweet(12)]
    _, cursor = await c.poll_once(cursor)
    assert window(cursor) == [t["id"] for t in fake.tweets[5:]]  # full: the spare entries went first
