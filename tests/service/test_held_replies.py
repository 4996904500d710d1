"""A public reply held back while a hide or removal of its post may not have happened is never held for
ever: any later hide, removal or filter of the post that is done, recorded or dry-run settles it; a
post deleted on its platform or erased meanwhile cancels it; a hide put back by the sweep goes before
a queued status reply; the pacer's release of a held reply and the act stage's redelivery of the same
post never take each other's send for a dead one. A failed hide holds nothing (X cannot hide a
top-level tweet). On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from privacy_support import World, settings_for
from sqlalchemy import select, update
from worker_fakes import SlowX

from escalation.public_guard import gone_refusal
from models import AuditEvent, Mention, ModerationAction, Reply, RouteDecision
from models.mentions import ERASED_TEXT
from service.bus import Envelope
from service.dispatch import HELD, Dispatcher
from service.privacy import erase_posts


async def held(world: World, *, hide_status: str = "unknown", mid: int | None = None) -> tuple[int, int, int]:
    """A post (``mid``, or a new one) whose hide is ``hide_status``, and a public reply to it,
    delivered: (post, hide, reply)."""
    if mid is None:
        mid = await world.ingest(world.post("@AcmeHelp call me on +1 555 010 0199", author="ana"))
    async with world.db.session() as s:
        hide = ModerationAction(dedup_key=f"hide:{mid}", mention_id=mid, action="hide", reason="personal data",
                                rule="builtin:pii", status=hide_status, details={"interrupted": 3})
        reply = Reply(dedup_key=f"agent:{mid}", mention_id=mid, platform="x", visibility="public", kind="agent",
                      text="Sorry ana, we're on it", status="pending", sent_by="alice")
        s.add_all([hide, reply])
        await s.commit()
    await Dispatcher(world.db, world.connectors, dry_run=False).deliver([reply.id])
    return mid, hide.id, reply.id


async def reply_of(db, reply_id: int) -> Reply:  # noqa: ANN001
    async with db.session() as s:
        return await s.get(Reply, reply_id)


async def later_action(db, mid: int, action: str, status: str) -> None:  # noqa: ANN001
    async with db.session() as s:
        s.add(ModerationAction(dedup_key=f"later:{mid}:{action}", mention_id=mid, action=action, reason="r",
                               actor="session:mo", status=status))
        await s.commit()


async def test_a_held_reply_says_why_and_how_to_release_it_safely(db, tmp_path):
    x = SlowX()
    world = World(db, settings_for(tmp_path, db.url, dry_run=False), {"x": x})
    _, hide_id, reply_id = await held(world)
    reply = await reply_of(db, reply_id)
    assert reply.status == "pending" and reply.error.startswith(HELD) and f"#{hide_id}" in reply.error
    assert "moderation page" in reply.error and "API" in reply.error  # record a hide or removal there
    assert "failed" not in reply.error and "status" not in reply.error  # no row to edit by hand
    assert x.calls == []


@pytest.mark.parametrize(("action", "status"), [("filter", "done"), ("remove", "recorded"), ("hide", "dry_run"),
                                                ("remove", "done"), ("hide", "done")])
async def test_any_later_hide_removal_or_filter_settled_releases_the_held_reply(db, tmp_path, action, status):
    x = SlowX()
    world = World(db, settings_for(tmp_path, db.url, dry_run=False), {"x": x})
    mid, _, reply_id = await held(world)
    pacer = Dispatcher(db, world.connectors, dry_run=False)
    assert await pacer.release_held() == 0
    await later_action(db, mid, action, status)  # a hold's filter hid it, a moderator's removal was recorded...
    assert await pacer.release_held() == 1
    reply = await reply_of(db, reply_id)
    assert (reply.status, reply.error) == ("sent", None) and [a.kind for a in x.calls] == ["public_reply"]


@pytest.mark.parametrize(("action", "status", "when"), [("hide", "failed", "later"), ("filter", "cancelled", "later"),
                                                        ("lock", "done", "later"), ("remove", "done", "earlier")])
async def test_what_does_not_show_the_post_hidden_since_releases_nothing(db, tmp_path, action, status, when):
    x = SlowX()
    world = World(db, settings_for(tmp_path, db.url, dry_run=False), {"x": x})
    mid = await world.ingest(world.post("@AcmeHelp call me on +1 555 010 0199", author="ana"))
    if when == "earlier":  # removed once, shown again since (say), then a hide that may not have happened
        await later_action(db, mid, action, status)
    mid, _, reply_id = await held(world, mid=mid)
    if when == "later":
        await later_action(db, mid, action, status)
    assert await Dispatcher(db, world.connectors, dry_run=False).release_held() == 0
    assert (await reply_of(db, reply_id)).status == "pending" and x.calls == []


async def test_held_replies_to_a_post_deleted_on_its_platform_are_cancelled_not_kept_for_ever(db, tmp_path):
    x = SlowX()
    world = World(db, settings_for(tmp_path, db.url, dry_run=False), {"x": x})
    mid, _, agent_id = await held(world)
    async with db.session() as s:  # an incident's status reply to the same post, held in its queue
        status = Reply(dedup_key=f"status:{mid}", mention_id=mid, platform="x", visibility="public", kind="status",
                       text="we're fixing it", status="queued")
        s.add(status)
        await s.commit()
    pacer = Dispatcher(db, world.connectors, dry_run=False)
    assert await pacer.release_queued() == 0  # held: it takes no slot
    async with db.session() as s:  # its author deletes it (the listener records the deletion)
        await s.execute(update(Mention).where(Mention.id == mid).values(deleted=True))
        await s.commit()
    assert await pacer.release_held() == 2
    gone = gone_refusal(await world.mention(mid)).reason  # "the post was deleted on X: ..."
    for reply_id in (agent_id, status.id):
        assert ((await reply_of(db, reply_id)).status, (await reply_of(db, reply_id)).error) == ("cancelled", gone)
    assert x.calls == [] and await pacer.release_held() == 0
    async with db.session() as s:
        events = list(await s.scalars(select(AuditEvent.object_id).where(AuditEvent.action == "reply.cancelled")))
    assert sorted(events) == sorted([str(agent_id), str(status.id)])


async def test_a_held_reply_to_an_erased_post_is_withdrawn_with_its_words(db, tmp_path):
    x = SlowX()
    world = World(db, settings_for(tmp_path, db.url, dry_run=False), {"x": x})
    mid, _, reply_id = await held(world)
    async with db.session() as s:
        await erase_posts(s, [mid], Counter())
        await s.commit()
    await Dispatcher(db, world.connectors, dry_run=False).release_held()
    reply = await reply_of(db, reply_id)
    assert reply.status in ("deleted", "cancelled") and reply.text == ERASED_TEXT and x.calls == []


async def test_a_failed_hide_holds_nothing(db, tmp_path):
    """X cannot hide a top-level tweet: the hide fails, and the reply goes as it would have without one."""
    x = SlowX()
    world = World(db, settings_for(tmp_path, db.url, dry_run=False), {"x": x})
    _, _, reply_id = await held(world, hide_status="failed")
    assert ((await reply_of(db, reply_id)).status, [a.kind for a in x.calls]) == ("sent", ["public_reply"])


async def test_a_hide_put_back_by_the_sweep_goes_before_a_queued_status_reply_to_its_post(db, tmp_path):
    x = SlowX()
    world = World(db, settings_for(tmp_path, db.url, dry_run=False), {"x": x})
    mid = await world.ingest(world.post("down again, call me on +1 555 010 0199", author="ana"))
    async with db.session() as s:
        s.add(ModerationAction(dedup_key=f"hide:{mid}", mention_id=mid, action="hide", reason="r", status="queued",
                               details={"interrupted": 1}))
        s.add(Reply(dedup_key=f"status:{mid}", mention_id=mid, platform="x", kind="status", text="fixing",
                    status="queued"))
        await s.commit()
    assert await Dispatcher(db, world.connectors, dry_run=False).release_queued() == 1
    assert [a.kind for a in x.calls] == ["hide", "public_reply"]


async def test_the_pacer_releasing_a_held_reply_and_the_act_stage_redelivering_its_post_send_it_once(db, tmp_path):
    x = SlowX()
    world = World(db, settings_for(tmp_path, db.url, dry_run=False), {"x": x})
    mid = await world.ingest(world.post("@AcmeHelp my card 4111 1111 1111 1111 got charged twice", author="sam",
                                        user_id="id-sam"), issue="billing", sensitivity="fraud", pii=True)
    async with db.session() as s:
        s.add(RouteDecision(mention_id=mid, outcome="escalate_private", router_version="t", confidence=0.9,
                            reason="sensitivity is fraud: handled in a private channel", details={"hide_first": True}))
        await s.commit()
    env = Envelope(id="1", topic="act", key=f"m:{mid}", payload={"mention_id": mid})
    await world.act.handle([env])
    async with db.session() as s:  # as if the hide's executor had died mid-call, and the notice waited
        notice = await s.scalar(select(Reply).where(Reply.visibility == "public"))
        await s.execute(update(ModerationAction).where(ModerationAction.action == "hide").values(status="unknown"))
        await s.execute(update(Reply).where(Reply.id == notice.id).values(status="pending", error=None))
        await s.commit()
    await world.act.handle([env])  # held
    assert (await reply_of(db, notice.id)).error.startswith(HELD)
    await later_action(db, mid, "remove", "done")  # settled
    x.delay, x.started, sent_before = 0.3, asyncio.Event(), len(x.calls)
    pacer = asyncio.create_task(Dispatcher(db, world.connectors, dry_run=False).release_held())
    await asyncio.wait_for(x.started.wait(), 5)  # the pacer's platform call is under way
    await world.act.handle([env])  # the act message of the same post, delivered again meanwhile
    assert (await reply_of(db, notice.id)).status == "sending"  # left to its sender
    assert await pacer == 1
    notice = await reply_of(db, notice.id)
    assert (notice.status, notice.error) == ("sent", None)
    assert [a.kind for a in x.calls[sent_before:]] == ["public_reply"]  # once
