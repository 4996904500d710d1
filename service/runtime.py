"""Assembling a process from the settings: database, bus, triage, stages, web, connectors.

Every process that sends replies or moderation actions builds the connectors, but only the ones
opened with ``listen=True`` (`socialcare run` and `socialcare listen`) poll them: a `web` or
`worker` process polling too would fetch every mention once per process and spend the platforms'
rate limits for nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from listener.protocol import NormalizedMention
from listener.replay import ReplayConnector
from models.db import Database
from service.bus import Bus, make_bus
from service.metrics import Metrics
from service.pipeline import Pipeline, submit
from service.stages import STAGES, StageContext

log = logging.getLogger("socialcare.runtime")
RESUMED = {"triage", "route", "act"}  # stages whose work an embedded start resumes from the database


def write_ingest_token(var_dir: Path) -> str:
    """A local secret for `socialcare replay` in the embedded mode (file readable by its owner only)."""
    var_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    path = var_dir / "ingest.token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    return token


@dataclass
class Runtime:
    settings: Any
    db: Database
    bus: Bus
    metrics: Metrics
    triager: Any = None
    pipeline: Pipeline | None = None
    connectors: list[Any] = field(default_factory=list)
    ingest_token: str | None = None
    extra_routes: list[Any] = field(default_factory=list)
    tasks: list[asyncio.Task] = field(default_factory=list)
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    listening: bool = False  # this process polls the connectors (run, listen)
    listeners: list[asyncio.Task] = field(default_factory=list)
    status_board: Any = None  # connector status shared through Redis (production)

    async def submit(self, mentions: Iterable[NormalizedMention]) -> int:
        return await submit(self.bus, mentions)

    @classmethod
    async def open(cls, settings: Any, *, stages: Iterable[str] = STAGES, workers: int = 1,
                   triager: Any = None, with_connectors: bool = True, listen: bool = False) -> Runtime:
        """Migrate, connect and build the stages (not started yet). ``listen``: poll the connectors
        (only `run` and `listen`); without it they serve outbound actions only."""
        db = Database.from_settings(settings)
        await db.upgrade()
        bus = make_bus(settings)
        await bus.start()
        stages = list(stages)
        if "triage" in stages and triager is None:
            from triage import build_triager

            triager = await asyncio.to_thread(build_triager, settings)
        if stages and hasattr(triager, "warm_up"):  # the first mentions must not wait for the model
            await asyncio.to_thread(triager.warm_up)
        rt = cls(settings=settings, db=db, bus=bus, metrics=Metrics(), triager=triager, listening=listen)
        connectors = build_connectors(settings) if with_connectors else []
        rt.connectors = connectors
        ctx = StageContext(settings=settings, db=db, triager=triager, metrics=rt.metrics,
                           connectors={c.platform: c for c in connectors})
        if stages:
            rt.pipeline = Pipeline(ctx, bus, stages=stages, workers=workers)
        rt.extra_routes = webhook_routes(settings, rt.submit, db)
        if settings.bus == "redis" and connectors:
            from listener.status import RedisStatusBoard

            rt.status_board = RedisStatusBoard(settings.redis_url, settings.bus_prefix)
        return rt

    async def start(self) -> None:
        if self.pipeline:
            await self.pipeline.start()
            if self.settings.bus == "inprocess" and RESUMED <= self.pipeline.stage_names():
                from service.resume import resume  # the in-process queues died with the last process

                await resume(self.db, self.bus)
        if not self.listening:
            return
        for connector in self.connectors:
            self.listeners.append(asyncio.create_task(self._listen(connector), name=f"listen:{connector.name}"))
        if self.status_board is not None and self.connectors:
            self.tasks.append(asyncio.create_task(self._report_status(), name="connector-status"))
        if self.connectors:  # X's batch compliance job for tweets older than the re-check window
            from listener.x import compliance

            task = compliance.start(self.settings, self.db, self.submit, self.stop_event)
            if task is not None:
                self.tasks.append(task)

    async def _listen(self, connector: Any) -> None:
        from listener.cursors import CursorStore
        from listener.runner import ConnectorStatus, run_connector

        try:
            await run_connector(connector, self.submit, CursorStore(self.db), self.stop_event)
        finally:  # cancelled at shutdown: the console should not go on showing "running"
            status = getattr(connector, "status", None) or ConnectorStatus()
            if status.state != "stopped":
                status.state, status.retry_at = "stopped", None
            connector.status = status

    async def _report_status(self, every: float = 5.0) -> None:
        """Write the connectors' status for the web process every few seconds (production)."""
        from listener.status import snapshot
        from service.periodic import every as periodically

        async def report() -> None:
            await self.status_board.write([snapshot(c, polled_here=True) for c in self.connectors])

        await periodically(every, report, self.stop_event, what="reporting the connectors' status", logger=log)

    async def connector_report(self) -> list[dict[str, Any]]:
        """The console's connector rows: this process's own, or what the listener process reported."""
        import time

        from listener.status import merge, snapshot

        local = [snapshot(c, polled_here=self.listening) for c in self.connectors]
        if self.listening or self.status_board is None:
            return local
        shared = await self.status_board.read()
        return merge(local, shared, now=time.time(), stale_after=self.status_board.stale_after)

    async def feed_demo(self, path: Path, speed: float = 0.0) -> int:
        """Stream the bundled demo (idempotent: mentions already stored are not processed again)."""
        replay = ReplayConnector(path, speed=speed)
        n = 0
        async for batch, _cursor in replay.stream(None):
            n += await self.submit(batch)
        log.info("demo stream: %d mentions submitted", n)
        return n

    async def close(self) -> None:
        """Graceful shutdown (SIGTERM): nothing new comes in, what is in flight is finished.

        Connectors stop first; cancelling one is safe at any point, since its cursor moves only after
        its batch is on the bus. With the in-process bus that batch lives only in memory, so the stages
        then drain the queues (up to ``shutdown_drain_seconds``), ingest's first, before they stop:
        otherwise a batch whose cursor was saved would be lost with the process (what the later stages'
        queues still hold is in the database, resumed at the next start: :mod:`service.resume`); the act stage goes on sending the batch
        in hand (up to ``shutdown_batch_seconds``), and what a cancel leaves ``pending`` is sent by the
        pacer's pass once older than ``stranded_send_minutes``. With Redis the messages are durable
        and the workers only finish the batch in hand (up to ``shutdown_batch_seconds``): the act stage
        sends nothing new, leaving the rest of its batch for redelivery. No cancel interrupts a
        platform call under way (:meth:`service.pipeline.Pipeline.stop`).
        """
        self.stop_event.set()
        for t in self.listeners + self.tasks:
            t.cancel()
        await asyncio.gather(*self.listeners, *self.tasks, return_exceptions=True)
        if self.status_board is not None and self.listening:
            await self._final_status()
        if self.pipeline:
            if self.settings.bus == "inprocess":
                await self._drain(float(getattr(self.settings, "shutdown_drain_seconds", 30.0)))
            await self.pipeline.stop(float(getattr(self.settings, "shutdown_batch_seconds", 8.0)))
        for c in self.connectors:
            try:
                await c.close()
            except Exception:  # noqa: BLE001
                log.warning("connector %s did not close cleanly", getattr(c, "name", c))
        if self.status_board is not None:
            await self.status_board.close()
        await self.bus.close()
        await self.db.close()

    async def _drain(self, timeout: float) -> None:
        """The in-process queues, ingest's first: its messages are the only ones not in the database
        yet. What the later stages' queues still hold when the time is up is resumed from the
        database at the next start (:mod:`service.resume`)."""
        deadline = time.monotonic() + timeout
        names = self.pipeline.stage_names()
        try:
            if "ingest" in names:
                await self.pipeline.wait_idle(timeout=timeout, stages={"ingest"})
            await self.pipeline.wait_idle(timeout=max(deadline - time.monotonic(), 0.0))
            log.info("shutdown: every in-process queue drained")
        except TimeoutError:
            left = {s: await self.bus.lag(s, s) + await self.bus.pending(s, s) for s in names}
            lost = left.pop("ingest", 0) if "ingest" in names else 0
            if lost:
                log.error("shutdown: the ingest queue not drained after %.0f s: %d post(s) lost with this "
                          "process (not stored yet)", timeout, lost)
            if any(left.values()):
                log.warning("shutdown: queues not drained after %.0f s: %s; resumed from the database at the "
                            "next start", timeout, left)

    async def _final_status(self) -> None:
        from listener.status import snapshot

        try:
            await self.status_board.write([snapshot(c, polled_here=True) for c in self.connectors])
        except Exception as exc:  # noqa: BLE001 - shutting down anyway
            log.warning("could not report the connectors' final status: %s", type(exc).__name__)


def build_connectors(settings: Any) -> list[Any]:
    try:
        from listener.registry import build_connectors as build
    except ImportError:
        return []
    return build(settings)


def webhook_routes(settings: Any, publish: Any, db: Any = None) -> list[Any]:
    """The forum and generic webhooks' routes, mounted on the web app (``db``: the generic webhook
    links a signed customer reference to the customer record; the Discourse webhook reads the
    deletions kept for posts not stored yet, so a whisper turned into a regular post is shown)."""
    routes: list[Any] = []
    try:
        from listener.discourse import webhook as discourse_webhook

        routes.append(discourse_webhook.routes(settings, publish, db=db))
    except ImportError:
        pass
    try:
        from listener import webhook as generic_webhook

        routes.append(generic_webhook.routes(settings, publish, db=db))
    except ImportError:
        pass
    return routes
