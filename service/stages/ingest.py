"""The ingest stage: normalized mentions in, stored mention ids out (to triage)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from listener.ingest import ingest_batch
from listener.protocol import NormalizedMention
from service.bus import Envelope
from service.stages.base import Outgoing, StageContext, trace


class IngestStage:
    name = "ingest"

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx

    async def handle(self, batch: list[Envelope]) -> list[Outgoing]:
        mentions = [NormalizedMention.from_dict(env.payload["mention"]) for env in batch]
        for attempt in range(3):  # a concurrent worker may insert the same author or thread first
            try:
                async with self.ctx.db.session() as session:
                    results = await ingest_batch(session, mentions)
                    await session.commit()
                break
            except IntegrityError:
                if attempt == 2:
                    raise
        out = []
        for env, res in zip(batch, results):
            if res.outcome in ("new", "edited", "restored"):  # a restored post is triaged again, like an edit
                key = f"m:{res.mention_id}" + (":edit:" + env.key if res.outcome != "new" else "")
                out.append(Outgoing("triage", key, {"mention_id": res.mention_id, **trace(env.payload)}))
        if self.ctx.events and any(r.outcome == "new" for r in results):
            self.ctx.events("ingested", [r.mention_id for r in results if r.outcome == "new"])
        return out
