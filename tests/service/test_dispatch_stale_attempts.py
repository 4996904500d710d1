"""A reply whose sender was taken for dead (its claim swept ``unknown``) while its platform call was in
fact still under way, then sent again by a person ("It was not posted — send it again", here through
``POST /api/v1/replies/{id}/settle``): when the first call answers after all, its answer is the first
attempt's and never the reply's any more. It overwrites neither the new attempt's status nor its
platform ids, whether it comes before or after the new attempt's own answer, and a late "posted" is
audited with both attempts' platform ids (ids only): the reply may be out twice, and the care team
must know. While the new attempt has not posted — held back before its claim, refused (X refuses a
duplicate), or without an answer — a late "posted" is the reply's: ``sent`` with the first attempt's
ids, never posted a second time nor left reading ``failed``. On SQLite and PostgreSQL, with the
migration that counts the attempts (0016)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import text, update

from listener.protocol import ActionResult
from models import ModerationAction, Reply
from models.base import utcnow
from models.db import Database
from service.dispatch import Dispatcher
from service.stranded import HELD
from tests.console import settle_support
from tests.console.conftest import add_mention, bot_token, login
from tests.console.settle_support import Gated, audited, get

POSTED_FIRST, POSTED_AGAIN = ActionResult(ok=True, external_ids=["1001"]), ActionResult(ok=True, external_ids=["2002"])
REFUSED = ActionResult(ok=False, error="403 Forbidden: You are not allowed to create a Tweet with duplicate content.")
NO_ANSWER = ActionResult(ok=False, uncertain=True, error="timed out")
STALE = ("reply.stale_posted", "reply.posted_twice")


rt, client = settle_support.rt, settle_support.client  # a console sending to fake platforms



async def stranded_reply(rt, x: Gated) -> tuple[int, asyncio.Task]:
    """An agent's reply whose sender claimed it 15 minutes ago and still waits for X (call 0), swept
    ``unknown`` since; returns its id and the first sender, still under way."""
    rt.connectors = [x]
    m = await add_mention(rt, "charged twice?", handle="pat")
    async with rt.db.session() as s:
        reply = Reply(dedup_key=f"agent:stale:{m.id}", mention_id=m.id, conversation_id=m.conversation_id,
                      platform="x", visibility="public", kind="agent", text="Hi Pat, refunded today.",
                      status="pending", sent_by="session:alice")
        s.add(reply)
        await s.commit()
    back_then = Dispatcher(rt.db, {"x": x}, dry_run=False, clock=lambda: utcnow() - timedelta(minutes=15))
    first = asyncio.create_task(back_then.deliver([reply.id]))
    await asyncio.wait_for(x.started[0].wait(), 10)
    assert (await Dispatcher(rt.db, {}, dry_run=False).sweep_stranded())["replies"] == [reply.id]
    assert (await get(rt, Reply, reply.id)).status == "unknown"
    return reply.id, first


async def send_again(client, rt, reply_id: int):
    """A bot of alice's settles it "not posted": sent again, as a person's click sends it."""
    token = await bot_token(rt, "alice", ["replies:write"])
    return await client.post(f"/api/v1/replies/{reply_id}/settle", headers={"Authorization": f"Bearer {token}"},
                             json={"outcome": "not_posted"})


async def test_a_late_post_of_the_first_attempt_after_the_second_posted_is_audited_not_recorded(client, rt):
    x = Gated(POSTED_FIRST, POSTED_AGAIN)
    rid, first = await stranded_reply(rt, x)
    x.release(1)  # the second attempt's call answers at once
    r = await send_again(client, rt, rid)
    assert r.status == 200 and (await r.json())["reply"]["status"] == "sent"
    x.release(0)  # the first call answers after all
    await asyncio.wait_for(first, 10)
    reply = await get(rt, Reply, rid)
    assert (reply.status, reply.external_ids) == ("sent", ["2002", "1001"])  # both copies are the reply's
    assert await audited(rt, "reply.late_result") == [] and await audited(rt, "reply.stale_posted") == []
    [twice] = await audited(rt, "reply.posted_twice")
    assert (twice.actor, twice.object_type, twice.object_id) == ("system", "reply", str(rid))
    assert twice.details["stale_external_ids"] == ["1001"] and twice.details["external_ids"] == ["2002"]
    assert twice.details["current_status"] == "sent" and "Pat" not in str(twice.details)  # ids, no words
    assert [a.text for a in x.calls] == ["Hi Pat, refunded today."] * 2
    await login(client, "alice")  # the agent sees it where she works, both tweets linked to delete one
    page = await (await client.get(f"/conversations/{reply.conversation_id}")).text()
    assert "May be on X twice" in page
    assert 'href="https://x.com/i/web/status/1001"' in page and 'href="https://x.com/i/web/status/2002"' in page


async def test_taking_back_a_reply_posted_twice_deletes_both_copies_and_a_repeated_answer_changes_nothing(client, rt):
    """Both copies are the reply's ids: the take-back (community.replybot.revert_reply, the moderation
    page's) deletes each on the platform, not only the copy recorded last."""
    from community.replybot import revert_reply
    from service.stranded import record_reply_outcome

    x = Gated(POSTED_FIRST, POSTED_AGAIN, ActionResult(ok=True), ActionResult(ok=True))
    rid, first = await stranded_reply(rt, x)
    x.release(1)
    assert (await send_again(client, rt, rid)).status == 200
    x.release(0)
    await asyncio.wait_for(first, 10)
    async with rt.db.session() as s:  # the first attempt's answer once more (a redelivery): known already
        reply = await s.get(Reply, rid)
        assert not await record_reply_outcome(s, reply, {"status": "sent", "external_ids": ["1001"]}, attempt=1)
        await s.commit()
    assert len(await audited(rt, "reply.posted_twice")) == 1
    x.release(2), x.release(3)
    async with rt.db.session() as s:
        result = await revert_reply(s, await s.get(Reply, rid), {"x": x}, "session:root", "posted twice")
        await s.commit()
    assert result.ok and [(a.kind, a.target_external_id) for a in x.calls[2:]] == [
        ("delete_reply", "2002"), ("delete_reply", "1001")]
    assert (await get(rt, Reply, rid)).status == "deleted"


async def test_a_late_post_of_the_first_attempt_while_the_second_is_under_way_overwrites_nothing(client, rt):
    x = Gated(POSTED_FIRST, POSTED_AGAIN)
    rid, first = await stranded_reply(rt, x)
    settling = asyncio.create_task(send_again(client, rt, rid))
    await asyncio.wait_for(x.started[1].wait(), 10)  # the second attempt's call is under way
    x.release(0)
    await asyncio.wait_for(first, 10)
    reply = await get(rt, Reply, rid)
    assert (reply.status, reply.external_ids) == ("sending", [])  # still the second attempt's claim
    [stale] = await audited(rt, "reply.stale_posted")
    assert stale.details["stale_external_ids"] == ["1001"] and stale.details["current_status"] == "sending"
    x.release(1)
    r = await asyncio.wait_for(settling, 10)
    assert r.status == 200 and (await r.json())["message"] == "Sent again on X."
    reply = await get(rt, Reply, rid)
    assert (reply.status, reply.external_ids) == ("sent", ["2002", "1001"])  # its own answer, and the late copy
    [twice] = await audited(rt, "reply.posted_twice")  # named once both ids are known
    assert twice.details["stale_external_ids"] == ["1001"] and twice.details["external_ids"] == ["2002"]


@pytest.mark.parametrize("late", [ActionResult(ok=False, error="503 Service Unavailable"),
                                  ActionResult(ok=False, uncertain=True, error="timed out")])
async def test_a_late_failure_of_the_first_attempt_never_replaces_the_second(client, rt, late):
    x = Gated(late, POSTED_AGAIN)
    rid, first = await stranded_reply(rt, x)
    settling = asyncio.create_task(send_again(client, rt, rid))
    await asyncio.wait_for(x.started[1].wait(), 10)
    x.release(0)  # "not posted" (or no answer) from the first call, while the second is under way
    await asyncio.wait_for(first, 10)
    assert (await get(rt, Reply, rid)).status == "sending"
    x.release(1)
    assert (await asyncio.wait_for(settling, 10)).status == 200
    reply = await get(rt, Reply, rid)
    assert (reply.status, reply.error, reply.external_ids) == ("sent", None, ["2002"])
    for action in (*STALE, "reply.late_result"):
        assert await audited(rt, action) == []


async def test_a_late_answer_with_no_new_attempt_still_replaces_unknown(client, rt):
    """Nobody sent it again: the first call's late answer is the truth about the reply, as before."""
    x = Gated(POSTED_FIRST)
    rid, first = await stranded_reply(rt, x)
    x.release(0)
    await asyncio.wait_for(first, 10)
    reply = await get(rt, Reply, rid)
    assert (reply.status, reply.external_ids) == ("sent", ["1001"])
    assert len(await audited(rt, "reply.late_result")) == 1
    for action in STALE:
        assert await audited(rt, action) == []


async def test_a_late_post_while_the_new_attempt_is_held_back_is_the_replys_and_it_never_goes_twice(client, rt):
    """Sent again, the reply waits for an unsettled hide of its post (``pending``, held back): the first
    call's late "posted" makes it ``sent``, and once the hide is settled nothing claims it again."""
    x = Gated(POSTED_FIRST, POSTED_AGAIN)
    rid, first = await stranded_reply(rt, x)
    reply = await get(rt, Reply, rid)
    async with rt.db.session() as s:  # its post's hide was cut off mid-call too: public replies wait
        hide = ModerationAction(dedup_key="hide:stale", mention_id=reply.mention_id, action="hide", rule="spam",
                                reason="spam", status="unknown", claimed_at=utcnow() - timedelta(minutes=15))
        s.add(hide)
        await s.commit()
    r = await send_again(client, rt, rid)
    assert r.status == 200 and (await r.json())["reply"]["status"] == "pending"
    reply = await get(rt, Reply, rid)
    assert (reply.status, reply.send_attempt) == ("pending", 2) and reply.error.startswith(HELD)
    x.release(0)  # the first call answers after all: posted
    await asyncio.wait_for(first, 10)
    reply = await get(rt, Reply, rid)
    assert (reply.status, reply.error, reply.external_ids, reply.send_attempt) == ("sent", None, ["1001"], 2)
    assert reply.sent_at is not None
    [late] = await audited(rt, "reply.late_result")
    assert (late.actor, late.object_id) == ("system", str(rid))
    assert late.details == {"mention_id": reply.mention_id, "kind": "agent", "status": "sent", "attempt": 1,
                            "current_attempt": 2, "replaced": "pending", "external_ids": ["1001"]}
    async with rt.db.session() as s:  # the hide settled: held replies go with the pacer's pass
        await s.execute(update(ModerationAction).where(ModerationAction.id == hide.id).values(status="done"))
        await s.commit()
    pacer = Dispatcher(rt.db, {"x": x}, dry_run=False)
    await pacer.release_held()
    await pacer.deliver([rid])  # a deliverer that read it pending before: the claim refuses a sent reply
    assert len(x.calls) == 1 and (await get(rt, Reply, rid)).status == "sent"
    for action in STALE:
        assert await audited(rt, action) == []


@pytest.mark.parametrize("second", [REFUSED, NO_ANSWER], ids=["refused", "no-answer"])
async def test_a_late_post_after_the_new_attempt_did_not_post_is_the_replys(client, rt, second):
    """The second call answered first: X refused the duplicate (``failed``) or did not answer
    (``unknown``); the first call's late "posted" is the truth about the reply."""
    x = Gated(POSTED_FIRST, second)
    rid, first = await stranded_reply(rt, x)
    x.release(1)
    r = await send_again(client, rt, rid)
    was = "failed" if second is REFUSED else "unknown"
    assert r.status == 200 and (await r.json())["reply"]["status"] == was
    x.release(0)
    await asyncio.wait_for(first, 10)
    reply = await get(rt, Reply, rid)
    # attempt 3: "send it again" raised the count, and so did the second claim
    assert (reply.status, reply.error, reply.external_ids, reply.send_attempt) == ("sent", None, ["1001"], 3)
    [late] = await audited(rt, "reply.late_result")
    assert (late.details["attempt"], late.details["current_attempt"], late.details["replaced"]) == (1, 3, was)
    for action in STALE:
        assert await audited(rt, action) == []


async def test_a_late_post_over_a_row_that_changed_since_it_was_read_is_decided_on_the_row_as_it_is(
        client, rt, monkeypatch):
    """The statement that records the late post is conditional on the row as read (status and attempt):
    read before a claim or a refusal committed, it changes nothing, and the row is read again."""
    from types import SimpleNamespace

    from service import stranded

    x = Gated(POSTED_FIRST, REFUSED)
    rid, first = await stranded_reply(rt, x)
    x.release(1)
    assert (await (await send_again(client, rt, rid)).json())["reply"]["status"] == "failed"
    real, seen = stranded._late_post_over_newer, []

    async def read_before_the_claim(session, reply, attempt, values, now):
        seen.append(now.status)
        if len(seen) == 1:  # as read before "send it again" was claimed and refused
            now = SimpleNamespace(status="pending", send_attempt=2, external_ids=[])
        return await real(session, reply, attempt, values, now)

    monkeypatch.setattr(stranded, "_late_post_over_newer", read_before_the_claim)
    x.release(0)
    await asyncio.wait_for(first, 10)
    assert seen == ["failed", "failed"]
    reply = await get(rt, Reply, rid)
    assert (reply.status, reply.external_ids, reply.send_attempt) == ("sent", ["1001"], 3)
    [late] = await audited(rt, "reply.late_result")
    assert (late.details["current_attempt"], late.details["replaced"]) == (3, "failed")


async def test_a_refusal_of_the_new_attempt_after_a_late_post_of_the_first_records_the_post(client, rt):
    """The other order: the first call's "posted" comes while the second is under way (audited
    ``stale_posted``), then X refuses the second as a duplicate: the reply is out, not ``failed``."""
    x = Gated(POSTED_FIRST, REFUSED)
    rid, first = await stranded_reply(rt, x)
    settling = asyncio.create_task(send_again(client, rt, rid))
    await asyncio.wait_for(x.started[1].wait(), 10)
    x.release(0)
    await asyncio.wait_for(first, 10)
    assert (await get(rt, Reply, rid)).status == "sending"
    x.release(1)
    r = await asyncio.wait_for(settling, 10)
    assert r.status == 200 and (await r.json())["reply"]["status"] == "sent"
    reply = await get(rt, Reply, rid)
    assert (reply.status, reply.error, reply.external_ids) == ("sent", None, ["1001"])
    assert len(await audited(rt, "reply.stale_posted")) == 1
    [late] = await audited(rt, "reply.late_result")
    assert (late.details["attempt"], late.details["current_attempt"], late.details["replaced"]) == (1, 3, "failed")
    assert late.details["external_ids"] == ["1001"] and await audited(rt, "reply.posted_twice") == []


async def test_a_post_of_the_new_attempt_after_a_late_post_was_recorded_over_its_unknown_is_posted_twice(client, rt):
    """The second sender was taken for dead too (``unknown``): the first call's late "posted" is recorded
    as the reply's, and when the second call then posts as well the reply is out twice: audited."""
    x = Gated(POSTED_FIRST, POSTED_AGAIN)
    rid, first = await stranded_reply(rt, x)
    settling = asyncio.create_task(send_again(client, rt, rid))
    await asyncio.wait_for(x.started[1].wait(), 10)
    later = Dispatcher(rt.db, {}, dry_run=False, clock=lambda: utcnow() + timedelta(minutes=30))
    assert (await later.sweep_stranded())["replies"] == [rid]  # the second claim swept too
    x.release(0)
    await asyncio.wait_for(first, 10)
    reply = await get(rt, Reply, rid)
    assert (reply.status, reply.external_ids) == ("sent", ["1001"])
    [late] = await audited(rt, "reply.late_result")
    assert (late.details["attempt"], late.details["replaced"]) == (1, "unknown")
    x.release(1)
    assert (await asyncio.wait_for(settling, 10)).status == 200
    reply = await get(rt, Reply, rid)
    assert (reply.status, reply.external_ids) == ("sent", ["1001", "2002"])  # the post recorded first, then this
    [twice] = await audited(rt, "reply.posted_twice")
    assert twice.details["stale_external_ids"] == ["1001"] and twice.details["external_ids"] == ["2002"]
    assert twice.details["attempt"] == 3


async def test_migration_0016_counts_attempts_from_zero_and_goes_back(any_database_url):
    db = Database(any_database_url)
    try:
        await db.upgrade("0015")
        async with db.engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO replies (id, dedup_key, platform, visibility, kind, text, status, external_ids, sent_by, "
                "created_at) VALUES (1, 'k', 'x', 'public', 'agent', 'hi', 'sending', '[]', 'bot', CURRENT_TIMESTAMP)"))
        await db.upgrade("0016")
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT status, send_attempt FROM replies"))).one() == ("sending", 0)
        await db.downgrade("0015")
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT id, status FROM replies"))).one() == (1, "sending")
            with pytest.raises(Exception, match="send_attempt"):
                await conn.execute(text("SELECT send_attempt FROM replies"))
    finally:
        await db.close()
