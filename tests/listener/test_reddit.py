"""The Reddit connector through the real asyncpraw client against a local fake of Reddit."""

from __future__ import annotations

import asyncio
import json

import pytest

from listener.cursors import MemoryCursorStore
from listener.errors import AuthError, RateLimited, TransientError
from listener.protocol import Action
from listener.reddit.connector import RedditConnector
from listener.runner import run_connector
from service.settings import load_settings

from .fakes.reddit import CLIENT_ID, CLIENT_SECRET, PASSWORD, FakeReddit, comment, served, submission


@pytest.fixture
async def reddit():
    fake = FakeReddit()
    fake.posts = [submission(1), submission(2, sub="acmehelp"), submission(3, sub="elsewhere")]
    fake.comments = [comment(1, link=fake.posts[0]["data"]["name"]),
                     comment(2, link=fake.posts[0]["data"]["name"], parent=f"t1_{fake.posts[0]['data']['id']}x")]
    fake.comments[1]["data"]["parent_id"] = fake.comments[0]["data"]["name"]
    fake.hits = [submission(50, sub="gadgets", title="Is the acme app down for anyone?")]
    async with served(fake):
        yield fake


def connector(fake, **extra) -> RedditConnector:
    values = {"reddit_client_id": CLIENT_ID, "reddit_client_secret": CLIENT_SECRET, "reddit_username": "acme_support",
              "reddit_password": PASSWORD, "reddit_subreddits": ["acme", "r/acmehelp"], "reddit_keywords": ["acme app"],
              "reddit_oauth_url": fake.base, "reddit_url": fake.base, **extra}
    c = RedditConnector(load_settings(**values), poll_seconds=0.02, search_seconds=0.0)
    fake.clients.append(c)  # closed by the fixture
    return c


async def test_one_poll_reads_both_subreddits_comments_and_the_keyword_search(reddit):
    c = connector(reddit)
    mentions, cursor = await c.poll_once(None)
    posts, comments, hits = mentions[:2], mentions[2:4], mentions[4:]
    assert [m.external_id for m in posts] == [p["data"]["name"] for p in reddit.posts[:2]]  # not r/elsewhere
    assert [m.external_id for m in comments] == [x["data"]["name"] for x in reddit.comments]
    assert [m.external_id for m in hits] == [reddit.hits[0]["data"]["name"]] and hits[0].channel == "r/gadgets"
    first, reply = posts[0], comments[1]
    assert first.text == "Acme app problem 1\n\nIt keeps crashing" and first.author_handle == "jane_doe"
    assert first.url == reddit.base + reddit.posts[0]["data"]["permalink"] and first.channel == "r/acme"
    assert reply.in_reply_to == comments[0].external_id and reply.conversation_id == first.external_id
    state = json.loads(cursor)
    assert sorted(i[0] for i in state.pop("recheck")["ids"]) == sorted(m.external_id for m in mentions)
    assert state == {"t3": posts[1].external_id, "t1": comments[1].external_id, "search": hits[0].external_id}
    assert await c.poll_once(cursor) == ([], cursor)
    assert any("before=" in r for r in reddit.requests if "/new" in r)  # resumed by fullname
    await c.close()


async def test_deleted_and_edited_things_become_delete_and_upsert_events(reddit):
    reddit.posts.append(submission(4, author=None, selftext="[deleted]"))
    reddit.comments.append(comment(3, link=reddit.posts[0]["data"]["name"], edited=1795690000.0))
    c = connector(reddit, reddit_keywords=[])
    mentions, _ = await c.poll_once(None)
    by_id = {m.external_id: m for m in mentions}
    assert by_id[reddit.posts[-1]["data"]["name"]].event == "delete"
    edited = by_id[reddit.comments[-1]["data"]["name"]]
    assert edited.event == "upsert" and edited.edited_at.timestamp() == 1795690000.0
    await c.close()


async def test_our_own_replies_in_the_subreddit_are_read_past_not_published(reddit):
    """Our reply comes back in the subreddit's comment stream; stored, it would be triaged as a customer's."""
    link = reddit.posts[0]["data"]["name"]
    reddit.comments.append(comment(3, link=link, body="Sorry! Try reinstalling the app.", author="Acme_Support"))
    c = connector(reddit, reddit_keywords=[])
    mentions, cursor = await c.poll_once(None)
    assert [m.external_id for m in mentions if m.kind == "comment"] == [x["data"]["name"] for x in reddit.comments[:2]]
    assert json.loads(cursor)["t1"] == reddit.comments[-1]["data"]["name"]
    await c.close()


async def test_a_private_subreddit_is_not_reported_as_wrong_credentials(reddit):
    reddit.fail_next = [(403, {})]
    c = connector(reddit)
    with pytest.raises(AuthError) as refused:
        await c.poll_once(None)
    assert "403" in str(refused.value) and "/r/acme+acmehelp/new" in str(refused.value)
    assert "private" in str(refused.value) and "credentials" not in str(refused.value)
    await c.close()


async def test_streams_resume_by_fullname_across_a_restart_without_loss_or_repeats(reddit):
    store, published, stop = MemoryCursorStore(), [], asyncio.Event()

    async def publish(batch):
        published.extend(m.external_id for m in batch)

    async def until(n):
        while len(published) < n:
            await asyncio.sleep(0.01)

    run = asyncio.create_task(run_connector(connector(reddit), publish, store, stop, backoff_base=0.01))
    await asyncio.wait_for(until(5), 10)
    reddit.posts.append(submission(5))
    await asyncio.wait_for(until(6), 10)
    run.cancel()  # killed mid-stream
    await asyncio.gather(run, return_exceptions=True)
    reddit.posts.append(submission(6, sub="acmehelp"))  # while down
    reddit.comments.append(comment(4, link=reddit.posts[-1]["data"]["name"]))
    reddit.hits.append(submission(51, sub="apps", title="acme app refund?"))
    run = asyncio.create_task(run_connector(connector(reddit), publish, store, stop, backoff_base=0.01))
    await asyncio.wait_for(until(9), 10)
    await asyncio.sleep(0.2)  # a few more rounds: nothing repeats
    stop.set()
    await asyncio.wait_for(run, 10)
    assert len(published) == len(set(published)) == 9
    expected = {t["data"]["name"] for t in reddit.posts + reddit.comments + reddit.hits
                if t["data"]["subreddit"] != "elsewhere"}
    assert set(published) == expected


async def test_a_busy_community_is_published_round_by_round(reddit):
    """Every listing request finds new things: each round still reads one listing per stream, the
    keyword search and the re-check, and yields its batch (asyncpraw's ``pause_after=0`` pauses
    only after a request that found nothing new, so such a round never ended)."""
    reddit.busy = 3
    c = connector(reddit)
    rounds = c.stream(None)
    batch, cursor = await asyncio.wait_for(rounds.__anext__(), 5)
    names = [m.external_id for m in batch]
    assert {p["data"]["name"] for p in reddit.posts if p["data"]["subreddit"] != "elsewhere"} <= set(names)
    assert {x["data"]["name"] for x in reddit.comments} <= set(names)  # the comment stream was read too ...
    assert reddit.hits[0]["data"]["name"] in names  # ... and the keyword search
    state = json.loads(cursor)
    assert state["t3"] == reddit.posts[-1]["data"]["name"] and state["t1"] == reddit.comments[-1]["data"]["name"]
    again, cursor = await asyncio.wait_for(rounds.__anext__(), 5)  # the next round: the things posted since
    assert [m.external_id for m in again if m.kind == "post"] == [p["data"]["name"] for p in reddit.posts[-3:]]
    assert json.loads(cursor)["t3"] == reddit.posts[-1]["data"]["name"] and not set(names) & {
        m.external_id for m in again}
    await rounds.aclose()


async def test_credentials_and_rate_limits_are_classified(reddit):
    with pytest.raises(AuthError):
        await connector(reddit, reddit_client_secret="wrong").poll_once(None)
    with pytest.raises(AuthError):
        await connector(reddit, reddit_password="wrong").poll_once(None)
    c = connector(reddit)
    reddit.fail_next = [(429, {"retry-after": "7"})]
    with pytest.raises(RateLimited) as rl:
        await c.poll_once(None)
    assert rl.value.retry_after == 7
    reddit.fail_next = [(503, {})] * 3  # asyncprawcore retries twice itself, then gives up
    with pytest.raises(TransientError):
        await c.poll_once(None)
    check = await connector(reddit, reddit_client_secret="wrong").check()
    assert not check["ok"] and "refused" in check["error"]
    good = await c.check()
    assert good["ok"] and good["account"] == "acme_support"
    assert good["listens_to"] == 'r/acme, r/acmehelp, search "acme app"'  # as an operator reads it, not a repr
    await c.close()


async def test_replies_private_messages_and_moderator_actions(reddit):
    c = connector(reddit)
    post = reddit.posts[0]["data"]["name"]
    r = await c.perform(Action(kind="public_reply", platform="reddit", target_external_id=post, text="We're on it"))
    assert r.ok and r.external_ids[0].startswith("t1_")
    assert reddit.writes[-1][0] == "comment" and reddit.writes[-1][1]["thing_id"] == post
    pm = await c.perform(Action(kind="private_message", platform="reddit", recipient_handle="u/jane_doe",
                                text="Your secure link", reason="Your account"))
    assert pm.ok and reddit.writes[-1][0] == "compose" and reddit.writes[-1][1]["to"] == "jane_doe"
    target = reddit.comments[0]["data"]["name"]
    for kind in ("remove", "approve", "lock", "distinguish"):
        assert (await c.perform(Action(kind=kind, platform="reddit", target_external_id=target))).ok
        assert reddit.writes[-1][0] == kind and reddit.writes[-1][1]["id"] == target
    assert reddit.writes[-1][1]["how"] == "yes"
    removed = await c.perform(Action(kind="hide", platform="reddit", target_external_id=post, reason="doxxing"))
    assert removed.ok and [w[0] for w in reddit.writes[-2:]] == ["remove", "removal_reason"]
    assert reddit.writes[-2][1]["spam"].lower() == "false"
    bad = await c.perform(Action(kind="lock", platform="reddit", target_external_id="t5_nope"))
    assert not bad.ok
    await c.close()
