"""Assembling a process from the settings: database, bus, triage, stages, web, connectors."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
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

    async def submit(self, mentions: Iterable[NormalizedMention]) -> int:
        return await submit(self.bus, mentions)

    @classmethod
    async def open(cls, settings: Any, *, stages: Iterable[str] = STAGES, workers: int = 1,
                   triager: Any = None, with_connectors: bool = True) -> Runtime:
        """Migrate, connect and build the stages (not started yet)."""
        db = Database.from_settings(settings)
        await db.upgrade()
        bus = make_bus(settings)
        await bus.start()
        stages = list(stages)
        if "triage" in stages and triager is None:
            from triage import build_triager

            triager = await asyncio.to_thread(build_triager, settings)
        rt = cls(settings=settings, db=db, bus=bus, metrics=Metrics(), triager=triager)
        connectors = build_connectors(settings) if with_connectors else []
        rt.connectors = connectors
        ctx = StageContext(settings=settings, db=db, triager=triager, metrics=rt.metrics,
                           connectors={c.platform: c for c in connectors})
        if stages:
            rt.pipeline = Pipeline(ctx, bus, stages=stages, workers=workers)
        rt.extra_routes = webhook_routes(settings, rt.submit)
        return rt

    async def start(self) -> None:
        if self.pipeline:
            await self.pipeline.start()
        for connector in self.connectors:
            self.tasks.append(asyncio.create_task(self._listen(connector), name=f"listen:{connector.name}"))

    async def _listen(self, connector: Any) -> None:
        from listener.cursors import CursorStore
        from listener.runner import run_connector

        await run_connector(connector, self.submit, CursorStore(self.db), self.stop_event)

    async def feed_demo(self, path: Path, speed: float = 0.0) -> int:
        """Stream the bundled demo (idempotent: mentions already stored are not processed again)."""
        replay = ReplayConnector(path, speed=speed)
        n = 0
        async for batch, _cursor in replay.stream(None):
            n += await self.submit(batch)
        log.info("demo stream: %d mentions submitted", n)
        return n

    async def close(self) -> None:
        self.stop_event.set()
        if self.pipeline:
            await self.pipeline.stop()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for c in self.connectors:
            try:
                await c.close()
            except Exception:  # noqa: BLE001
                log.warning("connector %s did not close cleanly", getattr(c, "name", c))
        await self.bus.close()
        await self.db.close()


def build_connectors(settings: Any) -> list[Any]:
    try:
        from listener.registry import build_connectors as build
    except ImportError:
        return []
    return build(settings)


def webhook_routes(settings: Any, publish: Any) -> list[Any]:
    """The forum and generic webhooks' routes, mounted on the web app."""
    routes: list[Any] = []
    try:
        from listener.discourse import webhook as discourse_webhook

        routes.append(discourse_webhook.routes(settings, publish))
    except ImportError:
        pass
    try:
        from listener import webhook as generic_webhook

        routes.append(generic_webhook.routes(settings, publish))
    except ImportError:
        pass
    return routes
