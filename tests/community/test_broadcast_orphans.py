"""An incident's replies whose deliverer died between committing them ``pending`` and pacing them (the
console's process killed after an agent posted a status, a CLI command interrupted, an act batch
lost with an in-process bus) are not left ``pending`` for ever: past the stranded bound the pacer's
pass queues them, paced like the others and each sent once. The "fixed" follow-up supersedes them as
it does the queued ones, also one committed after it (a race): nobody is told "we're on it" after it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from community import broadcast
from models import Incident, Reply
from service.dispatch import Dispatcher, run_pacer
from tests.community.test_incidents import POLICY, outage_world, paced, post, sent_to

BOUND = timedelta(minutes=10)  # Settings.stranded_send_minutes, the Dispatcher's default


async def one_pacer_pass(dispatcher: Dispatcher) -> None:
    """One pass of the web process's pacer loop: its own steps, in its own order."""
    stop = asyncio.Event()
    release = dispatcher.release_queued

    async def last_step() -> int:
        try:
            return await release()
        finally:
            stop.set()

    dispatcher.release_queued = last_step
    try:
        await asyncio.wait_for(run_pacer(dispatcher, 3600, stop), 10)
    finally:
        del dispatcher.release_queued


async def statuses(world) -> list[tuple[str, str]]:  # noqa: ANN001
    async with world.db.session() as s:
        return sorted((await s.execute(select(Reply.kind, Reply.status))).all())


async def test_a_status_whose_process_died_before_delivering_it_goes_paced_and_once_after_the_bound(
        world, connectors):
    incident, _ = await outage_world(world, authors=[f"fan{i}" for i in range(5)])
    _, replies = await post(world, incident, "Playback is down; engineers are on it.")  # then the process dies
    dispatcher, clock = paced(world, per_minute=2)
    await one_pacer_pass(dispatcher)
    assert await statuses(world) == [("status", "pending")] * 5  # young: its deliverer may be at it still
    assert connectors["x"].calls == []

    clock.advance((BOUND + timedelta(seconds=1)).total_seconds())
    await one_pacer_pass(dispatcher)
    assert connectors["x"].kinds() == ["public_reply"] * 2  # the channel's pace, as for any status
    assert await statuses(world) == [("status", "queued")] * 3 + [("status", "sent")] * 2
    for _ in range(3):
        clock.advance(61)
        await one_pacer_pass(dispatcher)
    await dispatcher.deliver([r.id for r in replies])  # the deliverer was only slow: nothing twice
    await one_pacer_pass(dispatcher)
    told = await sent_to(world)
    assert len(told) == 5 and all(len(texts) == 1 for texts in told.values())
    assert len(connectors["x"].calls) == 5 and await statuses(world) == [("status", "sent")] * 5


async def test_a_status_left_pending_is_superseded_by_the_fix_and_never_sent_after_it(world, connectors):
    incident, _ = await outage_world(world, authors=["ana", "ben"])
    await post(world, incident, "Investigating.")  # then the process dies
    async with world.db.session() as s:
        _, fixed = await broadcast.close(s, await s.get(Incident, incident.id), "alice", policy=POLICY)
        await s.commit()
    dispatcher, clock = paced(world, per_minute=10)
    await dispatcher.deliver([r.id for r in fixed])
    clock.advance((BOUND + timedelta(seconds=1)).total_seconds())
    await one_pacer_pass(dispatcher)
    assert await statuses(world) == [("status", "superseded")] * 2 + [("status_fixed", "sent")] * 2
    assert sorted(c.text for c in connectors["x"].calls) == sorted(r.text for r in fixed)


async def test_a_status_committed_after_the_fix_it_raced_is_superseded_by_the_safety_net(world, connectors):
    """The act stage read the incident open, an agent closed it with the fix, then the act stage
    committed its status reply and died: the pacer's pass supersedes it rather than send it."""
    incident, ms = await outage_world(world, authors=["ana"])
    update, _ = await post(world, incident, "Investigating.")
    async with world.db.session() as s:
        await broadcast.close(s, await s.get(Incident, incident.id), "alice", policy=POLICY)
        late = Reply(dedup_key=f"incident:{incident.id}:update:{update.id}:author:late", mention_id=ms[0].id,
                     platform="x", visibility="public", kind="status", text="we're on it", status="pending")
        s.add(late)
        await s.commit()
    dispatcher, clock = paced(world, per_minute=10)
    clock.advance((BOUND + timedelta(seconds=1)).total_seconds())
    await one_pacer_pass(dispatcher)
    async with world.db.session() as s:
        late = await s.get(Reply, late.id)
    assert (late.status, late.error) == ("superseded", "the incident was fixed before it was sent")
    assert await statuses(world) == [("status", "superseded")] * 2 + [("status_fixed", "sent")]
    assert [c.text for c in connectors["x"].calls if "we're on it" in c.text] == []
