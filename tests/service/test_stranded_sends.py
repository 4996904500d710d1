"""A reply or moderation action left ``sending`` by a process killed mid platform call is not left
there for ever: past ``stranded_send_minutes`` the pacer's sweep marks it ``unknown`` for a person to
check (never sent again blindly), it stops eating its channel's pace, and while a hide or removal of a
post may not have happened, no public reply goes out beside it. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from privacy_support import World, settings_for
from pydantic import ValidationError
from sqlalchemy import select, text, update

from community import moderation
from console.moderation_view import hidden_state
from listener.protocol import ActionResult
from models import AuditEvent, Mention, ModerationAction, Reply, RouteDecision
from models.base import utcnow
from service.bus import Envelope
from service.dispatch import HELD, Dispatcher, run_pacer
from service.settings import load_settings

BOUND = timedelta(minutes=10)  # Settings.stranded_send_minutes


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
        return list(await s.scalars(select(AuditEvent).where(AuditEvent.action == action)))


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
    assert await pacer.sweep_stranded() == {"replies": [], "actions": []}

    clock.advance(minutes=9)
    swept = await pacer.sweep_stranded()
    async with db.session() as s:
        stranded = await s.scalar(select(Reply).where(Reply.dedup_key == "status:0"))
    assert swept == {"replies": [stranded.id], "actions": []}
    assert stranded.status == "unknown" and "interrupted" in stranded.error and "check the platform" in stranded.error
    [event] = await audited(db, "reply.send_interrupted")
    assert (event.actor, event.object_type, event.object_id) == ("system", "reply", str(stranded.id))
    assert event.details == {"mention_id": None, "kind": "status"}  # ids only, no words
    clock.advance(minutes=5)
    assert await pacer.release_queued() == 0 and len(x.calls) == 2  # never sent again blindly
    assert await pacer.sweep_stranded() == {"replies": [], "actions": []}  # and marked once


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
    assert await pacer.sweep_stranded() == {"replies": [], "actions": []}
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


async def test_a_hide_killed_mid_call_holds_the_public_reply_back_until_the_post_is_hidden(db, tmp_path):
    x = Killable()
    world = World(db, settings_for(tmp_path, db.url, dry_run=False), {"x": x})
    mid, env = await exposed_post(world)
    x.kill = {"hide"}
    with pytest.raises(asyncio.CancelledError):
        await world.act.handle([env])  # the worker dies between claiming the hide and recording it
    async with db.session() as s:
        hide = await s.scalar(select(ModerationAction).where(ModerationAction.action == "hide"))
        assert hide.status == "sending" and hide.claimed_at is not None
    x.kill = set()
    await world.act.handle([env])  # redelivered: the hide is not claimable, the post may still show the card
    assert [a.kind for a in x.calls] == ["private_message"]  # the secure link's DM, and no public word
    async with db.session() as s:
        notice = await s.scalar(select(Reply).where(Reply.visibility == "public"))
    assert notice.status == "pending" and notice.error.startswith(HELD) and f"#{hide.id}" in notice.error

    later = Dispatcher(db, world.connectors, dry_run=False, clock=lambda: utcnow() + BOUND + timedelta(minutes=1))
    assert await later.sweep_stranded() == {"replies": [], "actions": [hide.id]}
    async with db.session() as s:
        hide = await s.get(ModerationAction, hide.id)
        mention = await s.get(Mention, mid)
    assert hide.status == "unknown" and "check the platform" in hide.details["error"]
    [event] = await audited(db, "moderation.action_interrupted")
    assert (event.object_id, event.details) == (str(hide.id), {"mention_id": mid, "kind": "hide"})
    hold = ModerationAction(dedup_key="hold", mention_id=mid, action="hold", rule="spam", reason="r")
    assert hidden_state(hold, mention, hide).startswith("may still be public")  # what the moderation page says

    await world.act.handle([env])  # delivered again: still held, nothing twice
    assert await later.release_held() == 0 and await later.release_queued() == 0
    assert [a.kind for a in x.calls] == ["private_message"]
    async with db.session() as s:
        assert (await s.get(Reply, notice.id)).status == "pending"

    async with db.session() as s:  # a moderator removes the post: a removal of its own, performed
        removal = await moderation.add_action(s, f"review:{mid}:remove", await s.get(Mention, mid), "remove",
                                              "personal data", rule="builtin:pii", actor="session:mo")
        await s.commit()
    await later.perform([removal.id])
    assert await later.release_held() == 1  # the pacer's next pass: the post is down now
    assert [a.kind for a in x.calls] == ["private_message", "hide", "public_reply"]
    async with db.session() as s:
        notice = await s.get(Reply, notice.id)
    assert (notice.status, notice.error) == ("sent", None)
    assert await later.release_held() == 0
    async with db.session() as s:
        assert (await s.get(ModerationAction, hide.id)).status == "unknown"  # still for a person to check


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


async def test_the_executor_records_a_late_answer_over_unknown(db, tmp_path):
    """A call that outlived the bound (it should not: the platforms' timeouts are far shorter) still
    records what the platform said: the truth over ``unknown``."""
    world = World(db, settings_for(tmp_path, db.url))
    mid = await world.ingest(world.post("spam spam", author="ana"))
    async with db.session() as s:
        mention = await s.get(Mention, mid)
        row = await moderation.add_action(s, f"hide:{mid}", mention, "hide", "spam", rule="spam")
        await s.commit()

    class Late:
        platform = "x"

        async def perform(self, action):  # noqa: ANN001, ANN202
            await sweep_now(db)
            return ActionResult(ok=True)

    async def sweep_now(db):  # noqa: ANN001, ANN202
        from service.dispatch import sweep_stranded

        assert (await sweep_stranded(db, utcnow() + BOUND * 2, BOUND))["actions"] == [row.id]

    await moderation.execute(db, {"x": Late()}, [row.id], dry_run=False)
    async with db.session() as s:
        assert (await s.get(ModerationAction, row.id)).status == "done"


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
    assert (await sweep_stranded_at(any_db, utcnow() + timedelta(minutes=1)))["replies"] == []
    await any_db.downgrade("0011")
    async with any_db.engine.connect() as conn:
        assert sorted((await conn.execute(text("SELECT dedup_key, status FROM replies"))).all()) == [
            ("a", "sending"), ("b", "sent")]
        with pytest.raises(Exception):  # noqa: B017 - the column is gone, whatever the driver calls it
            await conn.execute(text("SELECT claimed_at FROM moderation_actions"))


async def sweep_stranded_at(db, now):  # noqa: ANN001, ANN201
    from service.dispatch import sweep_stranded

    return await sweep_stranded(db, now, BOUND)
