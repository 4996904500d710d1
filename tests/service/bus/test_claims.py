"""Claims, on both buses: a delivery whose consumer died is taken over one at a time (a message that
kills its consumer spends its own attempts only), and a consumer still at work on its batch — slow,
hung until its watchdog fires, or holding it through a database outage — renews its claim, so no
other consumer takes the batch over meanwhile nor spends an attempt of it.

The worker tests run real :class:`~service.workers.StageWorker` s (on Redis each with its own client,
as separate processes have) on fake stages; a "crash" is the worker's task cancelled while it is
stuck in a message, as the kernel's OOM killer would end the process, renewals and all."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from bus_helpers import CLAIM_IDLE_MS, MAX_DELIVERIES
from worker_fakes import Context

from service import workers
from service.workers import StageWorker

T = G = "route"  # any stage name but triage (whose worker instruments the model)
IDLE = CLAIM_IDLE_MS / 1000


async def settle(bus, deadline: float) -> None:
    """Wait until the group has nothing unread and nothing unacknowledged."""
    while (await bus.lag(T, G), await bus.pending(T, G)) != (0, 0):
        assert time.monotonic() < deadline, "the stream did not drain in time"
        await asyncio.sleep(0.05)


async def stop_all(stop: asyncio.Event, tasks: list[asyncio.Task]) -> None:
    """Stop the workers gracefully (cancelling one in a Redis call can hang it: redis-py 8.2)."""
    stop.set()
    _, left = await asyncio.wait(tasks, timeout=10)
    for t in left:
        t.cancel()
    assert not left, "a worker did not stop"


# --- the bus: claims come one at a time; renewals keep a delivery and spend nothing ---------------

async def test_stale_deliveries_are_claimed_one_at_a_time_and_a_read_filling_a_batch_claims_none(open_bus):
    dead, other = await open_bus(), await open_bus()
    await dead.ensure_group(T, G)
    await dead.publish_many(T, [(f"k{i}", {"i": i}) for i in range(4)])
    lost = await dead.read(T, G, "dead", 10, 0)
    await asyncio.sleep(IDLE + 0.15)
    assert await other.read(T, G, "other", 10, 0, claim=False) == []  # new ones only: there are none
    batches = [await other.read(T, G, "other", 200, 0) for _ in range(4)]
    assert [[(e.key, e.attempts) for e in b] for b in batches] == [[(f"k{i}", 2)] for i in range(4)]
    assert [b[0].id for b in batches] == [e.id for e in lost]
    assert await other.read(T, G, "other", 200, 0) == []


async def test_a_renewed_delivery_is_not_claimed_and_renewing_spends_no_attempt(open_bus):
    worker, other = await open_bus(), await open_bus()
    await worker.ensure_group(T, G)
    await worker.publish_many(T, [(f"k{i}", {}) for i in range(3)])
    held = await worker.read(T, G, "worker", 10, 0)
    ids = [e.id for e in held]
    for _ in range(4):  # twice the claim-idle time in all, renewed at every half of it
        await asyncio.sleep(IDLE / 2)
        assert await worker.renew(T, G, "worker", ids) == ids
        assert await other.read(T, G, "other", 10, 0) == []  # nothing to take over
    await worker.ack(T, G, [ids[0]])
    assert await worker.renew(T, G, "worker", ids) == ids[1:]  # an acked one is no longer held
    await asyncio.sleep(IDLE + 0.15)  # then the worker dies: its renewals stop
    [claimed] = await other.read(T, G, "other", 10, 0)
    assert (claimed.id, claimed.attempts) == (ids[1], 2)  # the renewals spent no attempt
    assert await worker.renew(T, G, "worker", ids) == [ids[2]]  # nor take back what another took over
    assert await other.renew(T, G, "other", ids) == [ids[1]]


async def test_a_stale_delivery_behind_many_held_ones_is_still_found(open_bus):
    """Live consumers hold (and renew) a few large batches; the one entry of a consumer that died
    comes after them in the stream (XAUTOCLAIM COUNT 1 would look at ten of them and give up)."""
    live, dead, other = await open_bus(), await open_bus(), await open_bus()
    await live.ensure_group(T, G)
    await live.publish_many(T, [(f"held{i}", {}) for i in range(30)])
    held = [e.id for e in await live.read(T, G, "live", 30, 0)]
    await live.publish(T, {}, "orphan")
    [orphan] = await dead.read(T, G, "dead", 10, 0)
    for _ in range(3):
        await asyncio.sleep(IDLE / 2)
        await live.renew(T, G, "live", held)
    [claimed] = await other.read(T, G, "other", 10, 0)
    assert (claimed.key, claimed.id, claimed.attempts) == ("orphan", orphan.id, 2)


# --- workers: a crash, a hang, an outage, a slow batch --------------------------------------------

class Poisoned:
    """Handles what it is given, unless ``poison`` is among it: then it never returns (the process is
    stuck there until it is killed, or the watchdog cancels it)."""

    name = T

    def __init__(self) -> None:
        self.ctx = None
        self.done: Counter[str] = Counter()  # completed handlings per key
        self.stuck = asyncio.Event()

    async def handle(self, batch):
        if any(e.payload.get("poison") for e in batch):
            self.stuck.set()
            await asyncio.sleep(3600)
        self.done.update(e.key for e in batch)
        return []


async def crash_until_drained(open_bus, stage: Poisoned) -> None:
    """Workers, one after the other, each killed (out of memory) while stuck in a poison message, until
    the stream is drained: a worker that ends up with nothing left is stopped gracefully."""
    deadline = time.monotonic() + 30
    for generation in range(MAX_DELIVERIES + 3):
        bus = await open_bus()  # a new process: with Redis, a new connection
        stage.stuck.clear()
        stop = asyncio.Event()
        task = asyncio.create_task(StageWorker(bus, stage, consumer=f"proc{generation}", batch_size=200,
                                               block_ms=50).run(stop))
        while not stage.stuck.is_set() and (await bus.lag(T, G), await bus.pending(T, G)) != (0, 0):
            assert time.monotonic() < deadline, "the stream did not drain in time"
            await asyncio.sleep(0.02)
        if not stage.stuck.is_set():  # all done
            await stop_all(stop, [task])
            return
        task.cancel()  # killed while stuck in the poison message
        await asyncio.gather(task, return_exceptions=True)
    raise AssertionError("the poison message was never dead-lettered")


async def test_a_message_that_kills_its_worker_is_dead_lettered_alone_and_the_rest_handled_once(open_bus):
    """Ten messages, the fifth kills every worker that handles it (it is restarted each time): it
    alone is dead-lettered, the nine others are each handled exactly once."""
    first = await open_bus()
    await first.ensure_group(T, G)
    await first.publish_many(T, [(f"k{i}", {"poison": i == 4}) for i in range(10)])
    stage = Poisoned()
    await crash_until_drained(open_bus, stage)
    dead = await first.dead_letters(T)
    assert [d.key for d in dead] == ["k4"]
    assert dead[0].attempts == MAX_DELIVERIES + 1 and "without an ack" in dead[0].reason
    assert stage.done == Counter({f"k{i}": 1 for i in range(10) if i != 4})
    assert (await first.lag(T, G), await first.pending(T, G)) == (0, 0)


@pytest.mark.parametrize("killer_at", ["its-first-attempt", "its-last-attempt"])
async def test_a_message_at_its_last_attempt_in_the_batch_of_one_that_kills_its_worker_still_runs_alone(
        open_bus, killer_at):
    """A message failed by itself until its last attempt is read in one batch with a message that
    kills the worker: it was never handled alone at that attempt, so its claim spends none and it
    runs once, alone (and goes through). The killer alone is dead-lettered, after its own attempts;
    one at its last attempt too runs alone once more, and no more."""
    first = await open_bus()
    await first.ensure_group(T, G)
    last = [("last", {})] + ([("killer", {"poison": True})] if killer_at == "its-last-attempt" else [])
    await first.publish_many(T, last)
    for _ in range(MAX_DELIVERIES - 1):  # failed by themselves, up to their last attempt
        for env in await first.read(T, G, "earlier", 10, 0):
            assert not await first.fail(T, G, env, "ValueError: not yet")
    if killer_at == "its-first-attempt":
        await first.publish(T, {"poison": True}, "killer")
    stage = Poisoned()
    await crash_until_drained(open_bus, stage)
    dead = await first.dead_letters(T)
    assert [(d.key, "without an ack" in d.reason) for d in dead] == [("killer", True)]
    assert stage.done == Counter({"last": 1})
    assert (await first.lag(T, G), await first.pending(T, G)) == (0, 0)


async def test_a_hanging_message_is_dead_lettered_after_its_attempts_and_the_stream_flows_on(open_bus):
    stage, stop = Poisoned(), asyncio.Event()
    buses = [await open_bus() for _ in range(2)]
    await buses[0].ensure_group(T, G)
    tasks = [asyncio.create_task(StageWorker(b, stage, consumer=f"w{i}", batch_size=200, block_ms=50,
                                             timeout=0.3).run(stop)) for i, b in enumerate(buses)]
    try:
        await buses[0].publish_many(T, [(f"k{i}", {"poison": i == 4}) for i in range(10)])
        await stage.stuck.wait()
        await buses[0].publish_many(T, [(f"k{i}", {}) for i in range(10, 20)])  # behind the hang
        deadline = time.monotonic() + 30
        while not await buses[0].dead_letters(T):
            assert time.monotonic() < deadline, "the hanging message was never dead-lettered"
            await asyncio.sleep(0.05)
        await settle(buses[0], deadline)
    finally:
        await stop_all(stop, tasks)
    [dead] = await buses[0].dead_letters(T)
    assert (dead.key, dead.attempts) == ("k4", MAX_DELIVERIES) and "StageTimeout" in dead.reason
    assert stage.done == Counter({f"k{i}": 1 for i in range(20) if i != 4})


class Recording:
    """A stage that fails while its database is down, and otherwise takes ``seconds`` per batch."""

    name = T

    def __init__(self, seconds: float = 0.0) -> None:
        self.ctx = Context()
        self.seconds = seconds
        self.started: Counter[str] = Counter()
        self.done: list[tuple[str, int]] = []  # (key, attempts) of each completed handling
        self.at_once = self.most_at_once = 0

    async def handle(self, batch):
        if not self.ctx.db.up:
            raise ConnectionError("connection refused")
        self.started.update(e.key for e in batch)
        self.at_once += 1
        self.most_at_once = max(self.most_at_once, self.at_once)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.at_once -= 1
        self.done += [(e.key, e.attempts) for e in batch]
        return []


async def test_a_batch_held_through_a_database_outage_longer_than_the_claim_idle_time_stays_its_workers(
        open_bus, monkeypatch):
    monkeypatch.setattr(workers, "OUTAGE_BACKOFF", (0.05, 0.1))
    stage, stop = Recording(), asyncio.Event()
    stage.ctx.db.up = False
    buses = [await open_bus() for _ in range(MAX_DELIVERIES + 2)]  # more idle workers than attempts
    await buses[0].ensure_group(T, G)
    tasks = [asyncio.create_task(StageWorker(b, stage, consumer=f"w{i}", batch_size=200, block_ms=50).run(stop))
             for i, b in enumerate(buses)]
    try:
        await buses[0].publish_many(T, [(f"k{i}", {}) for i in range(3)])
        await asyncio.sleep(2.5 * IDLE)  # the database restarts
        stage.ctx.db.up = True
        await settle(buses[0], time.monotonic() + 20)
    finally:
        await stop_all(stop, tasks)
    assert await buses[0].dead_letters(T) == []
    assert sorted(stage.done) == [(f"k{i}", 1) for i in range(3)]  # once each, no attempt spent


async def test_a_slow_batch_is_not_handled_by_a_second_worker_meanwhile(open_bus):
    stage, stop = Recording(seconds=2.5 * IDLE), asyncio.Event()
    buses = [await open_bus() for _ in range(3)]
    await buses[0].ensure_group(T, G)
    tasks = [asyncio.create_task(StageWorker(b, stage, consumer=f"w{i}", batch_size=200, block_ms=50).run(stop))
             for i, b in enumerate(buses)]
    try:
        await buses[0].publish_many(T, [(f"k{i}", {}) for i in range(3)])
        await asyncio.sleep(0.1)
        await settle(buses[0], time.monotonic() + 20)
    finally:
        await stop_all(stop, tasks)
    assert stage.started == Counter({f"k{i}": 1 for i in range(3)})
    assert stage.most_at_once == 1
    assert sorted(stage.done) == [(f"k{i}", 1) for i in range(3)]
    assert await buses[0].dead_letters(T) == []


@pytest.mark.parametrize("ending", ["done", "killed"])
async def test_a_worker_renews_its_batch_while_at_it_and_stops_with_it(open_bus, monkeypatch, ending):
    """Renewals every third of the claim-idle time while the batch is handled; none once it is done
    or its worker is killed (nor any task left behind)."""
    bus = await open_bus()
    await bus.ensure_group(T, G)
    await bus.publish(T, {"poison": ending == "killed"}, "k")
    renewals: list[float] = []
    renew = bus.renew

    async def counted(*args):
        renewals.append(time.monotonic())
        return await renew(*args)

    monkeypatch.setattr(bus, "renew", counted)
    stage = Poisoned() if ending == "killed" else Recording(seconds=1.2 * IDLE)
    before = set(asyncio.all_tasks())
    handling = asyncio.create_task(StageWorker(bus, stage, batch_size=10, block_ms=50).run_once())
    await asyncio.sleep(1.2 * IDLE)
    if ending == "killed":
        handling.cancel()
    await asyncio.gather(handling, return_exceptions=True)
    renewed = len(renewals)
    assert renewed >= 2  # at a third, two thirds (and all) of the claim-idle time
    await asyncio.sleep(IDLE / 2)
    assert len(renewals) == renewed
    assert {t for t in asyncio.all_tasks() - before if not t.done()} == set()
