"""A moderation action whose executor was taken for dead (its claim swept) while its platform call was
in fact still under way: the sweep puts it back in the queue and the pacer performs it again, or a
moderator settles it "not happened" and it is tried again (here the bot API's own, performed at once).
When the first call answers after all, its answer is the first attempt's and never the action's any
more: it overwrites neither the new attempt's claim nor its outcome, whether it comes before or after
the new attempt's own answer, and it is audited ``moderation.stale_result`` (ids and statuses only).
On SQLite and PostgreSQL, with the migration that counts the attempts (0017)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import text

from community import moderation
from console.api.actions import as_asked
from listener.protocol import ActionResult
from models import Mention, ModerationAction
from models.base import utcnow
from models.db import Database
from service.dispatch import Dispatcher
from service.privacy_actions import perform_actions
from tests.console import settle_support
from tests.console.conftest import add_mention, bot_token
from tests.console.settle_support import Gated, audited, get

DONE, REFUSED = ActionResult(ok=True), ActionResult(ok=False, error="503 Service Unavailable")
LATER = timedelta(minutes=30)  # past the stranded bound (10 minutes): the sweep takes the claim for dead


rt, client = settle_support.rt, settle_support.client  # a console sending to fake platforms



async def queued_action(rt, action: str = "hide", rule: str = "spam") -> tuple[Mention, int]:
    m = await add_mention(rt, "buy followers cheap", handle="spammer")
    async with rt.db.session() as s:
        mention = await s.get(Mention, m.id)
        row = await moderation.add_action(s, f"{action}:{m.id}", mention, action, "spam", rule=rule,
                                          actor="token:mod" if rule == "api" else "bot")
        await s.commit()
        return m, row.id


async def sweep(rt) -> dict[str, list[int]]:
    return await Dispatcher(rt.db, {}, dry_run=False, clock=lambda: utcnow() + LATER).sweep_stranded()


async def stranded_and_performed_again(rt, x: Gated) -> tuple[int, asyncio.Task, asyncio.Task]:
    """A hide whose first call (0) hangs, put back by the sweep and claimed again by the pacer's pass,
    its call (1) under way too; returns its id and both performers."""
    _, aid = await queued_action(rt)
    first = asyncio.create_task(Dispatcher(rt.db, {"x": x}, dry_run=False).perform([aid]))
    await asyncio.wait_for(x.started[0].wait(), 10)
    assert (await sweep(rt))["requeued"] == [aid]
    row = await get(rt, ModerationAction, aid)
    assert (row.status, row.send_attempt, row.details["interrupted"]) == ("queued", 1, 1)
    again = asyncio.create_task(Dispatcher(rt.db, {"x": x}, dry_run=False).perform_stranded())
    await asyncio.wait_for(x.started[1].wait(), 10)
    row = await get(rt, ModerationAction, aid)
    assert (row.status, row.send_attempt) == ("sending", 2)
    return aid, first, again


@pytest.mark.parametrize("first_answer, second_answer", [(REFUSED, DONE), (DONE, REFUSED)],
                         ids=["late-refusal", "late-success"])
async def test_a_late_answer_while_the_action_is_performed_again_never_replaces_the_new_attempt(
        rt, first_answer, second_answer):
    x = Gated(first_answer, second_answer)
    aid, first, again = await stranded_and_performed_again(rt, x)
    x.release(0)  # the first call answers after all, while the second is under way
    await asyncio.wait_for(first, 10)
    row = await get(rt, ModerationAction, aid)
    assert (row.status, row.send_attempt, row.details.get("error")) == ("sending", 2, None)  # the new claim's
    [stale] = await audited(rt, "moderation.stale_result")
    assert (stale.actor, stale.object_type, stale.object_id) == ("system", "moderation_action", str(aid))
    assert stale.details == {"mention_id": row.mention_id, "kind": "hide", "attempt": 1, "current_attempt": 2,
                             "current_status": "sending", "status": "done" if first_answer.ok else "failed"}
    x.release(1)
    assert await asyncio.wait_for(again, 10) == 1
    row = await get(rt, ModerationAction, aid)
    if second_answer.ok:  # the new attempt's own answer, recorded
        assert row.status == "done" and "error" not in row.details
    else:
        assert (row.status, row.details["error"]) == ("failed", "503 Service Unavailable")
    assert await audited(rt, "moderation.late_result") == [] and len(x.calls) == 2


async def test_a_late_answer_after_the_new_attempt_answered_changes_nothing(rt):
    x = Gated(REFUSED, DONE)
    aid, first, again = await stranded_and_performed_again(rt, x)
    x.release(1)
    assert await asyncio.wait_for(again, 10) == 1
    x.release(0)
    await asyncio.wait_for(first, 10)
    row = await get(rt, ModerationAction, aid)
    assert (row.status, row.send_attempt) == ("done", 2) and "error" not in row.details
    [stale] = await audited(rt, "moderation.stale_result")
    assert (stale.details["current_status"], stale.details["status"]) == ("done", "failed")


async def test_a_late_answer_while_the_action_waits_in_the_queue_again_is_audited_and_it_is_performed(rt):
    _, aid = await queued_action(rt)
    x = Gated(DONE, DONE)
    first = asyncio.create_task(Dispatcher(rt.db, {"x": x}, dry_run=False).perform([aid]))
    await asyncio.wait_for(x.started[0].wait(), 10)
    assert (await sweep(rt))["requeued"] == [aid]
    x.release(0)
    await asyncio.wait_for(first, 10)
    assert (await get(rt, ModerationAction, aid)).status == "queued"  # put back: performed again (a hide twice is one hide)
    [stale] = await audited(rt, "moderation.stale_result")
    assert (stale.details["attempt"], stale.details["current_attempt"], stale.details["current_status"]) == \
        (1, 1, "queued")
    x.release(1)
    assert await Dispatcher(rt.db, {"x": x}, dry_run=False).perform_stranded() == 1
    assert ((await get(rt, ModerationAction, aid)).status, (await get(rt, ModerationAction, aid)).send_attempt) == ("done", 2)


async def test_tried_again_by_a_moderator_a_late_answer_of_the_interrupted_call_is_not_the_actions(client, rt):
    """An action of the bot API is left ``unknown`` at its first interruption; "not happened" tries it
    again at once: the interrupted call's late refusal neither replaces the new attempt's claim nor hides
    its success (nor the effect the API records for it)."""
    m, aid = await queued_action(rt, rule="api")
    x = Gated(REFUSED, DONE)
    rt.connectors = [x]
    first = asyncio.create_task(perform_actions(rt.db, {"x": x}, [aid], dry_run=False, kind_of=as_asked))
    await asyncio.wait_for(x.started[0].wait(), 10)
    assert (await sweep(rt))["actions"] == [aid]
    assert ((await get(rt, ModerationAction, aid)).status, (await get(rt, ModerationAction, aid)).send_attempt) == ("unknown", 1)
    token = await bot_token(rt, "mod", ["actions:write"])
    settling = asyncio.create_task(client.post(f"/api/v1/moderation-actions/{aid}/settle", json={
        "outcome": "not_happened"}, headers={"Authorization": f"Bearer {token}"}))
    await asyncio.wait_for(x.started[1].wait(), 10)
    row = await get(rt, ModerationAction, aid)  # "Try again" started attempt 2, its claim attempt 3
    assert (row.status, row.send_attempt) == ("sending", 3)
    [retried] = await audited(rt, "moderation.action_retried")
    assert retried.actor == "token:mod"
    x.release(0)
    await asyncio.wait_for(first, 10)
    assert (await get(rt, ModerationAction, aid)).status == "sending"
    [stale] = await audited(rt, "moderation.stale_result")
    assert (stale.details["attempt"], stale.details["current_attempt"], stale.details["status"]) == (1, 3, "failed")
    x.release(1)
    r = await asyncio.wait_for(settling, 10)
    body = await r.json()
    assert r.status == 200 and body["moderation_action"]["status"] == "done", body
    assert (await get(rt, ModerationAction, aid)).status == "done"
    async with rt.db.session() as s:
        assert (await s.get(Mention, m.id)).hidden is True  # the API's effect of a done hide
    assert await audited(rt, "moderation.late_result") == []


async def test_a_person_trying_again_raises_the_attempt_so_a_late_answer_is_stale(client, rt):
    """The pacer's kind: "Try again" puts it back in the queue as a new attempt; the interrupted call's
    answer arriving before the pacer claims it is audited, not recorded."""
    _, aid = await queued_action(rt)
    x = Gated(DONE, DONE)
    first = asyncio.create_task(Dispatcher(rt.db, {"x": x}, dry_run=False).perform([aid]))
    await asyncio.wait_for(x.started[0].wait(), 10)
    async with rt.db.session() as s:  # interrupted twice before: this sweep leaves it unknown, for a person
        row = await s.get(ModerationAction, aid)
        row.details = {**row.details, "interrupted": 2}
        await s.commit()
    assert (await sweep(rt))["actions"] == [aid]
    token = await bot_token(rt, "mod", ["actions:write"])
    r = await client.post(f"/api/v1/moderation-actions/{aid}/settle", json={"outcome": "not_happened"},
                          headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200 and (await r.json())["moderation_action"]["status"] == "queued"
    row = await get(rt, ModerationAction, aid)
    assert (row.status, row.send_attempt) == ("queued", 2)
    x.release(0)
    await asyncio.wait_for(first, 10)
    assert (await get(rt, ModerationAction, aid)).status == "queued"
    [stale] = await audited(rt, "moderation.stale_result")
    assert (stale.details["attempt"], stale.details["current_attempt"], stale.details["current_status"]) == \
        (1, 2, "queued")


async def test_migration_0017_counts_attempts_from_zero_and_goes_back(any_database_url):
    db = Database(any_database_url)
    try:
        await db.upgrade("0016")
        async with db.engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO mentions (id, platform, external_id, text, kind, is_public, created_at, ingested_at, "
                "hidden, deleted, content_hash, raw) VALUES (1, 'x', 'e1', 'spam', 'post', true, CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP, false, false, 'h1', '{}')"))
            await conn.execute(text(
                "INSERT INTO moderation_actions (id, dedup_key, mention_id, action, reason, actor, status, details, "
                "created_at) VALUES (1, 'k', 1, 'hide', 'spam', 'bot', 'sending', '{}', CURRENT_TIMESTAMP)"))
        await db.upgrade("0017")
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT status, send_attempt FROM moderation_actions"))).one() == \
                ("sending", 0)
        await db.downgrade("0016")
        async with db.engine.begin() as conn:
            assert (await conn.execute(text("SELECT id, dedup_key, status FROM moderation_actions"))).one() == \
                (1, "k", "sending")
            with pytest.raises(Exception, match="send_attempt"):
                await conn.execute(text("SELECT send_attempt FROM moderation_actions"))
        async with db.engine.begin() as conn:  # its constraints kept: a dedup key is still taken once
            with pytest.raises(Exception, match="(?i)unique"):
                await conn.execute(text(
                    "INSERT INTO moderation_actions (id, dedup_key, mention_id, action, reason, actor, status, "
                    "details, created_at) VALUES (2, 'k', 1, 'hide', 'spam', 'bot', 'queued', '{}', "
                    "CURRENT_TIMESTAMP)"))
    finally:
        await db.close()
