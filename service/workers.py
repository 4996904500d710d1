"""Stage workers: read a batch from the bus, let the stage handle it, publish, then ack.

Ack comes last, so a crash at any point means redelivery (at-least-once) and the idempotent
stage makes that harmless. A failing batch is retried message by message so one poison message is
isolated, retried up to the bus's limit and then dead-lettered with its reason — unless the database
or the bus has stopped answering: then the messages are not at fault, so the worker holds the batch
(or, met during the retries one by one, the message in hand) and tries it again with back-off until
they answer, spending none of the messages' attempts (a database restart must not dead-letter
everything that was in flight). A SQLite file whose write lock another process holds (an admin's
``sqlite3`` shell, a long maintenance command) answers ``SELECT 1`` while every write fails with
"database is locked" after the busy timeout: that too is the database's state, not the messages'
fault (:func:`database_busy`), so the batch is held the same way until the lock goes.

While it holds a batch — handling it, retrying it one by one, waiting out an outage — the worker
renews its claim on it every third of the bus's claim-idle time (:meth:`~service.bus.base.Bus.renew`),
so no other consumer takes it over meanwhile, nor spends an attempt of it: a slow batch is not
handled twice at once, and an outage longer than the claim-idle time costs nothing. A worker that
dies stops renewing; the bus then hands its messages to the others one at a time, so a message that
kills its worker spends its own attempts only. A watchdog (``timeout``, ``stage_timeout_seconds``)
turns a stage that hangs into a failure like any other: the batch is retried one by one, each under
the watchdog too, and the message that hangs is dead-lettered after its attempts while the stream
behind it flows on. A message that is the only one to hang alone after its batch hung spends two
attempts: the batch's time-out was its own too, so each attempt costs one time-out, not two (the
others of the batch, handled alone once, spend none). When several hang alone, the stall is shared
(a model endpoint, a lock), not one message's: each spends one, so good messages are not
dead-lettered at twice the pace.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sqlite3
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from service.bus import Bus, Envelope
from service.dead_mentions import note_dead_letter
from service.logs import log_id
from service.metrics import instrument_triager
from service.stages.base import Outgoing, Stage

log = logging.getLogger("socialcare.worker")
OUTAGE_BACKOFF = (0.5, 30.0)  # seconds before the first retry of a held batch, and at most between two
STAGE_TIMEOUT_S = 300.0  # the watchdog: a batch (or one message) a stage has not handled by then failed
PING_TIMEOUT_S = 10.0  # a database that does not answer a ping within this is taken as down (not hung on)
LEFT: list[Outgoing] = []  # a held batch left unacknowledged because the worker is stopping
TRIM_EVERY_S = 30.0  # how often a worker drops its topic's acknowledged entries (Bus.trim)
FORGET_IDLE_MS = 6 * 3600 * 1000  # a consumer idle this long with nothing pending is a dead worker's


SQLITE_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (primary codes: extended ones masked with 0xFF)
BUSY_MESSAGES = ("database is locked", "database table is locked", "database is busy")


def database_busy(exc: BaseException) -> bool:
    """Did ``exc`` come from a SQLite lock held elsewhere (SQLITE_BUSY or SQLITE_LOCKED, or the
    engine's :class:`~models.sqlite_driver.WriteGate` timing out as SQLite would), wrapped or not?"""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, sqlite3.OperationalError):
            code = getattr(err, "sqlite_errorcode", None)  # None: raised by the WriteGate, or pre-3.11
            if (code is not None and (code & 0xFF) in SQLITE_BUSY_CODES) or str(err).lower() in BUSY_MESSAGES:
                return True
        todo += [getattr(err, "orig", None), err.__cause__, err.__context__]  # SQLAlchemy's DBAPIError: .orig
    return False


def consumer_name(stage: str, index: int = 0) -> str:
    return f"{stage}-{socket.gethostname()}-{os.getpid()}-{index}"


class StageTimeout(TimeoutError):
    """The stage did not finish handling a batch within the worker's ``timeout`` (it hangs)."""


class StageWorker:
    def __init__(self, bus: Bus, stage: Stage, *, consumer: str | None = None, batch_size: int = 64,
                 block_ms: int = 1000, linger_ms: int = 0, metrics=None,  # noqa: ANN001
                 timeout: float | None = STAGE_TIMEOUT_S, forget_idle_ms: int = FORGET_IDLE_MS) -> None:
        self.bus = bus
        self.stage = stage
        self.consumer = consumer or consumer_name(stage.name)
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.linger_ms = linger_ms
        self.metrics = metrics
        self.timeout = timeout  # the watchdog over each stage.handle call; None: none
        self.forget_idle_ms = forget_idle_ms
        self.busy = False
        self.holding = 0  # deliveries of the batch in hand (what a forced stop abandons)
        self.stop = asyncio.Event()  # set by run()'s caller; ends a wait for the database or bus
        self._trimmed = time.monotonic()
        self._renewals: set[asyncio.Task] = set()  # the tasks renewing the claim on a held batch
        if metrics is not None and hasattr(bus, "count_burials"):  # every dead letter the bus writes, its
            bus.count_burials(metrics)  # own burials included
        if stage.name == "triage":  # the model's own latency, apart from the stage's database work
            instrument_triager(getattr(stage, "ctx", None), metrics)

    async def run(self, stop: asyncio.Event) -> None:
        self.stop = stop
        name = self.stage.name
        await self.bus.ensure_group(name, name)
        await self._forget("prune_consumers", "consumers of dead workers", name, name, self.forget_idle_ms,
                           keep=self.consumer)
        while not stop.is_set():
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the bus went away: log, wait, keep going
                log.exception("stage %s: bus error; retrying", name, extra={"stage": name})
                await asyncio.sleep(1.0)
        # a clean stop: consumer names carry the pid, so each restart would leave one behind for good
        await self._forget("remove_consumer", "its own consumer", name, name, self.consumer)

    async def _forget(self, method: str, what: str, *args: object, **kwargs: object) -> None:
        """Consumer housekeeping (Bus.prune_consumers, Bus.remove_consumer): logged, never fatal."""
        removal = getattr(self.bus, method, None)
        if removal is None:  # a bus without consumers
            return
        try:
            gone = await removal(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - next start, or the next worker's
            log.warning("stage %s: could not remove %s (%s)", self.stage.name, what, type(exc).__name__)
            return
        if gone:
            log.info("stage %s: removed %s: %s", self.stage.name, what,
                     ", ".join(gone) if isinstance(gone, list) else self.consumer)

    async def run_once(self) -> int:
        """Read and handle one batch; returns how many deliveries it took (0 on time-out)."""
        name = self.stage.name
        batch = await self.bus.read(name, name, self.consumer, self.batch_size, self.block_ms)
        if not batch:
            return 0
        if self.linger_ms and 1 < len(batch) < self.batch_size:  # a backlog is building: fill the batch
            batch += await self._linger(len(batch))
        self.busy, self.holding = True, len(batch)
        started = time.perf_counter()
        try:
            async with self._renewing(batch):
                try:
                    out = await self._handle(batch)
                except Exception as exc:  # noqa: BLE001 - isolate the poison message below
                    out, exc = await self._through_outage(batch, exc)
                    if out is LEFT:  # stopping mid-outage: unacknowledged, delivered again later
                        return len(batch)
                    if out is None:
                        if len(batch) == 1 and isinstance(exc, StageTimeout):  # it would only hang again
                            await self._failed(batch[0], exc)
                            return 1
                        log.warning("stage %s: batch of %d failed (%s); retrying one by one", name, len(batch),
                                    type(exc).__name__, extra={"stage": name, "batch_size": len(batch),
                                                               "error_type": type(exc).__name__})
                        await self._one_by_one(batch, hung=isinstance(exc, StageTimeout))
                        return len(batch)
                await self._publish(out)
                await self.bus.ack(name, name, [env.id for env in batch])
                self._count(len(batch), time.perf_counter() - started)
        finally:
            self.busy, self.holding = False, 0
        await self._trim()
        return len(batch)

    async def _handle(self, batch: list[Envelope]) -> list[Outgoing]:
        """``stage.handle`` under the watchdog: a stage still at it after ``timeout`` is cancelled and
        :class:`StageTimeout` raised, so that a hang is isolated and dead-lettered like a failure."""
        if self.timeout is None:
            return await self.stage.handle(batch)
        watchdog = asyncio.timeout(self.timeout)
        try:
            async with watchdog:
                return await self.stage.handle(batch)
        except TimeoutError as exc:
            if not watchdog.expired():  # the stage's own time-out, raised as it is
                raise
            log.error("stage %s: a batch of %d still not handled after %g s; cancelled", self.stage.name,
                      len(batch), self.timeout, extra={"stage": self.stage.name, "batch_size": len(batch),
                                                       "error_type": "StageTimeout"})
            raise StageTimeout(f"not handled within {self.timeout:g} s (stage hangs)") from exc

    @asynccontextmanager
    async def _renewing(self, batch: list[Envelope]) -> AsyncIterator[None]:
        """Renew the claim on ``batch`` every third of the bus's claim-idle time while the block runs:
        no other consumer takes over a batch this worker is still at (nor spends its attempts)."""
        idle_ms = getattr(self.bus, "claim_idle_ms", None)
        if not idle_ms or not batch:
            yield
            return
        done = asyncio.Event()
        task = asyncio.create_task(self._renew([env.id for env in batch], idle_ms / 3000, done),
                                   name=f"{self.consumer}-renew")
        self._renewals.add(task)
        task.add_done_callback(self._renewals.discard)
        try:
            yield
        finally:  # also when this worker is cancelled: the renewals end with the batch
            done.set()  # not task.cancel(): a Redis call cancelled mid-way can hang (redis-py 8.2)

    async def _renew(self, ids: list[str], every: float, done: asyncio.Event) -> None:
        name = self.stage.name
        while ids:
            try:
                await asyncio.wait_for(done.wait(), every)
                return
            except TimeoutError:
                pass
            try:
                ids = await self.bus.renew(name, name, self.consumer, ids)
            except Exception as exc:  # noqa: BLE001 - the bus is away: nobody claims meanwhile either
                log.warning("stage %s: could not renew the claim on its batch (%s)", name, type(exc).__name__,
                            extra={"stage": name, "error_type": type(exc).__name__})

    async def _trim(self) -> None:
        """Now and then, drop what the topic's groups have acknowledged (never fatal: next time)."""
        if time.monotonic() - self._trimmed < TRIM_EVERY_S:
            return
        self._trimmed = time.monotonic()
        try:
            await self.bus.trim(self.stage.name)
        except Exception as exc:  # noqa: BLE001 - trimming is housekeeping
            log.warning("stage %s: could not trim its topic (%s)", self.stage.name, type(exc).__name__)

    async def _unreachable(self) -> list[str]:
        """What of the database and the bus does not answer right now."""
        db = getattr(getattr(self.stage, "ctx", None), "db", None)
        try:
            up = db is None or await asyncio.wait_for(db.ping(), PING_TIMEOUT_S)
        except TimeoutError:
            up = False
        down = [] if up else ["the database"]
        return down + ([] if await self.bus.ping() else ["the bus"])

    async def _holding_back(self, exc: Exception) -> list[str]:
        """Why the batch ``exc`` failed is to be held rather than charged to its messages: what does
        not answer, or a database locked by another writer (it answers reads meanwhile)."""
        if down := await self._unreachable():
            return [f"{' and '.join(down)} {'do' if len(down) > 1 else 'does'} not answer"]
        return ["the database is locked by another writer"] if database_busy(exc) else []

    async def _through_outage(self, batch: list[Envelope],
                              exc: Exception) -> tuple[list[Outgoing] | None, Exception]:
        """The batch's output once the database and bus answer again, when they were what failed it;
        None when they answer (the messages are at fault: one by one); LEFT when the worker stops.
        With it, the last error the batch met."""
        name, delay, seconds = self.stage.name, OUTAGE_BACKOFF[0], 0.0
        while down := await self._holding_back(exc):
            log.warning("stage %s: %s (%s); holding a batch of %d, next try in %.1f s",
                        name, down[0], type(exc).__name__, len(batch), delay,
                        extra={"stage": name, "batch_size": len(batch), "error_type": type(exc).__name__,
                               "held_seconds": seconds})
            if self.metrics:
                self.metrics.errors.labels(name).inc()
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=delay)
                return LEFT, exc
            except TimeoutError:
                seconds += delay
                delay = min(delay * 2, OUTAGE_BACKOFF[1])
            if await self._unreachable():
                continue
            try:
                out = await self._handle(batch)
            except Exception as again:  # noqa: BLE001 - down again, or the messages' own fault after all
                exc = again
                continue
            log.info("stage %s: back after %.0f s; the held batch of %d went through", name, seconds, len(batch),
                     extra={"stage": name, "batch_size": len(batch), "held_seconds": seconds})
            return out, exc
        return None, exc

    async def _linger(self, have: int) -> list[Envelope]:
        """Wait up to ``linger_ms`` for more messages before handling a short batch: one transaction
        (and one encoder call) for many messages costs far less than one per message, for at most
        ``linger_ms`` of added latency. A lone message (a quiet stream) is handled at once."""
        name = self.stage.name
        deadline = time.monotonic() + self.linger_ms / 1000
        more: list[Envelope] = []
        while have + len(more) < self.batch_size:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                break
            got = await self.bus.read(name, name, self.consumer, self.batch_size - have - len(more), remaining_ms,
                                      claim=False)  # a claimed message is handled alone
            if not got:
                break
            more += got
        return more

    async def _one_by_one(self, batch: list[Envelope], *, hung: bool = False) -> None:
        """Each message alone; one that fails while the database and bus answer is the one at fault
        (:meth:`_failed`). One that fails because they stopped answering meanwhile is held through the
        outage like a batch; when the worker stops then, it and the rest stay unacknowledged, those
        that hung alone before it too (their redelivery counts an attempt, as any does).
        Time-outs are charged when the loop ends: after a batch that ``hung``, the one message that
        hangs alone too is what the batch hung on (charged the batch's time-out as well); when
        several hang alone they share a stall (a model endpoint, a lock): one attempt each."""
        name = self.stage.name
        hangs: list[tuple[Envelope, Exception]] = []
        for env in batch:
            started = time.perf_counter()
            try:
                out = await self._handle([env])
            except Exception as exc:  # noqa: BLE001
                held, exc = await self._through_outage([env], exc)
                if held is LEFT:
                    return
                if held is None:
                    if isinstance(exc, StageTimeout):
                        hangs.append((env, exc))
                    else:
                        await self._failed(env, exc)
                    continue
                out = held
            await self._publish(out)
            await self.bus.ack(name, name, [env.id])
            self._count(1, time.perf_counter() - started)  # a batch of one
        spent = 2 if hung and len(hangs) == 1 else 1
        for env, exc in hangs:
            await self._failed(env, exc, spent=spent)

    async def _failed(self, env: Envelope, exc: Exception, spent: int = 1) -> None:
        """A message that failed by itself, ``spent`` attempts of it (its last handling's, and its
        batch's when that failed on it too, capped at the bus's limit): retried later by the bus, or
        dead-lettered at its last attempt."""
        name = self.stage.name
        if spent > 1:
            limit = getattr(self.bus, "max_deliveries", env.attempts)
            env = replace(env, attempts=min(env.attempts + spent - 1, limit))
        reason = f"{type(exc).__name__}: {str(exc)[:300]}"
        dead = await self.bus.fail(name, name, env, reason)
        if dead:  # so that the API's polling cursor passes its mention at once (service.dead_mentions)
            await note_dead_letter(getattr(getattr(self.stage, "ctx", None), "db", None), name, env.payload)
        if self.metrics:  # a dead letter is counted by the bus (Bus.count_burials)
            self.metrics.errors.labels(name).inc()
        log.error("stage %s: message %s failed (attempt %d)%s: %s", name, log_id(env.key), env.attempts,
                  " → dead letter" if dead else "", type(exc).__name__,
                  extra={"stage": name, "message_key": env.key, "entry_id": env.id, "attempt": env.attempts,
                         "dead_letter": dead, "error_type": type(exc).__name__})

    async def _publish(self, out: list[Outgoing]) -> None:
        by_topic: dict[str, list[tuple[str, dict]]] = defaultdict(list)
        for o in out:
            by_topic[o.topic].append((o.key, o.payload))
        for topic, items in by_topic.items():
            await self.bus.publish_many(topic, items)

    def _count(self, n: int, seconds: float) -> None:
        if self.metrics:
            self.metrics.processed.labels(self.stage.name).inc(n)
            if seconds:
                self.metrics.batch_seconds.labels(self.stage.name).observe(seconds)
