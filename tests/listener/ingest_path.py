"""The real ingest path for the connector tests: what a connector yields goes through the bus and
the ingest stage's worker, as in the service, and what ingest sends on to triage can be read."""

from __future__ import annotations

from sqlalchemy import select

from models import Mention
from service.bus.memory import InProcessBus
from service.pipeline import submit
from service.stages.base import StageContext
from service.stages.ingest import IngestStage
from service.workers import StageWorker


class Pipeline:
    """The bus, the ingest stage's worker, and what it sends on to triage."""

    def __init__(self, db) -> None:
        self.db, self.bus = db, InProcessBus()
        self.worker = StageWorker(self.bus, IngestStage(StageContext(settings=None, db=db)), batch_size=50,
                                  block_ms=10)

    async def run(self, mentions) -> list:
        await self.bus.ensure_group("ingest", "ingest")
        await self.bus.ensure_group("triage", "triage")
        await submit(self.bus, mentions)
        while await self.worker.run_once():
            pass
        return await self.bus.read("triage", "triage", "test", 1000, 0)

    async def rows(self) -> dict[str, Mention]:
        async with self.db.session() as s:
            return {m.external_id: m for m in await s.scalars(select(Mention))}
