"""A graceful stop (SIGTERM) during an act batch never leaves a reply ``sending`` nor sends one twice.
With Redis Streams the send under way finishes (a cancel waits for it and the commit of its
outcome), no other starts, the batch's message stays unacknowledged, and its redelivery after the
restart sends the rest. With the in-process bus, whose messages die with the process, the batch goes
on to its end within the stop's time; what a cancel leaves ``pending`` the pacer's pass sends once
older than the stranded bound (so does it what any dead deliverer left unclaimed). On SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from privacy_support import World, delete_redis_keys, settings_for
from pydantic import ValidationError
from sqlalchemy import select
from worker_fakes import SlowX

from models import ModerationAction, Reply, RouteDecision
from models.base import utcnow
from service.bus.memory import InProcessBus
from service.dispatch import HELD, Dispatcher
from service.pipeline import Pipeline
from service.settings import load_settings
from service.stages.base import StageContext

N = 8
DELAY = 0.25  # one platform call
BOUND = timedelta(minutes=10)  # Settings.stranded_send_minutes


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):  # noqa: ANN204
        return self.now


async def batch_of_replies(world: World) -> list[int]:
    """``N`` posts routed to the agents, each with an agent's public reply committed, not sent yet."""
    ids = []
    for i in range(N):
        mid = await world.ingest(world.post(f"my order {i} never arrived", author=f"fan{i}"))
        async with world.db.session() as s:
            s.add(RouteDecision(mention_id=mid, outcome="agent_queue", router_version="t", reason="an agent answers"))
            s.add(Reply(dedup_key=f"agent:{mid}", mention_id=mid, platform="x", kind="agent", visibility="public",
                        text=f"Sorry fan{i}, we're on it", status="pending", sent_by="alice"))
            await s.commit()
        ids.append(mid)
    return ids


async def replies(db) -> dict[str, int]:  # noqa: ANN001
    async with db.session() as s:
        out: dict[str, int] = {}
        for status in await s.scalars(select(Reply.status)):
            out[status] = out.get(status, 0) + 1
        return out


@pytest.fixture
async def redis_bus(redis_url, bus_prefix):  # noqa: ANN001, ANN201
    from service.bus.redis_streams import RedisStreamsBus

    bus = RedisStreamsBus(redis_url, prefix=bus_prefix, max_deliveries=5)
    await bus.start()
    yield bus
    await bus.close()
    delete_redis_keys(redis_url, bus_prefix)


async def act_pipeline(world: World, bus, mention_ids: list[int]) -> Pipeline:  # noqa: ANN001
    """The act stage alone, started on ``bus`` with the act messages of ``mention_ids`` waiting."""
    await bus.ensure_group("act", "act")
    await bus.publish_many("act", [(f"act:{m}", {"mention_id": m}) for m in mention_ids])
    pipeline = Pipeline(StageContext(settings=world.settings, db=world.db, connectors=world.connectors), bus,
                        stages=["act"], batch_size=50, block_ms=50)
    await pipeline.start()
    return pipeline


async def answered_once(world: World, x: SlowX, mention_ids: list[int]) -> bool:
    return sorted(a.target_external_id for a in x.calls) == sorted(
        [(await world.mention(m)).external_id for m in mention_ids])


@pytest.mark.parametrize("drain_timeout", [30.0, 0.01], ids=["stops-at-the-next-send", "cancelled-mid-send"])
async def test_a_stop_during_an_act_batch_on_redis_strands_nothing_and_the_rest_goes_after_the_restart(
        db, tmp_path, redis_bus, drain_timeout):
    x = SlowX(DELAY)
    world = World(db, settings_for(tmp_path, db.url, dry_run=False), {"x": x})
    mention_ids = await batch_of_replies(world)
    bus = redis_bus
    pipeline = await act_pipeline(world, bus, mention_ids)
    await asyncio.wait_for(x.started.wait(), 10)  # the batch's first platform call is under way
    started = time.monotonic()
    await pipeline.stop(drain_timeout=drain_timeout)
    assert time.monotonic() - started < DELAY * 4  # not the whole batch: N calls would take N x DELAY

    left = await replies(db)
    assert "sending" not in left and "unknown" not in left
    assert left.get("sent", 0) == len(x.calls) >= 1 and left.get("pending", 0) == N - len(x.calls) > 0
    assert await bus.pending("act", "act") == N  # nothing acknowledged: the whole batch comes again

    bus.claim_idle_ms = 50  # the restarted worker claims the stopped one's messages at once
    x.delay = 0.0
    restarted = Pipeline(pipeline.ctx, bus, stages=["act"], batch_size=50, block_ms=50)
    await restarted.start()
    try:
        await restarted.wait_idle(timeout=30)
    finally:
        await restarted.stop()
    assert await replies(db) == {"sent": N} and await answered_once(world, x, mention_ids)
    assert await bus.dead_letters() == []


async def test_the_act_stage_halted_between_two_batches_sends_nothing_and_leaves_the_message(db, tmp_path):
    from service.bus.memory import InProcessBus
    from service.dispatch import SendsStopped

    x = SlowX(0.0)
    world = World(db, settings_for(tmp_path, db.url, dry_run=False), {"x": x})
    [mid, *_] = await batch_of_replies(world)
    bus = InProcessBus()
    await bus.ensure_group("act", "act")
    await bus.publish("act", {"mention_id": mid}, key=f"act:{mid}")
    world.act.halt()
    batch = await bus.read("act", "act", "w", 10, 10)
    with pytest.raises(SendsStopped):
        await world.act.handle(batch)
    assert x.calls == [] and (await replies(db)).get("pending") == N


async def test_a_stop_with_the_in_process_bus_lets_the_act_batch_finish(db, tmp_path):
    """The in-process bus dies with the process: a halted batch would never be delivered again."""
    x = SlowX(0.05)
    world = World(db, settings_for(tmp_path, db.url, dry_run=False), {"x": x})
    mention_ids = await batch_of_replies(world)
    bus = InProcessBus(max_deliveries=5)
    await bus.start()
    pipeline = await act_pipeline(world, bus, mention_ids)
    await asyncio.wait_for(x.started.wait(), 10)
    await pipeline.stop(drain_timeout=30.0)
    assert await replies(db) == {"sent": N} and await answered_once(world, x, mention_ids)
    assert await bus.pending("act", "act") == 0  # acknowledged: nothing was left for a redelivery
    await bus.close()


async def test_a_stop_with_the_in_process_bus_cut_short_leaves_the_rest_to_the_pacer(db, tmp_path):
    x = SlowX(DELAY)
    world = World(db, settings_for(tmp_path, db.url, dry_run=False), {"x": x})
    mention_ids = await batch_of_replies(world)
    bus = InProcessBus(max_deliveries=5)
    await bus.start()
    pipeline = await act_pipeline(world, bus, mention_ids)
    await asyncio.wait_for(x.started.wait(), 10)
    await pipeline.stop(drain_timeout=0.01)  # the orchestrator's grace period is shorter than the batch
    await bus.close()  # the process ends, and its messages with it: the next one starts with none
    left = await replies(db)
    assert "sending" not in left and "unknown" not in left
    assert left.get("sent", 0) == len(x.calls) >= 1 and left.get("pending", 0) == N - len(x.calls) > 0

    x.delay, clock = 0.0, Clock()
    pacer = Dispatcher(db, world.connectors, dry_run=False, clock=clock)  # the web process's
    assert await pacer.release_orphans() == 0  # young: a live deliverer may be about to send them
    clock.now += BOUND + timedelta(seconds=1)
    assert await pacer.release_orphans() == N - left["sent"]
    assert await replies(db) == {"sent": N} and await answered_once(world, x, mention_ids)
    assert await pacer.release_orphans() == 0


async def test_the_pacer_takes_up_what_a_dead_deliverer_left_unclaimed_past_the_bound_and_nothing_else(db, tmp_path):
    x = SlowX(0.0)
    world = World(db, settings_for(tmp_path, db.url, dry_run=False), {"x": x})
    old, young = utcnow() - BOUND - timedelta(minutes=1), utcnow()
    posts = [await world.ingest(world.post(f"my order {i} never arrived", author=f"fan{i}")) for i in range(6)]
    orphan, status, held, fresh, hidden, api = posts
    async with db.session() as s:
        for mid, kind, created, error in ((orphan, "agent", old, None), (status, "status", old, None),
                                          (held, "agent", old, f"{HELD}hiding its post is unknown"),
                                          (fresh, "agent", young, None)):
            s.add(Reply(dedup_key=f"{kind}:{mid}", mention_id=mid, platform="x", kind=kind, text="on it",
                        status="pending", error=error, created_at=created))
        for mid, action, rule, status_ in ((held, "hide", "builtin:pii", "unknown"), (hidden, "hide", "spam", "queued"),
                                           (api, "hide", "api", "queued")):
            s.add(ModerationAction(dedup_key=f"{rule}:{mid}", mention_id=mid, action=action, rule=rule, reason="r",
                                   status=status_, created_at=old))
        await s.commit()
    pacer = Dispatcher(db, world.connectors, dry_run=False)
    assert await pacer.perform_stranded() == 1  # the spam rule's hide, left queued by a dead act stage
    assert await pacer.release_orphans() == 1
    hidden_post, orphan_post = (await world.mention(hidden)).external_id, (await world.mention(orphan)).external_id
    assert [(a.kind, a.target_external_id) for a in x.calls] == [("hide", hidden_post), ("public_reply", orphan_post)]
    async with db.session() as s:
        left = dict((await s.execute(select(Reply.mention_id, Reply.status))).all())
        actions = dict((await s.execute(select(ModerationAction.rule, ModerationAction.status))).all())
    # an incident's status reply waits queued (paced); a held one is release_held's; a young one may be under way
    assert left == {orphan: "sent", status: "pending", held: "pending", fresh: "pending"}
    assert actions == {"builtin:pii": "unknown", "spam": "done", "api": "queued"}  # the API's kinds are its own


def test_the_drain_timeout_is_a_typed_setting():
    assert load_settings().shutdown_batch_seconds == 8.0
    assert load_settings(shutdown_batch_seconds="2.5").shutdown_batch_seconds == 2.5
    with pytest.raises(ValidationError):
        load_settings(shutdown_batch_seconds=-1)
