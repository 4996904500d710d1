"""The stage worker's watchdog (a stage that hangs fails like one that raises, so its message is
isolated and dead-lettered) and its retries one by one, which wait out a database that stops
answering midway instead of failing the message in hand."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from worker_fakes import Context

from service import workers
from service.bus.memory import InProcessBus
from service.settings import load_settings
from service.workers import StageWorker

T = "route"


class Stage:
    """Fails a batch holding ``poison``; hangs on ``hang`` and on every ``stall…``; ``drop`` takes the database down (for
    ``outage`` seconds) the first time it is handled alone, failing it."""

    name = T

    def __init__(self, outage: float = 0.3) -> None:
        self.ctx = Context()
        self.outage = outage
        self.calls: Counter[str] = Counter()
        self.done: list[tuple[str, int]] = []
        self.dropped = False
        self.down = asyncio.Event()
        self.hanging = asyncio.Event()

    async def handle(self, batch):
        self.calls.update(e.key for e in batch)
        keys = [e.key for e in batch]
        if not self.ctx.db.up:
            raise ConnectionError("connection refused")
        if "hang" in keys or any(k.startswith("stall") for k in keys):  # one poison; a shared stall
            self.hanging.set()
            await asyncio.sleep(3600)
        if "poison" in keys:
            raise ValueError("not a mention")
        if keys == ["drop"] and not self.dropped:  # PostgreSQL restarts under the retries one by one
            self.dropped = True
            self.ctx.db.up = False
            self.down.set()
            asyncio.get_running_loop().call_later(self.outage, setattr, self.ctx.db, "up", True)
            raise ConnectionError("terminating connection due to administrator command")
        self.done += [(e.key, e.attempts) for e in batch]
        return []


async def drain(worker: StageWorker) -> None:
    while await worker.run_once():
        pass


@pytest.fixture
def quick_backoff(monkeypatch):
    monkeypatch.setattr(workers, "OUTAGE_BACKOFF", (0.05, 0.1))


async def test_a_hanging_message_is_cancelled_by_the_watchdog_and_dead_lettered_alone():
    bus = InProcessBus(max_deliveries=3)
    await bus.ensure_group(T, T)
    await bus.publish_many(T, [("a", {}), ("hang", {}), ("b", {})])
    stage = Stage()
    worker = StageWorker(bus, stage, batch_size=50, block_ms=10, timeout=0.2)
    await asyncio.wait_for(drain(worker), 10)
    assert sorted(stage.done) == [("a", 1), ("b", 1)]
    [dead] = await bus.dead_letters()
    assert (dead.key, dead.attempts) == ("hang", 3)
    assert dead.reason.startswith("StageTimeout: not handled within 0.2 s")
    # in the batch, then alone (the batch hung on it: two attempts), then its last attempt alone
    assert stage.calls["hang"] == 3
    assert (await bus.lag(T, T), await bus.pending(T, T)) == (0, 0)


async def test_each_attempt_of_a_hanging_message_costs_one_timeout_also_when_it_shares_a_batch():
    """The hanging message hangs its batch, then hangs alone: that is two time-outs, and two of its
    attempts. Its retry read in one batch with new messages does the same; the others of either
    batch are handled once each, and the stage is started on the hanging message once per attempt."""
    timeout, attempts = 0.3, 4
    bus = InProcessBus(max_deliveries=attempts)
    await bus.ensure_group(T, T)
    await bus.publish_many(T, [("a", {}), ("hang", {})])
    stage = Stage()
    worker = StageWorker(bus, stage, batch_size=50, block_ms=10, timeout=timeout)
    started = time.monotonic()
    draining = asyncio.create_task(drain(worker))
    await asyncio.wait_for(stage.hanging.wait(), 5)
    await bus.publish_many(T, [("c", {}), ("d", {})])  # read with the hanging message's retry
    await asyncio.wait_for(draining, 20)
    elapsed = time.monotonic() - started
    [dead] = await bus.dead_letters()
    assert (dead.key, dead.attempts) == ("hang", attempts) and "StageTimeout" in dead.reason
    assert stage.calls == Counter({"hang": attempts, "a": 2, "c": 2, "d": 2})  # in a batch that hung, then alone
    assert sorted(stage.done) == [("a", 1), ("c", 1), ("d", 1)]
    assert attempts * timeout <= elapsed < (attempts + 0.75) * timeout  # before: six time-outs


async def test_a_stall_shared_by_several_messages_costs_each_one_attempt_per_round():
    """Two messages hang alone after their batch hung: a dependency stalls, neither is what the
    batch hung on, so each round costs each one attempt (not two: buried after half the rounds)."""
    attempts = 3
    bus = InProcessBus(max_deliveries=attempts)
    await bus.ensure_group(T, T)
    await bus.publish_many(T, [("stall-a", {}), ("ok", {}), ("stall-b", {})])
    stage = Stage()
    worker = StageWorker(bus, stage, batch_size=50, block_ms=10, timeout=0.1)
    await asyncio.wait_for(drain(worker), 10)
    dead = await bus.dead_letters()
    assert sorted((d.key, d.attempts) for d in dead) == [("stall-a", attempts), ("stall-b", attempts)]
    assert all(d.reason.startswith("StageTimeout") for d in dead)
    assert stage.calls == Counter({"stall-a": 2 * attempts, "stall-b": 2 * attempts, "ok": 2})  # in a batch, alone
    assert stage.done == [("ok", 1)]
    assert (await bus.lag(T, T), await bus.pending(T, T)) == (0, 0)


async def test_a_stop_while_the_stage_works_is_a_cancel_not_a_failure():
    bus = InProcessBus(max_deliveries=1)
    await bus.ensure_group(T, T)
    await bus.publish(T, {}, "hang")
    worker = StageWorker(bus, Stage(), batch_size=50, block_ms=10, timeout=5)
    handling = asyncio.create_task(worker.run_once())
    await asyncio.sleep(0.2)
    handling.cancel()  # the orchestrator's grace period is over
    with pytest.raises(asyncio.CancelledError):
        await handling
    assert await bus.dead_letters() == []
    assert await bus.pending(T, T) == 1  # delivered again, to the next worker


async def test_the_database_dropping_during_the_retries_one_by_one_is_waited_out(quick_backoff):
    """A poison message sends the batch one by one; midway the database restarts: the message in
    hand is held until it is back (not failed: with one delivery allowed, that would bury it)."""
    bus = InProcessBus(max_deliveries=1)
    await bus.ensure_group(T, T)
    await bus.publish_many(T, [("k0", {}), ("poison", {}), ("drop", {}), ("k1", {})])
    stage = Stage(outage=0.5)
    worker = StageWorker(bus, stage, batch_size=50, block_ms=10)
    await asyncio.wait_for(drain(worker), 10)
    assert [d.key for d in await bus.dead_letters()] == ["poison"]
    assert stage.done == [("k0", 1), ("drop", 1), ("k1", 1)]
    assert stage.calls["drop"] >= 3  # failed, refused while the database was away, went through
    assert (await bus.lag(T, T), await bus.pending(T, T)) == (0, 0)


async def test_stopping_while_a_message_of_the_retries_one_by_one_waits_leaves_it_and_the_rest(quick_backoff):
    bus = InProcessBus(max_deliveries=1)
    await bus.ensure_group(T, T)
    await bus.publish_many(T, [("poison", {}), ("drop", {}), ("k1", {})])
    stage = Stage(outage=60)
    worker = StageWorker(bus, stage, batch_size=50, block_ms=10)
    handling = asyncio.create_task(worker.run_once())
    await asyncio.wait_for(stage.down.wait(), 5)
    await asyncio.sleep(0.2)
    worker.stop.set()
    assert await asyncio.wait_for(handling, 5) == 3
    assert [d.key for d in await bus.dead_letters()] == ["poison"]
    assert await bus.pending(T, T) == 2  # "drop" and "k1": delivered again, attempts unspent
    assert stage.done == []


def test_the_watchdog_is_a_setting(monkeypatch):
    monkeypatch.delenv("SOCIALCARE_STAGE_TIMEOUT_SECONDS", raising=False)
    assert load_settings().stage_timeout_seconds == 300.0 == workers.STAGE_TIMEOUT_S
    monkeypatch.setenv("SOCIALCARE_STAGE_TIMEOUT_SECONDS", "42.5")
    assert load_settings().stage_timeout_seconds == 42.5
    monkeypatch.setenv("SOCIALCARE_STAGE_TIMEOUT_SECONDS", "0")
    with pytest.raises(ValueError, match="stage_timeout_seconds"):
        load_settings()
