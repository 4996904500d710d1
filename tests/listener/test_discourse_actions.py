"""Discourse moderation actions against a fake forum that refuses what Discourse's guardian refuses
(a 403 for a flag of a hidden post or of one the API user flagged before, an unhide of a shown post,
a ``DELETE /posts`` of a topic's first post; a 422 for a topic deleted already): each action sets a
state, so doing it again is done; a first post goes with its topic; ``lock`` closes the topic to
replies; and a refusal for the post's state is reported in Discourse's words, never as a bad key."""

from __future__ import annotations

import json

import pytest

from listener.discourse.connector import DiscourseConnector
from listener.protocol import Action
from service.settings import load_settings

from .fakes import serve
from .fakes.discourse import API_KEY, FakeDiscourse, post


@pytest.fixture
async def forum():
    fake = FakeDiscourse(posts=[post(200, topic_id=70, raw="BUY CHEAP WATCHES at t.me/watches"),
                                post(201, topic_id=71, raw="I was charged twice for my order"),
                                post(202, topic_id=71, number=2, reply_to=1, raw="same here", username="bob", user_id=18)])
    server = await serve(fake)
    yield fake
    await server.close()


def connector(fake, made, key=API_KEY) -> DiscourseConnector:
    c = DiscourseConnector(load_settings(discourse_url=fake.base, discourse_api_key=key,
                                         discourse_api_username="acme_support"))
    made.append(c)
    return c


def act(kind: str, target: str) -> Action:
    return Action(kind=kind, platform="discourse", target_external_id=target)


def done(fake) -> list[tuple[str, str]]:
    return [a[:2] for a in fake.actions]


async def test_hide_and_unhide_set_a_state_and_doing_either_again_is_done(forum, made):
    c = connector(forum, made)
    assert (await c.perform(act("hide", "71/2"))).ok and forum.find(71, 2)["hidden"]
    again = await c.perform(act("hide", "71/2"))  # a requeue after a crash, a second rule
    assert again.ok and again.external_ids == ["71/2"]  # hidden already: no flag (Discourse: 403)
    assert (await c.perform(act("unhide", "71/2"))).ok and not forum.find(71, 2)["hidden"]
    assert (await c.perform(act("unhide", "71/2"))).ok  # shown already (Discourse: 403)
    assert (await c.perform(act("unhide", "71/1"))).ok  # never hidden
    assert done(forum) == [("flag", "202"), ("unhide", "202")]


async def test_a_refusal_for_the_posts_state_is_reported_in_discourses_words_not_as_the_key(forum, made):
    c = connector(forum, made)
    for kind in ("hide", "unhide"):
        assert (await c.perform(act(kind, "71/2"))).ok
    refused = await c.perform(act("hide", "71/2"))  # Discourse takes one flag a post from a user
    assert not refused.ok and not forum.find(71, 2)["hidden"]
    assert refused.error.startswith("Discourse answered 403 Forbidden on /post_actions.json: ")
    assert "already performed that action" in refused.error and "API key" not in refused.error
    forum.fail_on["PUT /posts/{id}/unhide"] = [(403, {}, '{"errors": ["You are not permitted to view the '
                                                         'requested resource."], "error_type": "invalid_access"}')]
    forum.find(71, 1)["hidden"] = True
    other = await c.perform(act("unhide", "71/1"))  # the API user's rights, say: still not the key
    assert not other.ok and other.error == ("Discourse answered 403 Forbidden (invalid_access) on /posts/201/unhide: "
                                            "You are not permitted to view the requested resource.")
    wrong = await connector(forum, made, key="wrong").perform(act("unhide", "71/1"))
    assert not wrong.ok and wrong.error == "Discourse refused the API key (403) on /session/current.json"


async def test_a_hide_that_raced_another_is_done(forum, made):
    """Hidden by someone else between our read and our flag: Discourse refuses the flag (403), and the
    post, read again, is hidden: done."""
    c = connector(forum, made)
    target = forum.find(71, 2)
    stale = json.dumps({**target, "hidden": False})
    target["hidden"] = True
    forum.fail_on["GET /posts/by_number/{topic}/{number}.json"] = [(200, {}, stale)]  # our first read
    r = await c.perform(act("hide", "71/2"))
    assert r.ok and forum.actions == [] and forum.requests.count("/posts/by_number/71/2.json") == 2


async def test_a_first_post_is_removed_with_its_topic_and_removing_again_is_done(forum, made):
    c = connector(forum, made)
    assert (await c.perform(act("remove", "70/1"))).ok  # DELETE /posts/200 would be a 403
    assert done(forum) == [("delete_topic", "70")] and 70 in forum.deleted_topics
    assert (await c.perform(act("remove", "70/1"))).ok  # deleted already (Discourse: 422)
    assert (await c.perform(act("remove", "71/2"))).ok and (await c.perform(act("remove", "71/2"))).ok
    assert done(forum) == [("delete_topic", "70"), ("delete", "202")]


async def test_taking_back_our_own_private_message_deletes_the_topic_it_started(forum, made):
    c = connector(forum, made)
    pm = await c.perform(Action(kind="private_message", platform="discourse", recipient_handle="jane_doe",
                                text="Here is your secure link"))
    (key,) = pm.external_ids
    topic, number = key.split("/")
    assert number == "1"
    r = await c.perform(Action(kind="delete_reply", platform="discourse", target_external_id=key))
    assert r.ok and done(forum) == [("delete_topic", topic)] and int(topic) in forum.deleted_topics


async def test_lock_closes_the_topic_to_replies_not_the_post_to_edits(forum, made):
    c = connector(forum, made)
    r = await c.perform(act("lock", "71/2"))
    assert r.ok and r.external_ids == ["71/2"] and forum.closed == {71}
    assert forum.actions == [("status", "71", {"status": "closed", "enabled": "true"})]  # no PUT /posts/202/locked
    assert (await c.perform(act("lock", "71/1"))).ok and forum.closed == {71}  # closed already: nothing changes
    forum.destroy_topic(70)
    gone = await c.perform(act("lock", "70/1"))
    assert not gone.ok and "403" in gone.error and "/t/70/status" in gone.error and "API key" not in gone.error
