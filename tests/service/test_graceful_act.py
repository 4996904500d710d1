"""A graceful stop (SIGTERM) during an act batch: the send under way finishes (a cancel waits for it
and the commit of its outcome), no other starts, the batch's message stays unacknowledged, and its
redelivery after the restart sends the rest — no reply left ``sending``, none sent twice. On SQLite
and PostgreSQL, with the in-process bus and Redis Streams."""

from __future__ import annotations

import asyncio
import time

import pytest
from privacy_support import World, settings_for
from pydantic import ValidationError
from sqlalchemy import select

from listener.protocol import ActionResult
from models import Reply, RouteDecision
from service.pipeline import Pipeline
from service.settings import load_settings
from service.stages.base import StageContext

N = 8
DELAY = 0.25  # one platform call


class SlowX:
    """X, answering each call after ``delay`` seconds; records the calls it completed."""

    def __init__(self, delay: float) -> None:
        self.name, self.platform, self.delay, self.calls = "slow-x", "x", delay, []
        self.started = asyncio.Event()

    async def perform(self, action):  # noqa: ANN001, ANN201
        self.started.set()
        await asyncio.sleep(self.delay)
        self.calls.append(action)
        return ActionResult(ok=True, external_ids=[f"r{len(self.calls)}"])


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


@pytest.mark.parametrize("drain_timeout", [30.0, 0.01], ids=["stops-at-the-next-send", "cancelled-mid-send"])
async def test_a_stop_during_an_act_batch_strands_nothing_and_the_rest_goes_after_the_restart(
        db, tmp_path, make_bus, drain_timeout):
    x = SlowX(DELAY)
    world = World(db, settings_for(tmp_path, db.url, dry_run=False), {"x": x})
    mention_ids = await batch_of_replies(world)
    bus = await make_bus(5)
    await bus.ensure_group("act", "act")
    await bus.publish_many("act", [(f"act:{m}", {"mention_id": m}) for m in mention_ids])
    ctx = StageContext(settings=world.settings, db=db, connectors=world.connectors)
    pipeline = Pipeline(ctx, bus, stages=["act"], batch_size=50, block_ms=50)
    await pipeline.start()
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
    restarted = Pipeline(ctx, bus, stages=["act"], batch_size=50, block_ms=50)
    await restarted.start()
    try:
        await restarted.wait_idle(timeout=30)
    finally:
        await restarted.stop()
    assert await replies(db) == {"sent": N}
    assert sorted(a.target_external_id for a in x.calls) == sorted(
        [(await world.mention(m)).external_id for m in mention_ids])  # each post answered once
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


def test_the_drain_timeout_is_a_typed_setting():
    assert load_settings().shutdown_batch_seconds == 8.0
    assert load_settings(shutdown_batch_seconds="2.5").shutdown_batch_seconds == 2.5
    with pytest.raises(ValidationError):
        load_settings(shutdown_batch_seconds=-1)
