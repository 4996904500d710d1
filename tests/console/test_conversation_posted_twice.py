"""A reply that may be on its platform twice (an attempt given up for dead posted after all besides the
one sent again: audited ``reply.posted_twice``, service.stranded) says so on the conversation, where
the agent works: both copies' platform ids, linked where an address follows from the id, so that the
agent can delete one copy there. Other replies, and other conversations, say nothing of it."""

from __future__ import annotations

import re
import uuid

import pytest

from console.conversation import reply_link
from console.posted_ids import posted_id
from models import Reply
from service.audit import record
from tests.console.conftest import add_mention, login

NOTICE = "twice</strong>"


async def sent_reply(runtime, m, *, ids: list[str], platform: str | None = None, visibility: str = "public",
                     text: str = "Hi, refunded today.") -> int:
    async with runtime.db.session() as s:
        r = Reply(dedup_key=f"t:{uuid.uuid4().hex}", mention_id=m.id, conversation_id=m.conversation_id,
                  platform=platform or m.platform, visibility=visibility, kind="agent", text=text, status="sent",
                  external_ids=ids, sent_by="session:alice", send_attempt=3)
        s.add(r)
        await s.commit()
        return r.id


async def audit_twice(runtime, reply_id: int, m, stale: list[str], current: list[str]) -> None:
    async with runtime.db.session() as s:  # as service.stranded records it: ids only
        record(s, "system", "reply.posted_twice", "reply", reply_id, mention_id=m.id, kind="agent", attempt=3,
               external_ids=current, stale_external_ids=stale)
        await s.commit()


def article(html: str, reply_id: int) -> str:
    match = re.search(rf'<article class="reply[^"]*" data-reply-id="{reply_id}">(.*?)</article>', html, re.DOTALL)
    assert match, f"reply {reply_id} not on the page"
    return match.group(1)


async def test_a_reply_posted_twice_shows_both_tweets_linked_for_the_agent(app_client, runtime):
    m = await add_mention(runtime, "charged twice?", handle="pat")
    twice = await sent_reply(runtime, m, ids=["2002"])
    once = await sent_reply(runtime, m, ids=["3003"], text="Anything else?")
    await audit_twice(runtime, twice, m, ["1001"], ["2002"])
    other = await add_mention(runtime, "and me?", handle="sam")  # another conversation's reply posted twice
    elsewhere = await sent_reply(runtime, other, ids=["5005"])
    await audit_twice(runtime, elsewhere, other, ["4004"], ["5005"])
    await login(app_client, "alice")
    r = await app_client.get(f"/conversations/{m.conversation_id}")
    assert r.status == 200
    html = await r.text()
    shown = article(html, twice)
    assert "May be on X twice" in shown and "delete one copy there" in shown
    assert 'href="https://x.com/i/web/status/1001"' in shown and 'href="https://x.com/i/web/status/2002"' in shown
    assert shown.index("1001") < shown.index("2002")  # the earlier attempt's copy first
    assert "the earlier attempt&#39;s copy" in shown and "the copy sent again" in shown
    assert f'href="{m.url}"' in shown  # the post both answer
    assert NOTICE not in article(html, once)
    assert "4004" not in html and "5005" not in html


async def test_without_an_address_the_ids_are_shown_as_they_are(app_client, runtime):
    """A Reddit private message has no id to link, a post without a web address none to build on."""
    m = await add_mention(runtime, "my order?", platform="reddit", handle="ola")
    dm = await sent_reply(runtime, m, ids=["dm-2"], visibility="private")
    await audit_twice(runtime, dm, m, ["dm-1"], ["dm-2"])
    await login(app_client, "alice")
    shown = article(await (await app_client.get(f"/conversations/{m.conversation_id}")).text(), dm)
    assert "May be on Reddit twice" in shown and "sent after all" in shown
    assert "<code>dm-1</code>" in shown and "<code>dm-2</code>" in shown and "href=\"https://www.reddit" not in shown


async def test_a_moderator_reading_the_thread_sees_the_notice_without_the_agents_instruction(app_client, runtime):
    from sqlalchemy import update

    from models import Mention, ModerationAction

    m = await add_mention(runtime, "spam and a question", handle="quin")
    twice = await sent_reply(runtime, m, ids=["2002"])
    await audit_twice(runtime, twice, m, ["1001"], ["2002"])
    async with runtime.db.session() as s:  # on the moderation page: a moderator may read the thread
        s.add(ModerationAction(dedup_key=f"hold:{m.id}", mention_id=m.id, action="hold", rule="spam", reason="spam",
                               status="pending"))
        await s.execute(update(Mention).where(Mention.id == m.id).values(hidden=True))
        await s.commit()
    await login(app_client, "mod")
    r = await app_client.get(f"/conversations/{m.conversation_id}")
    assert r.status == 200
    shown = article(await r.text(), twice)
    assert "May be on X twice" in shown and "delete one copy" not in shown
    assert 'href="https://x.com/i/web/status/1001"' in shown


@pytest.mark.parametrize("platform, post_url, external_id, expected", [
    ("x", "https://x.com/pat/status/1", "1790000000000000001", "https://x.com/i/web/status/1790000000000000001"),
    ("reddit", "https://www.reddit.com/r/acme/comments/abc123/my_order/", "t1_def456",
     "https://www.reddit.com/r/acme/comments/abc123/_/def456/"),
    ("reddit", "https://www.reddit.com/r/acme/comments/abc123/my_order/xyz789/", "t1_def456",
     "https://www.reddit.com/r/acme/comments/abc123/_/def456/"),
    ("discourse", "https://forum.example/t/broken-login/42/3", "42/7", "https://forum.example/t/-/42/7"),
])
def test_a_reply_link_reads_back_as_the_id_it_was_built_from(platform, post_url, external_id, expected):
    """Each link is an address the console itself reads as that reply's id (console.posted_ids)."""
    assert reply_link(platform, "public", external_id, post_url) == expected
    assert posted_id(platform, expected, post_url=post_url) == external_id


def test_a_forum_under_a_path_keeps_its_path():
    assert reply_link("discourse", "public", "42/7", "https://example.com/community/t/broken-login/42/3") == \
        "https://example.com/community/t/-/42/7"


@pytest.mark.parametrize("platform, visibility, post_url, external_id", [
    ("x", "private", None, "1790000000000000001"),  # a direct message: no public address
    ("x", "public", None, "not-a-tweet"),
    ("reddit", "public", None, "t1_def456"),  # no post address to build on
    ("reddit", "public", "https://www.reddit.com/r/acme/comments/abc123/x/", "u/someone"),
    ("discourse", "public", "javascript:alert(1)//t/a/1/2", "42/7"),
    ("discourse", "public", "https://forum.example/latest", "42/7"),
    ("discourse", "public", "https://user:pw@forum.example/t/a/42/3", "42/7"),
])
def test_no_link_is_made_up(platform, visibility, post_url, external_id):
    assert reply_link(platform, visibility, external_id, post_url) is None
