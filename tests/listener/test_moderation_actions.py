"""The platform side of the moderation queue's "ban" and of taking back a bot reply: Reddit bans
from the post's subreddit, Discourse suspends, X blocks (Enterprise plan only, else an honest
failure); each connector deletes its own replies. Real clients against the local fakes, then the
queue's own ``execute`` end to end."""

from __future__ import annotations

import pytest

from community import moderation
from listener.discourse.connector import DiscourseConnector
from listener.ingest import ingest_batch
from listener.protocol import Action
from listener.reddit.connector import RedditConnector
from listener.reddit.normalize import thing_to_mention
from listener.x.connector import XConnector
from listener.x.normalize import page_to_mentions
from models import Mention, ModerationAction
from service.settings import load_settings

from .fakes import serve
from .fakes.discourse import API_KEY, FakeDiscourse, post
from .fakes.reddit import CLIENT_ID, CLIENT_SECRET, PASSWORD, FakeReddit, comment, submission
from .fakes.x_api import FakeX, tweet, user


@pytest.fixture
async def reddit():
    fake = FakeReddit(posts=[submission(1), submission(2, sub="elsewhere", author="carol")])
    fake.comments = [comment(1, link=fake.posts[0]["data"]["name"]), comment(2, link=fake.posts[0]["data"]["name"],
                                                                              author=None)]
    server = await serve(fake)
    c = RedditConnector(load_settings(
        reddit_client_id=CLIENT_ID, reddit_client_secret=CLIENT_SECRET, reddit_username="acme_support",
        reddit_password=PASSWORD, reddit_subreddits=["acme"], reddit_oauth_url=fake.base, reddit_url=fake.base))
    yield fake, c
    await c.close()
    await server.close()


@pytest.fixture
async def forum():
    fake = FakeDiscourse(posts=[post(100, number=1), post(101, number=2, username="troll", user_id=23),
                                post(102, number=3, username="admin", user_id=1)])
    server = await serve(fake)
    c = DiscourseConnector(load_settings(discourse_url=fake.base, discourse_api_key=API_KEY,
                                         discourse_api_username="acme_support"))
    yield fake, c
    await c.close()
    await server.close()


@pytest.fixture
async def x():
    fake = FakeX(tweets=[tweet(1, author="555")])
    server = await serve(fake)
    c = XConnector(load_settings(x_api_base=fake.base, x_user_id="99", x_api_key="k", x_api_secret="s",
                                 x_access_token="t", x_access_secret="a"))
    yield fake, c
    c.client.session.close()
    await server.close()


# --- each connector, against its fake -------------------------------------------------------------

async def test_reddit_bans_the_author_from_the_posts_own_subreddit(reddit):
    fake, c = reddit
    target = fake.comments[0]["data"]["name"]
    r = await c.perform(Action(kind="ban", platform="reddit", target_external_id=target, reason="Repeated spam"))
    assert r.ok and r.external_ids == ["u/bob"] and fake.banned == {"acme": ["bob"]}
    ((_, form),) = [w for w in fake.writes if w[0] == "friend"]
    assert form["type"] == "banned" and form["ban_reason"] == "Repeated spam" and target in form["note"]
    assert "duration" not in form  # permanent
    elsewhere = await c.perform(Action(kind="ban", platform="reddit",
                                       target_external_id=fake.posts[1]["data"]["name"], reason="spam"))
    assert not elsewhere.ok and "Forbidden" in elsewhere.error  # not a moderator of r/elsewhere
    gone = await c.perform(Action(kind="ban", platform="reddit", target_external_id=fake.comments[1]["data"]["name"]))
    assert not gone.ok and "deleted" in gone.error
    nobody = await c.perform(Action(kind="ban", platform="reddit", target_external_id=target,
                                    recipient_handle="u/no_such_user"))
    assert not nobody.ok and "USER_DOESNT_EXIST" in nobody.error
    unknown = await c.perform(Action(kind="ban", platform="reddit", target_external_id="t1_zzzzzzz"))
    assert not unknown.ok and fake.banned == {"acme": ["bob"]}


async def test_reddit_deletes_its_own_reply(reddit):
    fake, c = reddit
    sent = await c.perform(Action(kind="public_reply", platform="reddit",
                                  target_external_id=fake.posts[0]["data"]["name"], text="Fixed now"))
    r = await c.perform(Action(kind="delete_reply", platform="reddit", target_external_id=sent.external_ids[0]))
    assert r.ok and fake.writes[-1][0] == "del" and fake.writes[-1][1]["id"] == sent.external_ids[0]


async def test_discourse_suspends_the_author_and_a_second_ban_is_already_done(forum):
    fake, c = forum
    r = await c.perform(Action(kind="ban", platform="discourse", target_external_id="40/2", reason="Doxxing"))
    assert r.ok and r.external_ids == ["user:23"] and fake.suspended[23]["reason"] == "Doxxing"
    assert fake.suspended[23]["suspend_until"] > "2999"  # "forever", as Discourse's own UI means it
    again = await c.perform(Action(kind="ban", platform="discourse", recipient_id="23", reason="Doxxing"))
    assert again.ok  # 409 "already suspended": the user cannot post either way
    staff = await c.perform(Action(kind="ban", platform="discourse", target_external_id="40/3", reason="x"))
    assert not staff.ok and "403" in staff.error and 1 not in fake.suspended
    fake.admin_key = False
    other = await c.perform(Action(kind="ban", platform="discourse", recipient_id="17", reason="x"))
    assert not other.ok and "403" in other.error


async def test_discourse_deletes_its_own_reply(forum):
    fake, c = forum
    r = await c.perform(Action(kind="delete_reply", platform="discourse", target_external_id="40/2"))
    assert r.ok and fake.actions[-1] == ("delete", "101", None)
    missing = await c.perform(Action(kind="delete_reply", platform="discourse", target_external_id="40/9"))
    assert not missing.ok and "404" in missing.error


async def test_x_blocks_on_the_enterprise_plan_and_says_why_not_elsewhere(x):
    fake, c = x
    r = await c.perform(Action(kind="block", platform="x", target_external_id=fake.tweets[0]["id"],
                               recipient_id="555"))
    assert r.ok and fake.blocked == ["555"]
    assert any(req.startswith("/2/users/99/blocking") for req in fake.requests)  # as the brand account
    fake.enterprise = False
    refused = await c.perform(Action(kind="block", platform="x", recipient_id="556"))
    assert not refused.ok and "Enterprise" in refused.error and fake.blocked == ["555"]
    assert not (await c.perform(Action(kind="block", platform="x"))).ok  # no user id: nothing to block


async def test_x_deletes_its_own_reply(x):
    fake, c = x
    r = await c.perform(Action(kind="delete_reply", platform="x", target_external_id="1900000000000000001"))
    assert r.ok and fake.deleted == ["1900000000000000001"]


# --- the moderation queue's "ban", end to end -------------------------------------------------------

async def banned_through_the_queue(db, mention, connector) -> ModerationAction:
    async with db.session() as s:
        (res,) = await ingest_batch(s, [mention])
        row = await moderation.add_action(s, f"test:ban:{mention.platform}:{mention.external_id}", await s.get(Mention, res.mention_id),
                                          "ban", "Repeated spam", rule=None, actor="session:mod")
        await s.commit()
        assert row.status == "queued"
        action_id = row.id
    await moderation.execute(db, {mention.platform: connector}, [action_id], dry_run=False)
    async with db.session() as s:
        return await s.get(ModerationAction, action_id)


async def test_a_moderators_ban_reaches_reddit(db, reddit):
    fake, c = reddit
    thing = (await c.reddit.comment(id=fake.comments[0]["data"]["id"]))
    row = await banned_through_the_queue(db, thing_to_mention(thing, fake.base), c)
    assert row.status == "done" and fake.banned == {"acme": ["bob"]}


async def test_a_moderators_ban_reaches_discourse(db, forum):
    from listener.discourse.normalize import post_to_mention

    fake, c = forum
    row = await banned_through_the_queue(db, post_to_mention(fake.posts[1], fake.base), c)
    assert row.status == "done" and 23 in fake.suspended


async def test_a_moderators_ban_on_x_blocks_or_fails_with_the_reason(db, x):
    fake, c = x
    (m,) = page_to_mentions({"data": fake.tweets, "includes": {"users": [user("555")]}})
    assert moderation.platform_kind("x", "ban") == "block"
    fake.enterprise = False
    row = await banned_through_the_queue(db, m, c)
    assert row.status == "failed" and "Enterprise" in row.details["error"]
    fake.enterprise = True
    m.external_id = "1850000000000000002"  # another post by the same author
    row = await banned_through_the_queue(db, m, c)
    assert row.status == "done" and fake.blocked == ["555"]
