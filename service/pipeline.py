"""The pipeline in one process: the four stage workers over one bus, and the door into it."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Iterable

from listener.protocol import NormalizedMention
from service.bus import Bus
from service.stages import STAGES, StageContext
from service.stages.act import ActStage
from service.stages.ingest import IngestStage
from service.stages.route import RouteStage
from service.stages.triage import TriageStage
from service.workers import StageWorker, consumer_name

log = logging.getLogger("socialcare.pipeline")
_tuned = False
YOUNG_GC_THRESHOLD = 10_000  # allocations between two young collections (CPython's default: 700)
STAGE_CLASSES = {"ingest": IngestStage, "triage": TriageStage, "route": RouteStage, "act": ActStage}


def ingest_key(m: NormalizedMention) -> str:
    """Idempotency key of an ingest message: an edit, deletion or restore is a new message, a repeat is not.
    A thread's deletion or recovery is keyed by its own time: a topic deleted, recovered and deleted
    again is three messages; one delivered twice is one."""
    key = f"{m.platform}:{m.external_id}"
    if m.event in ("thread_delete", "thread_restore"):
        return f"{key}:{m.event}:{m.created_at.isoformat()}"
    if m.event == "delete":
        return key + ":delete"
    if m.event == "restore":
        key += ":restore"
    return key + (f":edit:{m.edited_at.isoformat()}" if m.edited_at else "")


async def submit(bus: Bus, mentions: Iterable[NormalizedMention]) -> int:
    """Put mentions on the ingest topic (connectors, replay and webhooks all come in here)."""
    now = time.time()
    items = [(ingest_key(m), {"mention": m.to_dict(), "t0": now}) for m in mentions]
    if items:  # durable: the caller saves a cursor or answers a webhook next
        await bus.publish_many("ingest", items, durable=True)
    return len(items)


def tune_collector() -> None:
    """The cyclic garbage collector held the GIL for a tenth of the pipeline's time; two changes,
    once per process:

    * what start-up leaves (libraries, models, indexes) lives as long as the process, so it is
      frozen out of the full passes, each of which walked all of it (a quarter of a second, every
      few thousand mentions);
    * a batch's rows, records and messages die within the batch: a young pass every 700
      allocations caught them alive and promoted them, to be walked again by the older passes;
      one every 10,000 lets them go first (reference counting frees them, not the collector).
    """
    global _tuned
    if not _tuned:
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
        _tuned = True


def redelivers_after_restart(bus: Bus) -> bool:
    """Does a message left unacknowledged outlive this process (Redis Streams), so that a stopping
    act stage may leave the rest of its batch to its redelivery? An in-process bus dies with it."""
    from service.bus.memory import InProcessBus

    return not isinstance(bus, InProcessBus)


def build_stage(name: str, ctx: StageContext):  # noqa: ANN201
    return STAGE_CLASSES[name](ctx)


class Pipeline:
    """Runs ``workers`` consumers per stage as tasks in this process."""

    def __init__(self, ctx: StageContext, bus: Bus, *, stages: Iterable[str] = STAGES, workers: int = 1,
                 batch_size: int | None = None, block_ms: int | None = None) -> None:
        self.ctx = ctx
        self.bus = bus
        self.stop_event = asyncio.Event()
        settings = ctx.settings
        self.workers = [
            StageWorker(bus, build_stage(name, ctx), consumer=consumer_name(name, i),
                        batch_size=batch_size or settings.bus_batch_size,
                        block_ms=block_ms or settings.bus_block_ms, linger_ms=settings.bus_linger_ms,
                        metrics=ctx.metrics, timeout=settings.stage_timeout_seconds)
            for name in stages for i in range(workers)
        ]
        self.tasks: list[asyncio.Task] = []

    def stage(self, name: str):  # noqa: ANN201
        return next(w.stage for w in self.workers if w.stage.name == name)

    async def start(self) -> None:
        for name in {w.stage.name for w in self.workers}:
            await self.bus.ensure_group(name, name)
        for worker in self.workers:  # indexes and caches built before the first message, not during it
            if hasattr(worker.stage, "warm_up"):
                await worker.stage.warm_up()
        tune_collector()
        self.tasks = [asyncio.create_task(w.run(self.stop_event), name=w.consumer) for w in self.workers]

    async def submit(self, mentions: Iterable[NormalizedMention]) -> int:
        return await submit(self.bus, mentions)

    def stage_names(self) -> set[str]:
        return {w.stage.name for w in self.workers}

    async def idle(self, stages: set[str] | None = None) -> bool:
        """Nothing waiting, in hand or being worked on in these stages (every stage by default)."""
        names = self.stage_names() if stages is None else self.stage_names() & stages
        for name in names:
            if await self.bus.lag(name, name) or await self.bus.pending(name, name):
                return False
        return not any(w.busy for w in self.workers if w.stage.name in names)

    async def wait_idle(self, timeout: float = 60.0, settle: float = 0.05, stages: set[str] | None = None) -> None:
        """Wait until these stages (every stage by default) have drained (for shutdown, tests, replay
        and benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.idle(stages):
                await asyncio.sleep(settle)
                if await self.idle(stages):
                    return
            await asyncio.sleep(0.02)
        raise TimeoutError(f"pipeline not idle after {timeout} s")

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Graceful: workers finish the batch in hand, then stop reading. With Redis Streams (its
        messages outlive the process) the act stage starts no new send: its message is redelivered
        after the restart, which sends the rest. With the in-process bus the message dies with the
        process, so the act stage goes on sending its batch. After ``drain_timeout`` (``shutdown_batch_seconds``) the workers still
        busy are cancelled, a platform call under way still let finish
        (:func:`service.dispatch.finish_despite_cancel`): no reply or action is left ``sending``, and
        what a cancelled batch did not send waits ``pending``/``queued`` for its redelivery or, with
        the in-process bus, for the pacer's pass once older than ``stranded_send_minutes``."""
        if drain_timeout is None:
            drain_timeout = float(getattr(self.ctx.settings, "shutdown_batch_seconds", 8.0))
        self.stop_event.set()
        if redelivers_after_restart(self.bus):  # else a halted batch would be lost with the process
            for worker in self.workers:
                if hasattr(worker.stage, "halt"):
                    worker.stage.halt()
        if self.tasks:
            done, pending = await asyncio.wait(self.tasks, timeout=drain_timeout)
            if pending:
                log.warning("shutdown: %s still busy after %.1f s; cancelled (their batch is redelivered)",
                            sorted(t.get_name() for t in pending), drain_timeout)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self.tasks = []
