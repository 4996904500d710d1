"""A reply or moderation action left ``sending`` by a process killed mid platform call is not left
there for ever: past ``stranded_send_minutes`` the pacer's sweep marks a reply ``unknown`` for a
person to check (never sent again blindly) and puts a moderation action back to be performed again
(a state set twice is set once) up to its third interruption; a dead claim stops eating its channel's
pace, and while a hide or removal of a post may not have happened, no public reply goes out beside it.
A claim of an older version (no claim time) is never swept while it may be under way, the sweep never
puts back what an erasure removed, a late answer replaces ``unknown`` and nothing else, and each step
of the pacer's pass runs whatever the others did. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import timedelta

import pytest
from privacy_support import World, dump, found_in, settings_for
from pydantic import ValidationError
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from community import moderation
from console.moderation_view import hidden_state
from listener.protocol import ActionResult
from models import AuditEvent, Mention, ModerationAction, Reply, RouteDecision
from models.base import utcnow
from models.mentions import ERASED_TEXT
from service.bus import Envelope
from service.dispatch import HELD, Dispatcher, run_pacer, sweep_stranded
from service.privacy import erase_posts
from service.settings import load_settings

BOUND = timedelta(minutes=10)  # Settings.stranded_send_minutes
NOTHING = {"replies": [], "actions": [], "requeued": []}


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):  # noqa: ANN204
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Killable:
    """A platform whose process dies mid-call (the call raises ``CancelledError``, as a SIGKILL or a
    cancelled task would leave it) while ``kill`` names the call's kind."""

    def __init__(self, platform: str = "x") -> None:
        self.name, self.platform, self.kill, self.calls = f"killable-{platform}", platform, set(), []

    async def perform(self, action):  # noqa: ANN001, ANN201
        if action.kind in self.kill:
            raise asyncio.CancelledError()
        self.calls.append(action)
        return ActionResult(ok=True, external_ids=[f"r{len(self.calls)}"])


async def statuses(db) -> dict[str, str]:  # noqa: ANN001
    async with db.session() as s:
        return {r.dedup_key: r.status for r in await s.scalars(select(Reply).order_by(Reply.id))}


async def audited(db, action: str) -> list[AuditEvent]:  # noqa: ANN001
    async with db.session() as s:
        return list(await s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


async def queue_status_replies(db, n: int) -> None:  # noqa: ANN001
    async with db.session() as s:
        for i in range(n):
            s.add(Reply(dedup_key=f"status:{i}", platform="x", kind="status", text=f"status {i}", status="queued"))
        await s.commit()


async def test_a_status_reply_killed_mid_send_is_swept_to_unknown_and_frees_its_pace_slot(db):
    await queue_status_replies(db, 3)
    x, clock = Killable(), Clock()
    x.kill = {"public_reply"}
    pacer = Dispatcher(db, {"x": x}, dry_run=False, paced_per_minute=1, clock=clock)
    with pytest.raises(asyncio.CancelledError):
        await pacer.release_queued()  # the pacer's process is killed during the platform call
    assert await statuses(db) == {"status:0": "sending", "status:1": "queued", "status:2": "queued"}
    x.kill = set()
    clock.advance(minutes=1, seconds=1)
    assert await pacer.release_queued() == 1  # the dead claim takes no slot of the next minute
    clock.advance(minutes=1, seconds=1)
    assert await pacer.release_queued() == 1
    assert [a.text for a in x.calls] == ["status 1", "status 2"]
    assert (await statuses(db))["status:0"] == "sending"  # under the bound: maybe still under way
    assert await pacer.sweep_stranded() == NOTHING

    clock.advance(minutes=9)
    swept = await pacer.sweep_stranded()
    async with db.session() as s:
        stranded = await s.scalar(select(Reply).where(Reply.dedup_key == "status:0"))
    assert swept == {"replies": [stranded.id], "actions": [], "requeued": []}
    assert stranded.status == "unknown" and "interrupted" in stranded.error and "check the platform" in stranded.error
    [event] = await audited(db, "reply.send_interrupted")
    assert (event.actor, event.object_type, event.object_id) == ("system", "reply", str(stranded.id))
    assert event.details == {"mention_id": None, "kind": "status"}  # ids only, no words
    clock.advance(minutes=5)
    assert await pacer.release_queued() == 0 and len(x.calls) == 2  # never sent again blindly
    assert await pacer.sweep_stranded() == NOTHING  # and marked once


async def test_a_fresh_claim_is_left_alone_and_counts_against_the_pace_while_recent(db, tmp_path):
    world = World(db, settings_for(tmp_path, db.url))
    mid = await world.ingest(world.post("hide me", author="ana"))
    clock = Clock()
    async with db.session() as s:
        s.add(Reply(dedup_key="status:live", platform="x", kind="status", text="under way", status="sending",
                    claimed_at=clock.now - timedelta(seconds=30)))
        s.add(ModerationAction(dedup_key=f"hide:{mid}", mention_id=mid, action="hide", reason="r", status="sending",
                               claimed_at=clock.now - BOUND + timedelta(seconds=5)))
        await s.commit()
    await queue_status_replies(db, 1)
    x = Killable()
    pacer = Dispatcher(db, {"x": x}, dry_run=False, paced_per_minute=1, clock=clock)
    assert await pacer.sweep_stranded() == NOTHING
    assert await pacer.release_queued() == 0  # this minute's slot is the claim under way
    async with db.session() as s:
        assert await s.scalar(select(ModerationAction.status)) == "sending"
    assert (await statuses(db))["status:live"] == "sending"
    assert await audited(db, "reply.send_interrupted") == []


async def test_the_pacer_loop_sweeps(db):
    await queue_status_replies(db, 1)
    clock = Clock()
    async with db.session() as s:
        await s.execute(update(Reply).values(status="sending", claimed_at=clock.now - BOUND - timedelta(seconds=1)))
        await s.commit()
    stop = asyncio.Event()
    loop = asyncio.create_task(run_pacer(Dispatcher(db, {}, dry_run=False, clock=clock), 0.02, stop))
    try:
        for _ in range(250):
            if (await statuses(db))["status:0"] == "unknown":
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(loop, 10)
    assert await statuses(db) == {"status:0": "unknown"}


async def exposed_post(world: World) -> tuple[int, Envelope]:
    """A post exposing personal data in public, routed to a private case whose public notice may go
    only once the post is hidden (and the secure link's DM to its author)."""
    mid = await world.ingest(world.post("@AcmeHelp my card 4111 1111 1111 1111 got charged twice", author="sam",
                                        user_id="id-sam"), issue="billing", sensitivity="fraud", pii=True)
    async with world.db.session() as s:
        s.add(RouteDecision(mention_id=mid, outcome="escalate_private", router_version="t", confidence=0.9,
                            reason="sensitivity is fraud: handled in a private channel",
                            details={"hide_first": True}))
        await s.commit()
    return mid, Envelope(id="1", topic="act", key=f"m:{mid}", payload={"mention_id": mid})


async def kill_the_hide(world: World, x: Killable) -> tuple[int, Envelope, ModerationAction]:
    """The act stage's worker dies between claiming the hide of an exposed post and recording it."""
    mid, env = await exposed_post(world)
    x.kill = {"hide"}
    with pytest.raises(asyncio.CancelledError):
        await world.act.handle([env])
    async with world.db.session() as s:
        hide = await s.scalar(select(ModerationAction).where(ModerationAction.action == "hide"))
    assert hide.status == "sending" and hide.claimed_at is not None
    return mid, env, hide


async def public_notice(db) -> Reply:  # noqa: ANN001
    async with db.session() as s:
        return await s.scalar(select(Reply).where(Reply.visibility == "public"))


async def test_a_hide_killed_mid_call_is_performed_again_by_the_pacer_then_the_held_reply_goes(db, tmp_path):
    x = Killable()
    world = World(db, settings_for(tmp_path, db.url, dry_run=False), {"x": x})
    mid, env, hide = await kill_the_hide(world, x)
    x.kill = set()
    await world.act.handle([env])  # redelivered: the hide is not claimable, the post may still show the card
    assert [a.kind for a in x.calls] == ["private_message"]  # the secure link's DM, and no public word
    notice = await public_notice(db)
    assert notice.status == "pending" and notice.error.startswith(HELD) and f"#{hide.id}" in notice.error

    clock = Clock()
    pacer = Dispatcher(db, world.connectors, dry_run=False, clock=clock)
    assert await pacer.sweep_stranded() == NOTHING  # under the bound: maybe still under way
    clock.advance(minutes=10, seconds=1)
    assert await pacer.sweep_stranded() == {"replies": [], "actions": [], "requeued": [hide.id]}
    async with db.session() as s:
        hide = await s.get(ModerationAction, hide.id)
    assert (hide.status, hide.details) == ("queued", {"interrupted": 1})  # a hide set twice is set once
    [event] = await audited(db, "moderation.action_requeued")
    assert (event.object_id, event.details) == (str(hide.id), {"mention_id": mid, "kind": "hide", "interrupted": 1})
    assert await audited(db, "moderation.action_interrupted") == []

    assert await pacer.perform_stranded() == 1  # the pacer's pass performs it again
    async with db.session() as s:
        assert (await s.get(ModerationAction, hide.id)).status == "done"
    assert await pacer.release_held() == 1  # and the notice, held back for it, goes
    assert [a.kind for a in x.calls] == ["private_message", "hide", "public_reply"]
    notice = await public_notice(db)
    assert (notice.status, notice.error) == ("sent", None)
    assert await pacer.perform_stranded() == 0 and await pacer.release_held() == 0  # each once


async def test_a_hide_interrupted_three_times_is_left_unknown_for_a_person_until_a_removal_settles_it(db, tmp_path):
    x = Killable()
    world = World(db, settings_for(tmp_path, db.url, dry_run=False), {"x": x})
    mid, env, hide = await kill_the_hide(world, x)
    clock = Clock()
    pacer = Dispatcher(db, world.connectors, dry_run=False, clock=clock)
    for _ in range(2):  # performed again, and killed again
        clock.advance(minutes=11)
        assert await pacer.sweep_stranded() == {"replies": [], "actions": [], "requeued": [hide.id]}
        with pytest.raises(asyncio.CancelledError):
            await pacer.perform_stranded()
    clock.advance(minutes=11)
    assert await pacer.sweep_stranded() == {"replies": [], "actions": [hide.id], "requeued": []}
    async with db.session() as s:
        hide = await s.get(ModerationAction, hide.id)
        mention = await s.get(Mention, mid)
    assert hide.status == "unknown" and hide.details["interrupted"] == 3
    assert "check the platform" in hide.details["error"]
    assert [e.details["interrupted"] for e in await audited(db, "moderation.action_requeued")] == [1, 2]
    [event] = await audited(db, "moderation.action_interrupted")
    assert (event.object_id, event.details) == (str(hide.id), {"mention_id": mid, "kind": "hide", "interrupted": 3})
    hold = ModerationAction(dedup_key="hold", mention_id=mid, action="hold", rule="spam", reason="r")
    assert hidden_state(hold, mention, hide).startswith("may still be public")  # what the moderation page says

    x.kill = set()
    assert await pacer.perform_stranded() == 0  # a person checks it now: never performed blindly again
    await world.act.handle([env])  # delivered again: the DM goes, the notice is held, nothing twice
    assert await pacer.release_held() == 0 and await pacer.release_queued() == 0
    assert [a.kind for a in x.calls] == ["private_message"]
    notice = await public_notice(db)
    assert notice.status == "pending" and notice.error.startswith(HELD)

    async with db.session() as s:  # a moderator removes the post: a removal of its own, performed
        removal = await moderation.add_action(s, f"review:{mid}:remove", await s.get(Mention, mid), "remove",
                                              "personal data", rule="builtin:pii", actor="session:mo")
        await s.commit()
    await pacer.perform([removal.id])
    assert await pacer.release_held() == 1  # the pacer's next pass: the post is down now
    assert [a.kind for a in x.calls] == ["private_message", "hide", "public_reply"]
    notice = await public_notice(db)
    assert (notice.status, notice.error) == ("sent", None)
    async with db.session() as s:
        assert (await s.get(ModerationAction, hide.id)).status == "unknown"  # still for a person to check


async def test_an_action_of_the_bot_api_is_left_unknown_at_its_first_interruption(db, tmp_path):
    """The API asks the platform for its own kinds and records their effect on the post only as the
    call answers: performed again by the pacer, it would be another action."""
    world = World(db, settings_for(tmp_path, db.url))
    mid = await world.ingest(world.post("spam spam", author="ana"))
    stale = utcnow() - BOUND - timedelta(seconds=1)
    async with db.session() as s:
        api = ModerationAction(dedup_key=f"api:hide:{mid}:0", mention_id=mid, action="hide", rule="api", reason="r",
                               actor="token:bot", status="sending", claimed_at=stale)
        rule = ModerationAction(dedup_key=f"rule:{mid}:ban", mention_id=mid, action="ban", rule="spam", reason="r",
                                status="sending", claimed_at=stale)
        s.add_all([api, rule])
        await s.commit()
    assert await sweep_stranded(db, utcnow(), BOUND) == {"replies": [], "actions": [api.id], "requeued": [rule.id]}
    pacer = Dispatcher(db, {"x": Killable()}, dry_run=False)
    assert await pacer.perform_stranded() == 1
    async with db.session() as s:
        assert (await s.get(ModerationAction, api.id)).status == "unknown"
        assert (await s.get(ModerationAction, rule.id)).status == "done"


async def test_a_queued_status_reply_to_a_post_whose_hide_is_unknown_waits_without_taking_the_slot(db, tmp_path):
    world = World(db, settings_for(tmp_path, db.url))
    exposed = await world.ingest(world.post("down again, call me on +1 555 010 0199", author="ana"))
    other = await world.ingest(world.post("down again", author="ben"))
    async with db.session() as s:
        s.add(ModerationAction(dedup_key=f"hide:{exposed}", mention_id=exposed, action="hide", reason="r",
                               status="unknown"))
        for key, mid in (("status:ana", exposed), ("status:ben", other)):
            s.add(Reply(dedup_key=key, mention_id=mid, platform="x", kind="status", text="fixing", status="queued"))
        await s.commit()
    x = Killable()
    pacer = Dispatcher(db, {"x": x}, dry_run=False, paced_per_minute=1)
    assert await pacer.release_queued() == 1
    assert await statuses(db) == {"status:ana": "queued", "status:ben": "sent"}
    assert [a.target_external_id for a in x.calls] == [(await world.mention(other)).external_id]


@pytest.mark.parametrize("interrupted_before", [2, 0], ids=["swept-to-unknown", "swept-back-to-queued"])
async def test_the_executor_records_a_late_answer_over_unknown_and_audits_it(db, tmp_path, interrupted_before):
    """A call that outlived the bound (it should not: the platforms' timeouts are far shorter) still
    records what the platform said over ``unknown``: the truth, audited. Over an action the sweep put
    back to ``queued`` it records nothing: the pacer performs it again (a hide twice is one hide)."""
    world = World(db, settings_for(tmp_path, db.url))
    mid = await world.ingest(world.post("spam spam", author="ana"))
    async with db.session() as s:
        mention = await s.get(Mention, mid)
        row = await moderation.add_action(s, f"hide:{mid}", mention, "hide", "spam", rule="spam")
        row.details = {"interrupted": interrupted_before}
        await s.commit()
    swept = []

    class Late:
        platform, calls = "x", 0

        async def perform(self, action):  # noqa: ANN001, ANN202
            Late.calls += 1
            if not swept:
                swept.append(await sweep_stranded(db, utcnow() + BOUND * 2, BOUND))
            return ActionResult(ok=True)

    await moderation.execute(db, {"x": Late()}, [row.id], dry_run=False)
    async with db.session() as s:
        status = (await s.get(ModerationAction, row.id)).status
    if interrupted_before == 2:
        assert swept == [{"replies": [], "actions": [row.id], "requeued": []}] and status == "done"
        [event] = await audited(db, "moderation.late_result")
        assert (event.object_id, event.details) == (str(row.id), {"mention_id": mid, "kind": "hide", "status": "done"})
    else:
        assert swept == [{"replies": [], "actions": [], "requeued": [row.id]}] and status == "queued"
        assert await audited(db, "moderation.late_result") == []
        assert await Dispatcher(db, {"x": Late()}, dry_run=False).perform_stranded() == 1
        async with db.session() as s:
            assert (await s.get(ModerationAction, row.id)).status == "done" and Late.calls == 2


@pytest.mark.parametrize("meanwhile", ["swept", "set-by-a-person"])
async def test_a_late_reply_outcome_replaces_unknown_audited_and_no_other_status(db, meanwhile):
    await queue_status_replies(db, 1)
    async with db.session() as s:
        reply_id = await s.scalar(select(Reply.id))

    class Late:
        platform = "x"

        async def perform(self, action):  # noqa: ANN001, ANN202
            if meanwhile == "swept":  # this sender taken for dead while its call took far too long
                assert (await sweep_stranded(db, utcnow() + BOUND * 2, BOUND))["replies"] == [reply_id]
            else:
                async with db.session() as s:
                    await s.execute(update(Reply).values(status="failed", error="checked by hand"))
                    await s.commit()
            return ActionResult(ok=True, external_ids=["r1"])

    assert await Dispatcher(db, {"x": Late()}, dry_run=False).release_queued() == 1
    async with db.session() as s:
        reply = await s.get(Reply, reply_id)
    if meanwhile == "swept":  # the platform's answer is the truth
        assert (reply.status, reply.error, reply.external_ids) == ("sent", None, ["r1"])
        [event] = await audited(db, "reply.late_result")
        assert (event.object_id, event.details) == (str(reply_id), {"mention_id": None, "kind": "status",
                                                                    "status": "sent"})  # ids only
    else:
        assert (reply.status, reply.error, reply.external_ids) == ("failed", "checked by hand", [])
        assert await audited(db, "reply.late_result") == []


async def test_a_claim_of_an_older_version_is_timed_by_the_sweep_and_swept_only_a_bound_later(db, tmp_path):
    """A rolling upgrade: a process of the version before 0012 claims (status only, no claim time)
    a reply and an action queued long ago. The sweep leaves the calls under way alone."""
    world = World(db, settings_for(tmp_path, db.url))
    mid = await world.ingest(world.post("spam spam", author="ana"))
    clock = Clock()
    long_ago = clock.now - timedelta(minutes=30)  # an outage, a backlog
    async with db.session() as s:
        reply = Reply(dedup_key="status:old", platform="x", kind="status", text="t", status="queued",
                      created_at=long_ago)
        action = ModerationAction(dedup_key=f"hide:{mid}", mention_id=mid, action="hide", reason="r", status="queued",
                                  created_at=long_ago)
        s.add_all([reply, action])
        await s.commit()
    async with db.session() as s:  # the old version's claims
        for model in (Reply, ModerationAction):
            await s.execute(update(model).values(status="sending"))
        await s.commit()
    pacer = Dispatcher(db, {}, dry_run=False, clock=clock)
    assert await pacer.sweep_stranded() == NOTHING  # seconds after the claims
    async with db.session() as s:
        assert await s.scalar(select(Reply.claimed_at)) == clock.now  # timed as first seen
        assert await s.scalar(select(ModerationAction.claimed_at)) == clock.now
        answered = await s.execute(update(Reply).where(Reply.status == "sending").values(status="sent"))
        await s.commit()
    assert answered.rowcount == 1  # the old sender records its answer, as it did: over `sending`
    clock.advance(minutes=9)
    assert await pacer.sweep_stranded() == NOTHING
    clock.advance(minutes=1, seconds=1)
    assert await pacer.sweep_stranded() == {"replies": [], "actions": [], "requeued": [action.id]}
    assert await statuses(db) == {"status:old": "sent"}


@pytest.mark.parametrize("table", ["replies", "moderation_actions"])
async def test_the_sweep_never_puts_back_what_an_erasure_removed(db, tmp_path, monkeypatch, table):
    """The post is erased between the sweep's read of the stranded rows and its first write to
    ``table``: what the erasure removed stays removed."""
    world = World(db, settings_for(tmp_path, db.url))
    mid = await world.ingest(world.post("call me on +1 555 0100 spam", author="ana"))
    stale = utcnow() - BOUND * 2
    async with db.session() as s:
        action = ModerationAction(dedup_key=f"hide:{mid}", mention_id=mid, action="hide", status="sending",
                                  reason="matched +1 555 0100", claimed_at=stale,
                                  details={"matched": "call me on +1 555 0100", "label": "spam"})
        reply = Reply(dedup_key=f"agent:{mid}", mention_id=mid, platform="x", kind="agent", status="sending",
                      text="Hi ana, we'll call +1 555 0100", claimed_at=stale)
        s.add_all([action, reply])
        await s.commit()
    real, erased_at = AsyncSession.execute, []

    async def execute(self, statement, *args, **kwargs):  # noqa: ANN001, ANN202
        if not erased_at and getattr(statement, "is_update", False) and statement.table.name == table:
            erased_at.append(table)
            async with db.session() as other:  # the erasure commits first
                await erase_posts(other, [mid], Counter())
                await other.commit()
        return await real(self, statement, *args, **kwargs)

    monkeypatch.setattr(AsyncSession, "execute", execute)
    swept = await sweep_stranded(db, utcnow(), BOUND)
    monkeypatch.undo()
    assert erased_at == [table]
    assert swept == {"replies": [reply.id], "actions": [], "requeued": [action.id]}
    async with db.session() as s:
        action = await s.get(ModerationAction, action.id)
        reply = await s.get(Reply, reply.id)
    assert (action.status, action.reason) == ("queued", ERASED_TEXT)
    assert action.details == {"label": "spam", "interrupted": 1}  # the erasure's, and the count
    assert (reply.status, reply.text) == ("unknown", ERASED_TEXT)
    assert found_in(await dump(db), "555 0100") == []
    assert await Dispatcher(db, {"x": Killable()}, dry_run=False).perform_stranded() == 1
    async with db.session() as s:  # performed again: its post is erased, so it is cancelled instead
        assert (await s.get(ModerationAction, action.id)).status == "cancelled"


async def test_a_reply_another_process_is_sending_is_left_to_it_until_its_claim_is_stale(db, tmp_path):
    """Delivering a reply found ``sending`` (the act stage's redelivery while the pacer sends it, say)
    leaves it to its sender; only a claim older than the bound is taken for dead, and audited."""
    world = World(db, settings_for(tmp_path, db.url))
    mid = await world.ingest(world.post("my order never came", author="ana"))
    clock = Clock()
    async with db.session() as s:
        reply = Reply(dedup_key=f"agent:{mid}", mention_id=mid, platform="x", kind="agent", status="sending",
                      text="on it", claimed_at=clock.now - timedelta(seconds=30))
        s.add(reply)
        await s.commit()
    x = Killable()
    act = Dispatcher(db, {"x": x}, dry_run=False, clock=clock)
    await act.deliver([reply.id])
    async with db.session() as s:
        assert (await s.get(Reply, reply.id)).status == "sending"
    assert await audited(db, "reply.send_interrupted") == [] and x.calls == []
    clock.advance(minutes=10)
    await act.deliver([reply.id])
    async with db.session() as s:
        reply = await s.get(Reply, reply.id)
    assert (reply.status, reply.error) == ("unknown", "interrupted while sending; check the platform")
    [event] = await audited(db, "reply.send_interrupted")
    assert event.details == {"mention_id": mid, "kind": "agent"} and x.calls == []


async def test_a_failing_step_of_the_pacer_pass_skips_none_of_the_others_and_logs_no_words(db, caplog):
    await queue_status_replies(db, 1)
    pacer = Dispatcher(db, {"x": Killable()}, dry_run=False)

    async def broken() -> None:
        raise RuntimeError("card 4111 1111 1111 1111 of ana@example.com")

    pacer.sweep_stranded = pacer.perform_stranded = pacer.release_held = pacer.release_orphans = broken
    pacer.queue_orphans = broken
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="socialcare")
    loop = asyncio.create_task(run_pacer(pacer, 0.02, stop))
    try:
        for _ in range(250):
            if (await statuses(db))["status:0"] == "sent":
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(loop, 10)
    assert await statuses(db) == {"status:0": "sent"}  # the last step ran, whatever the others did
    assert "sweeping stranded sends failed (RuntimeError)" in caplog.text
    assert "releasing held replies failed (RuntimeError)" in caplog.text
    assert "4111" not in caplog.text and "ana@example.com" not in caplog.text


def test_the_bound_is_a_typed_setting_of_at_least_a_minute():
    assert load_settings().stranded_send_minutes == 10.0
    assert load_settings(stranded_send_minutes="15").stranded_send_minutes == 15.0
    with pytest.raises(ValidationError):
        load_settings(stranded_send_minutes=0.5)  # would take live sends for lost ones


async def test_0012_times_the_claims_under_way_and_goes_back_down(any_db):
    """Rows already ``sending`` at the upgrade count as claimed then: swept one bound later, not at once
    (an older process may still be sending them)."""
    await any_db.downgrade("0011")
    async with any_db.engine.begin() as conn:
        for key, status in (("a", "sending"), ("b", "sent")):
            await conn.execute(text(
                "INSERT INTO replies (dedup_key, platform, visibility, kind, text, status, external_ids, sent_by, "
                f"created_at) VALUES ('{key}', 'x', 'public', 'status', 'w', '{status}', '[]', 'bot', "
                "CURRENT_TIMESTAMP)"))
    before = utcnow() - timedelta(seconds=1)
    await any_db.upgrade()
    async with any_db.session() as s:
        claimed = dict((await s.execute(select(Reply.dedup_key, Reply.claimed_at))).all())
    assert claimed["b"] is None and before < claimed["a"] < utcnow() + timedelta(seconds=1)
    assert (await sweep_stranded(any_db, utcnow() + timedelta(minutes=1), BOUND))["replies"] == []
    await any_db.downgrade("0011")
    async with any_db.engine.connect() as conn:
        assert sorted((await conn.execute(text("SELECT dedup_key, status FROM replies"))).all()) == [
            ("a", "sending"), ("b", "sent")]
        with pytest.raises(Exception):  # noqa: B017 - the column is gone, whatever the driver calls it
            await conn.execute(text("SELECT claimed_at FROM moderation_actions"))
