"""Platform actions and replies about erased posts are cancelled, never performed
(service.privacy_actions): queued before the erasure, written after it, or caught in flight by it.
A fake connector records every platform call; none may name an erased post."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest
from privacy_support import SECRET_KEY, FakeConnector, PausedBus, World, dump, found_in, settings_for
from sqlalchemy import select

from community import moderation
from models import AuditEvent, Mention, ModerationAction, Reply, RouteDecision
from models.db import Database
from models.mentions import ERASED_TEXT
from service import privacy_actions
from service.bus import Envelope
from service.dispatch import Dispatcher
from service.erasure import Subject, erase

MARIA = Subject(platform="x", handle="MariaL")


@pytest.fixture
def x():
    return FakeConnector("x")


@pytest.fixture
def world(db, tmp_path, x):
    return World(db, settings_for(tmp_path, db.url, dry_run=False), {"x": x})


async def maria_post(w: World) -> int:
    """A reply on X (so a hold can hide it there) by Maria."""
    return await w.ingest(w.post("zqxspam buy followers at maria.lopez@example.com", author="MariaL",
                                 name="Maria Lopez", user_id="id-marial", in_reply_to="x-0"))


async def queue_actions(db, mention_id: int) -> list[int]:
    """A hide, and a rule's hold whose filter hides the post meanwhile: both queued for the platform."""
    async with db.session() as s:
        mention = await s.get(Mention, mention_id)
        await moderation.add_action(s, f"mod:{mention_id}", mention, "hide", "spam by MariaL", rule="spam")
        await moderation.add_action(s, f"hold:{mention_id}", mention, "hold", "held: Maria Lopez", rule="spam")
        await s.commit()
        return await moderation.queued_actions(s, [mention_id])


async def actions(db, mention_id: int) -> dict[str, ModerationAction]:
    async with db.session() as s:
        return {a.action: a for a in await s.scalars(select(ModerationAction).where(
            ModerationAction.mention_id == mention_id))}


async def audit(db, action: str) -> list[AuditEvent]:
    async with db.session() as s:
        return list(await s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


async def test_actions_queued_before_the_erasure_are_cancelled_by_it_and_never_performed(world, x):
    mid = await maria_post(world)
    queued = await queue_actions(world.db, mid)
    assert len(queued) == 2
    counts = await erase(world.db, MARIA, actor="dpo", reason="r", secret=SECRET_KEY)
    assert counts["actions_cancelled"] == 2
    # every executor: the community's (as a moderator's review calls it), the stages' and the dispatcher's
    await moderation.execute(world.db, {"x": x}, queued, dry_run=False)
    await privacy_actions.perform_actions(world.db, {"x": x}, queued, dry_run=False)
    assert x.calls == []
    rows = await actions(world.db, mid)
    for kind in ("hide", "filter"):
        assert (rows[kind].status, rows[kind].details, rows[kind].reason) == ("cancelled", {"cancelled": "erased"},
                                                                             ERASED_TEXT)
    assert rows["hold"].status == "reviewed"
    assert await erase(world.db, MARIA, actor="dpo", reason="r", secret=SECRET_KEY) == Counter()  # nothing left


async def test_the_act_stage_performs_nothing_for_a_moderation_decision_made_before_the_erasure(world, x):
    mid = await maria_post(world)
    async with world.db.session() as s:
        s.add(RouteDecision(mention_id=mid, outcome="moderate", reason="spam: buy followers", confidence=1.0,
                            details={"action": "hide", "rule": "spam"}, router_version="test"))
        await s.commit()
    await erase(world.db, MARIA, actor="dpo", reason="r")
    await world.act.handle([Envelope(id="1", topic="act", key=f"m:{mid}", payload={"mention_id": mid})])
    assert x.calls == []
    assert (await actions(world.db, mid))["hide"].status == "cancelled"


async def test_an_action_read_by_the_executor_just_before_the_erasure_committed_is_refused_and_cancelled(
        postgres_url, tmp_path, x):
    """The executor claimed the action (``queued`` to ``sending``); the erasure commits before the
    platform call, leaving the claimed row to its executor. The connector is asked nothing: the
    guard finds the post erased."""
    db = Database(postgres_url)
    await db.upgrade()
    try:
        w = World(db, settings_for(tmp_path, postgres_url, dry_run=False), {"x": x})
        mid = await maria_post(w)
        queued = await queue_actions(db, mid)

        class ErasedMeanwhile(frozenset):  # consulted by the executor between its claim and the call
            def __contains__(self, platform: object) -> bool:
                if not getattr(self, "done", False):
                    self.done = True  # another process erases her now
                    thread = threading.Thread(target=asyncio.run, args=(self.erase(),))
                    thread.start()
                    thread.join()
                return False

            async def erase(self) -> None:
                other = Database(postgres_url)
                try:
                    await erase(other, MARIA, actor="dpo", reason="r")
                finally:
                    await other.close()

        await privacy_actions.perform_actions(db, {"x": x}, queued, dry_run=False, dry_run_channels=ErasedMeanwhile())
        assert x.calls == []
        rows = await actions(db, mid)
        assert {rows[k].status for k in ("hide", "filter")} == {"cancelled"}
        assert {e.details["cancelled"] for e in await audit(db, "privacy.action_cancelled")} == {"erased"}
    finally:
        await db.close()


async def add_reply(db, mention_id: int, status: str = "pending", kind: str = "agent") -> int:
    async with db.session() as s:
        reply = Reply(dedup_key=f"{kind}:{mention_id}:{status}", mention_id=mention_id, platform="x", kind=kind,
                      visibility="public", text="Hi Maria Lopez, we've sent you a DM", status=status, sent_by="alice")
        s.add(reply)
        await s.commit()
        return reply.id


@pytest.mark.parametrize("dry_run", [False, True])
async def test_a_reply_written_after_the_erasure_is_cancelled_not_sent(world, x, dry_run):
    mid = await maria_post(world)
    await erase(world.db, MARIA, actor="dpo", reason="r")
    reply_id = await add_reply(world.db, mid)  # an agent answering the post on screen, erased meanwhile
    queued_id = await add_reply(world.db, mid, status="queued", kind="status")  # waiting for its channel's slot
    dispatcher = Dispatcher(world.db, {"x": x}, dry_run=dry_run)
    await dispatcher.deliver([reply_id])
    assert await dispatcher.release_queued() == 0
    assert x.calls == []
    async with world.db.session() as s:
        for rid in (reply_id, queued_id):
            reply = await s.get(Reply, rid)
            assert (reply.status, reply.error, reply.text) == ("cancelled", "erased", ERASED_TEXT)
    events = await audit(world.db, "privacy.reply_cancelled")
    assert sorted(int(e.object_id) for e in events) == sorted([reply_id, queued_id])
    assert found_in(await dump(world.db), "maria lopez") == []


async def test_a_reply_claimed_while_an_erasure_is_under_way_waits_for_it_and_is_not_sent(postgres_url, tmp_path, x):
    db = Database(postgres_url)
    await db.upgrade()
    try:
        w = World(db, settings_for(tmp_path, postgres_url, dry_run=False), {"x": x})
        mid = await maria_post(w)
        reply_id = await add_reply(db, mid)
        bus = PausedBus()
        erasing = asyncio.create_task(erase(db, MARIA, actor="dpo", reason="r", bus=bus))
        await asyncio.wait_for(bus.reached.wait(), 10)
        delivering = asyncio.create_task(Dispatcher(db, {"x": x}, dry_run=False).deliver([reply_id]))
        await asyncio.sleep(0.5)
        assert not delivering.done() and x.calls == []  # waiting for the post the erasure holds
        bus.release.set()
        await asyncio.wait_for(asyncio.gather(erasing, delivering), 10)
        assert x.calls == []
        async with db.session() as s:
            reply = await s.get(Reply, reply_id)
        assert (reply.status, reply.text) == ("deleted", ERASED_TEXT)  # withdrawn by the erasure
    finally:
        await db.close()
