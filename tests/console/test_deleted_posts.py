"""Posts deleted on their platform, as the care team sees them: out of the queue (back when the
platform shows them again), marked "deleted on <platform>" in the console and ``deleted`` in the API,
and never answered in public, by an agent, a bot, or a reply queued before the deletion."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from listener.ingest import ingest_batch
from listener.protocol import ActionResult, NormalizedMention
from models import AuditEvent, Conversation, Mention, Reply
from service.dispatch import Dispatcher
from tests.console.conftest import add_mention, bot_token, login

DELETED_ON_X = "the post was deleted on X: a public reply cannot be posted to it; reply privately"


async def on_platform(runtime, mention: Mention, event: str) -> None:
    """The connector reports the post deleted (``delete``) or shown again (``restore``), through ingest."""
    async with runtime.db.session() as s:
        conv = await s.get(Conversation, mention.conversation_id)
        await ingest_batch(s, [NormalizedMention(
            platform=mention.platform, external_id=mention.external_id, text=mention.text,
            created_at=mention.created_at, conversation_id=conv.thread_key.split(":", 1)[1], event=event)])
        await s.commit()


def conv_order(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'data-conversation-id="(\d+)"', html)]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_deleted_post_leaves_the_queue_and_comes_back_when_its_platform_shows_it_again(app_client, runtime):
    now = datetime.now(UTC)
    gone = await add_mention(runtime, "charged twice!!", priority=90, created_at=now - timedelta(hours=3))
    other = await add_mention(runtime, "app is slow", priority=40)
    await login(app_client, "alice")
    h = bearer(await bot_token(runtime, "alice", ["mentions:read"]))
    assert conv_order(await (await app_client.get("/queue")).text())[0] == gone.conversation_id

    await on_platform(runtime, gone, "delete")
    for path in ("/queue", "/queue/rows"):  # the page and its live refresh
        assert conv_order(await (await app_client.get(path)).text()) == [other.conversation_id]
    api = await (await app_client.get("/api/v1/queue", headers=h)).json()
    assert [i["mention_id"] for i in api["items"]] == [other.id]

    await on_platform(runtime, gone, "restore")
    assert conv_order(await (await app_client.get("/queue")).text()) == [gone.conversation_id, other.conversation_id]
    api = await (await app_client.get("/api/v1/queue", headers=h)).json()
    assert api["items"][0]["mention_id"] == gone.id and api["items"][0]["overdue"] is True  # its clock as before


async def test_an_open_queue_page_hears_of_a_deletion_as_the_ingest_stage_applies_it(app_client, runtime):
    """The ingest stage tells the console's live pages (server-sent events), as it does of new posts,
    so an agent's open queue drops the post without a reload."""
    from console.events import EVENTS
    from service.bus import Envelope
    from service.pipeline import ingest_key
    from service.stages.base import StageContext
    from service.stages.ingest import IngestStage

    gone = await add_mention(runtime, "charged twice!!")
    await login(app_client, "alice")
    stream = await app_client.get("/queue/events")
    await stream.content.readuntil(b"\n\n")  # connected
    async with runtime.db.session() as s:
        thread = (await s.get(Conversation, gone.conversation_id)).thread_key.split(":", 1)[1]
    deletion = NormalizedMention(platform=gone.platform, external_id=gone.external_id, text="",
                                 created_at=gone.created_at, conversation_id=thread, event="delete")
    stage = IngestStage(StageContext(settings=None, db=runtime.db, events=app_client.server.app[EVENTS]))
    assert await stage.handle([Envelope(id="1", topic="ingest", key=ingest_key(deletion),
                                        payload={"mention": deletion.to_dict()})]) == []  # nothing to triage
    event = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 5)
    lines = dict(line.split(": ", 1) for line in event.decode().strip().splitlines())
    assert lines["event"] == "deleted" and json.loads(lines["data"])["ids"] == [gone.id]
    stream.close()


async def test_a_conversation_stays_in_the_queue_with_its_posts_still_waiting(runtime):
    from console.queue_data import queue_items

    now = datetime.now(UTC)
    first = await add_mention(runtime, "refund please", priority=85, created_at=now - timedelta(hours=2))
    later = await add_mention(runtime, "also, the app logs me out", priority=45, conversation_id=first.conversation_id,
                              created_at=now - timedelta(minutes=10))
    await on_platform(runtime, first, "delete")
    async with runtime.db.session() as s:
        [item] = await queue_items(s)
    # it shows the post still there, counts only it, and its deadline runs from it
    assert (item.conversation_id, item.mention_id, item.waiting) == (first.conversation_id, later.id, 1)
    assert item.text == "also, the app logs me out" and not item.overdue


async def test_the_conversation_marks_a_deleted_post_and_offers_a_private_message(app_client, runtime):
    kept = await add_mention(runtime, "my order is late", handle="nia")
    gone = await add_mention(runtime, "and I was charged twice", handle="nia", conversation_id=kept.conversation_id,
                             created_at=datetime.now(UTC) - timedelta(minutes=1))
    await on_platform(runtime, gone, "delete")  # a deletion hides the post too: it reads "deleted", not "hidden"
    await login(app_client, "alice")
    page = await (await app_client.get(f"/conversations/{kept.conversation_id}")).text()
    post = re.search(rf'<article class="mention[^"]*" data-mention-id="{gone.id}">.*?</article>', page, re.DOTALL)
    assert "deleted on X" in post.group(0) and "hidden" not in post.group(0)
    assert 'name="note"' not in post.group(0)  # nothing left to report to the moderators
    assert f'<option value="{kept.id}" selected>' in page  # the reply goes to the post still there
    assert re.search(rf'<option value="{gone.id}" >#{gone.id} \(deleted on X\) nia', page)

    page = await (await app_client.get(f"/conversations/{kept.conversation_id}?mention={gone.id}")).text()
    assert '<option value="private" selected>' in page and "a public reply is refused" in page


async def test_an_erased_post_reads_as_erased_not_as_deleted_on_its_platform(app_client, runtime):
    from service.erasure import Subject, erase

    m = await add_mention(runtime, "I am Dora Vale, call me", handle="dora_v")
    await erase(runtime.db, Subject(platform="x", handle="dora_v"), actor="dpo", reason="privacy request")
    await login(app_client, "alice")
    page = await (await app_client.get(f"/conversations/{m.conversation_id}")).text()
    assert "[erased]" in page and "deleted on" not in page
    assert "deleted on" not in await (await app_client.get("/mentions")).text()
    h = bearer(await bot_token(runtime, "alice", ["mentions:read"]))
    one = await (await app_client.get(f"/api/v1/mentions/{m.id}", headers=h)).json()
    assert (one["text"], one["deleted"], one["hidden"]) == ("[erased]", True, False)


async def test_the_mentions_list_and_the_api_say_deleted_and_keep_hidden_as_it_was(app_client, runtime):
    deleted = await add_mention(runtime, "never mind, sorted", platform="reddit", handle="rex")
    hidden = await add_mention(runtime, "buy followers here", handle="spam_sam")
    await on_platform(runtime, deleted, "delete")
    async with runtime.db.session() as s:
        (await s.get(Mention, hidden.id)).hidden = True  # our moderation hid it; it is still on X
        await s.commit()
    await login(app_client, "alice")
    page = await (await app_client.get("/mentions")).text()
    row = {int(i): r for i, r in re.findall(r'<tr data-mention-id="(\d+)"(.*?)</tr>', page, re.DOTALL)}
    assert "(deleted on Reddit)" in row[deleted.id] and "hidden" not in row[deleted.id]
    assert "(hidden)" in row[hidden.id] and "deleted" not in row[hidden.id]

    h = bearer(await bot_token(runtime, "alice", ["mentions:read"]))
    listed = {m["id"]: m for m in (await (await app_client.get("/api/v1/mentions", headers=h)).json())["mentions"]}
    assert (listed[deleted.id]["deleted"], listed[deleted.id]["hidden"]) == (True, True)
    assert (listed[hidden.id]["deleted"], listed[hidden.id]["hidden"]) == (False, True)
    one = await (await app_client.get(f"/api/v1/mentions/{deleted.id}", headers=h)).json()
    assert one["deleted"] is True
    await on_platform(runtime, deleted, "restore")
    one = await (await app_client.get(f"/api/v1/mentions/{deleted.id}", headers=h)).json()
    assert (one["deleted"], one["hidden"]) == (False, False)
    doc = await (await app_client.get("/api/openapi.json")).json()
    for name in ("Mention", "MentionSummary"):
        schema = doc["components"]["schemas"][name]
        assert "deleted" in schema["required"] and schema["properties"]["deleted"]["type"] == "boolean"


async def test_an_agent_cannot_reply_in_public_to_a_deleted_post_but_can_in_private(app_client, runtime):
    m = await add_mention(runtime, "where is my refund", handle="pat")
    await on_platform(runtime, m, "delete")
    cid = m.conversation_id
    csrf = await login(app_client, "alice")
    form = {"csrf_token": csrf, "text": "Hi Pat, refunded today.", "mention_id": str(m.id), "seen_reply_id": "0",
            "draft_id": "dead1", "visibility": "public", "public_anyway": "1"}
    r = await app_client.post(f"/conversations/{cid}/reply", data=form, allow_redirects=False)
    page = await r.text()
    assert r.status == 422 and f"Not sent: {DELETED_ON_X}." in page
    assert "Hi Pat, refunded today.</textarea>" in page  # the draft is kept
    assert 'name="public_anyway"' not in page  # no override: the platform would refuse it anyway
    r = await app_client.post(f"/conversations/{cid}/reply", data={**form, "visibility": "private"},
                              allow_redirects=False)
    assert r.status == 302
    async with runtime.db.session() as s:
        rows = (await s.scalars(select(Reply).where(Reply.conversation_id == cid))).all()
    assert [(row.visibility, row.status) for row in rows] == [("private", "dry_run")]


async def test_a_bot_gets_422_for_a_public_reply_to_a_deleted_post_and_may_reply_privately(app_client, runtime):
    m = await add_mention(runtime, "how do I export my data?", handle="quin")
    await on_platform(runtime, m, "delete")
    h = bearer(await bot_token(runtime, "alice", ["replies:write"]))
    url = f"/api/v1/mentions/{m.id}/replies"
    r = await app_client.post(url, json={"text": "Settings → Export."}, headers=h)
    assert r.status == 422 and (await r.json())["error"]["message"] == DELETED_ON_X
    r = await app_client.post(url, json={"text": "Settings → Export.", "visibility": "private"}, headers=h)
    assert r.status == 201 and (await r.json())["reply"]["visibility"] == "private"


class FakeX:
    platform = "x"

    def __init__(self) -> None:
        self.calls = []

    async def perform(self, action):
        self.calls.append(action)
        return ActionResult(ok=True, external_ids=["r1"])


async def queued_replies(runtime, m: Mention) -> tuple[int, int]:
    """A public and a private reply, queued (committed ``pending``) while the post was still up."""
    async with runtime.db.session() as s:
        rows = [Reply(dedup_key=f"t:{m.id}:{v}", mention_id=m.id, conversation_id=m.conversation_id, platform="x",
                      visibility=v, kind="agent", text="Refunded today.", status="pending", sent_by="session:alice")
                for v in ("public", "private")]
        s.add_all(rows)
        await s.commit()
        return rows[0].id, rows[1].id


@pytest.mark.parametrize("dry_run", [False, True])
async def test_a_public_reply_queued_before_the_deletion_is_cancelled_not_sent(runtime, dry_run):
    m = await add_mention(runtime, "charged twice", handle="ray")
    public, private = await queued_replies(runtime, m)
    await on_platform(runtime, m, "delete")
    x = FakeX()
    await Dispatcher(runtime.db, {"x": x}, dry_run=dry_run).deliver([public, private])
    async with runtime.db.session() as s:
        pub, priv = await s.get(Reply, public), await s.get(Reply, private)
        audit = (await s.scalars(select(AuditEvent).where(AuditEvent.action == "reply.cancelled"))).all()
    assert (pub.status, pub.error, pub.text) == ("cancelled", DELETED_ON_X, "Refunded today.")
    assert priv.status == ("dry_run" if dry_run else "sent")  # a private message still reaches the author
    assert [a.kind for a in x.calls] == ([] if dry_run else ["private_message"])
    assert [(a.object_id, a.details["cancelled"]) for a in audit] == [(str(public), "deleted")]


async def test_a_bot_cannot_moderate_or_report_a_deleted_post_but_may_still_ban_its_author(app_client, runtime):
    """hide, remove, approve... act on the post, which the platform no longer has: 409, nothing recorded
    or sent; a report would hold it for moderators whose queue no longer shows it. A ban is the author's."""
    from models import ModerationAction

    gone = await add_mention(runtime, "spam spam spam")
    await on_platform(runtime, gone, "delete")
    h = bearer(await bot_token(runtime, "mod", ["actions:write"]))
    for action in ("hide", "unhide", "remove", "approve", "lock", "report"):
        r = await app_client.post(f"/api/v1/mentions/{gone.id}/actions", headers=h,
                                  json={"action": action, "reason": "spam"})
        assert r.status == 409, action
        assert (await r.json())["error"]["message"].startswith("the post was deleted on X: nothing can be done")
    async with runtime.db.session() as s:
        assert (await s.scalars(select(ModerationAction).where(ModerationAction.mention_id == gone.id))).all() == []
    r = await app_client.post(f"/api/v1/mentions/{gone.id}/actions", headers=h, json={"action": "ban", "reason": "spam"})
    assert r.status == 200 and (await r.json())["status"] in ("done", "dry_run")


async def test_an_agent_cannot_report_a_deleted_post_and_a_held_one_is_no_longer_said_to_wait(app_client, runtime):
    """A page read before the deletion: the report would be a hold in a queue that no longer shows the
    post. And a post held before its deletion is not "waiting for review" any more."""
    from community import moderation
    from models import ModerationAction

    gone = await add_mention(runtime, "you are all useless idiots")
    async with runtime.db.session() as s:
        await moderation.report(s, await s.get(Mention, gone.id), "agent:bob", "abusive")
        await s.commit()
    csrf = await login(app_client, "alice")
    page = await (await app_client.get(f"/conversations/{gone.conversation_id}")).text()
    assert "Held for the moderators" in page
    await on_platform(runtime, gone, "delete")
    page = await (await app_client.get(f"/conversations/{gone.conversation_id}")).text()
    assert "Held for the moderators" not in page
    r = await app_client.post(f"/conversations/{gone.conversation_id}/report",
                              data={"csrf_token": csrf, "mention_id": str(gone.id), "note": "threat"})
    assert r.status == 409 and "Not reported: the post was deleted on X" in await r.text()
    async with runtime.db.session() as s:
        holds = (await s.scalars(select(ModerationAction).where(ModerationAction.mention_id == gone.id))).all()
    assert len(holds) == 1  # the one from before


async def test_a_bot_reporting_an_erased_post_gets_410_and_no_hold(app_client, runtime):
    from models import ModerationAction
    from service.privacy import erase_posts

    m = await add_mention(runtime, "my card 4111 1111 1111 1111 was charged twice")
    async with runtime.db.session() as s:
        from collections import Counter

        await erase_posts(s, [m.id], Counter())
        await s.commit()
    h = bearer(await bot_token(runtime, "mod", ["actions:write"]))
    r = await app_client.post(f"/api/v1/mentions/{m.id}/actions", headers=h, json={"action": "report", "reason": "x"})
    assert r.status == 410
    async with runtime.db.session() as s:
        assert (await s.scalars(select(ModerationAction).where(ModerationAction.mention_id == m.id))).all() == []
