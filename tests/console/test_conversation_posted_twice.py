"""A reply that may be on its platform twice (an attempt given up for dead posted after all besides the
one sent again: audited ``reply.posted_twice``, service.stranded) says so on the conversation, where
the agent works: both copies' platform ids, linked where an address follows from the id, so that the
agent can delete one copy there, or have it deleted from the page; once a copy is gone (or the reply was
taken back) the notice goes. Other replies, and other conversations, say nothing of it."""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest

from console.conversation import reply_link
from console.posted_ids import posted_id
from models import Reply
from service.audit import record
from tests.console import settle_support
from tests.console.conftest import Browser, add_mention, login
from tests.console.settle_support import audited, get, platform

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


# --- one copy gone: deleted by the service, or by the agent on the platform ---------------------------
rt, client = settle_support.rt, settle_support.client  # a console sending to fake platforms, on both databases


@pytest.fixture
async def second_browser(client):
    """Another person's browser on the same server."""
    b = Browser(str(client.make_url("/")).rstrip("/") + "/")
    yield b
    await b.session.close()


async def copies(client, csrf: str, m, reply_id: int, which: str, how: str, **extra):
    return await client.post(f"/conversations/{m.conversation_id}/replies/{reply_id}/copies", allow_redirects=False,
                             data={"csrf_token": csrf, "copy": which, "how": how, **extra})


async def test_the_agent_says_she_deleted_a_copy_and_the_notice_goes(client, rt):
    m = await add_mention(rt, "charged twice?", handle="pat")
    twice = await sent_reply(rt, m, ids=["2002", "1001"])
    await audit_twice(rt, twice, m, ["1001"], ["2002"])
    csrf = await login(client, "alice")
    page = await (await client.get(f"/conversations/{m.conversation_id}")).text()
    assert "I deleted this copy there" in article(page, twice) and "Delete this copy on X" in article(page, twice)
    r = await copies(client, csrf, m, twice, "earlier", "deleted")
    assert r.status in (302, 303)
    page = await (await client.get(r.headers["Location"])).text()
    assert "Recorded as deleted: the earlier attempt copy on X" in page
    assert NOTICE not in article(page, twice)
    assert (await get(rt, Reply, twice)).external_ids == ["2002"]  # a take-back deletes the copy left
    assert platform(rt, "x").calls == []  # nothing done on X: she did it there
    [event] = await audited(rt, "reply.copy_deleted")
    assert (event.actor, event.object_id) == ("session:alice", str(twice))
    assert event.details["copy"] == "earlier" and event.details["external_ids"] == ["1001"]
    assert event.details["deleted_by_us"] is False
    r = await copies(client, csrf, m, twice, "later", "deleted")  # the other one too: no longer out twice
    assert r.status == 409 and len(await audited(rt, "reply.copy_deleted")) == 1


async def test_the_service_deletes_the_copy_asked_and_the_other_stays_the_replys(client, rt):
    m = await add_mention(rt, "charged twice?", handle="pat")
    twice = await sent_reply(rt, m, ids=["2002"])  # an older version kept the later copy's id only
    await audit_twice(rt, twice, m, ["1001"], ["2002"])
    csrf = await login(client, "alice")
    r = await copies(client, csrf, m, twice, "later", "delete")
    assert r.status in (302, 303)
    assert [(a.kind, a.target_external_id) for a in platform(rt, "x").calls] == [("delete_reply", "2002")]
    assert (await get(rt, Reply, twice)).external_ids == ["1001"]
    page = await (await client.get(f"/conversations/{m.conversation_id}")).text()
    assert "Deleted: the sent again copy on X" in page and NOTICE not in article(page, twice)
    [event] = await audited(rt, "reply.copy_deleted")
    assert event.details["deleted_by_us"] is True and event.details["external_ids"] == ["2002"]


async def test_a_taken_back_reply_shows_no_notice(client, rt):
    from sqlalchemy import update

    m = await add_mention(rt, "charged twice?", handle="pat")
    twice = await sent_reply(rt, m, ids=["2002", "1001"])
    await audit_twice(rt, twice, m, ["1001"], ["2002"])
    async with rt.db.session() as s:  # every copy deleted with it (community.replybot.revert_reply)
        await s.execute(update(Reply).where(Reply.id == twice).values(status="deleted"))
        await s.commit()
    await login(client, "alice")
    assert NOTICE not in article(await (await client.get(f"/conversations/{m.conversation_id}")).text(), twice)


async def test_what_the_copy_form_refuses(client, rt, second_browser):
    """Not a moderator's (read-only); not a private message deleted from here; not while another agent
    holds the conversation (deleting or saying a copy is gone acts on it, as sending again does); a
    copy named that is not one."""
    m = await add_mention(rt, "charged twice?", handle="pat")
    twice = await sent_reply(rt, m, ids=["2002", "1001"])
    dm = await sent_reply(rt, m, ids=["dm-2", "dm-1"], visibility="private")
    once = await sent_reply(rt, m, ids=["3003"])
    for reply_id, stale, current in ((twice, "1001", "2002"), (dm, "dm-1", "dm-2")):
        await audit_twice(rt, reply_id, m, [stale], [current])
    csrf = await login(client, "alice")
    assert (await copies(client, csrf, m, twice, "both", "deleted")).status == 400
    assert (await copies(client, csrf, m, twice, "earlier", "undo")).status == 400
    assert (await copies(client, csrf, m, once, "earlier", "deleted")).status == 409  # never out twice
    r = await copies(client, csrf, m, dm, "earlier", "delete")
    assert r.status == 422 and "a private message is not deleted from here" in await r.text()
    page = await (await client.get(f"/conversations/{m.conversation_id}")).text()
    assert "Delete this copy on" not in article(page, dm) and "I deleted this copy there" in article(page, dm)
    bob = await login(second_browser, "bob")
    assert (await second_browser.post(f"/conversations/{m.conversation_id}/claim", data={"csrf_token": bob},
                                      allow_redirects=False)).status == 302
    r = await copies(client, csrf, m, twice, "earlier", "delete")
    assert r.status == 409 and "bob is working on this conversation: nothing was deleted" in await r.text()
    assert platform(rt, "x").calls == []
    r = await copies(client, csrf, m, twice, "earlier", "deleted")  # saying it is gone acts on it too
    assert r.status == 409 and "bob is working on this conversation: nothing was recorded" in await r.text()
    r = await second_browser.post(f"/conversations/{m.conversation_id}/replies/{twice}/copies", allow_redirects=False,
                                  data={"csrf_token": bob, "copy": "earlier", "how": "deleted"})
    assert r.status in (302, 303)  # bob holds it
    mod = await login(second_browser, "mod")
    r = await second_browser.post(f"/conversations/{m.conversation_id}/replies/{dm}/copies", allow_redirects=False,
                                  data={"csrf_token": mod, "copy": "earlier", "how": "deleted"})
    assert r.status == 403 and await audited(rt, "reply.copy_deleted") != [] and \
        len(await audited(rt, "reply.copy_deleted")) == 1


async def test_two_agents_settling_the_two_copies_at_once_never_delete_both(client, rt, second_browser):
    """Each takes the conversation's claim first, atomically: one deletes its copy, the other is told
    who holds the conversation, and the reply stays on X once."""
    m = await add_mention(rt, "charged twice?", handle="pat")
    twice = await sent_reply(rt, m, ids=["2002", "1001"])
    await audit_twice(rt, twice, m, ["1001"], ["2002"])
    x = platform(rt, "x")
    perform = x.perform

    async def slow(action):  # noqa: ANN001, ANN202 - the platform takes its time
        await asyncio.sleep(0.3)
        return await perform(action)

    x.perform = slow
    alice, bob = await login(client, "alice"), await login(second_browser, "bob")
    first, second = await asyncio.gather(
        copies(client, alice, m, twice, "earlier", "delete"),
        second_browser.post(f"/conversations/{m.conversation_id}/replies/{twice}/copies", allow_redirects=False,
                            data={"csrf_token": bob, "copy": "later", "how": "delete"}))
    assert sorted([first.status, second.status]) == [303, 409]
    assert len(x.calls) == 1 and len(await audited(rt, "reply.copy_deleted")) == 1
    reply = await get(rt, Reply, twice)
    assert len(reply.external_ids) == 1 and reply.external_ids[0] != x.calls[0].target_external_id
