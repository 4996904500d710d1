"""The triage stage: scores stored mentions and keeps every score with its model version."""

from __future__ import annotations

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from models import Author, Mention, TriageResult
from service.bus import Envelope
from service.stages.base import Outgoing, StageContext, trace
from triage.protocol import TriageInput, TriageOutput


def result_row(mention_id: int, out: TriageOutput, model_version: str) -> dict:
    """Columns of a TriageResult. ``scores`` keeps the whole output; PII only as spans, never values."""
    doc = out.to_dict()
    doc.pop("redacted_text", None)
    return dict(
        mention_id=mention_id, model_version=model_version, sentiment=out.sentiment.label,
        sensitivity=out.sensitivity.label, escalate=out.escalate, issue_type=out.issue_type.label,
        toxicity=out.toxicity.label, spam=out.spam.label, pii_exposed=out.pii_exposed,
        language=out.language, priority=float(out.priority), scores=doc,
    )


class TriageStage:
    name = "triage"

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx

    async def handle(self, batch: list[Envelope]) -> list[Outgoing]:
        ids = list(dict.fromkeys(env.payload["mention_id"] for env in batch))
        async with self.ctx.db.session() as session:  # the columns triage reads, not whole rows
            rows = (await session.execute(
                select(Mention.id, Mention.text, Mention.platform, Mention.is_public, Mention.deleted,
                       Author.followers).outerjoin(Author, Author.id == Mention.author_id)
                .where(Mention.id.in_(ids))
            )).all()
        mentions = {r.id: r for r in rows}
        todo = [i for i in ids if i in mentions and not mentions[i].deleted]
        inputs = [
            TriageInput(text=mentions[i].text, platform=mentions[i].platform, is_public=mentions[i].is_public,
                        author_followers=mentions[i].followers)
            for i in todo
        ]
        outputs = await self.ctx.triager.score_batch(inputs) if inputs else []
        version = self.ctx.triager.model_version
        for attempt in range(3):
            try:
                async with self.ctx.db.session() as session:
                    existing = {
                        r.mention_id: r
                        for r in await session.scalars(select(TriageResult).where(TriageResult.mention_id.in_(todo)))
                    }
                    fresh = []
                    for mention_id, out in zip(todo, outputs):
                        values = result_row(mention_id, out, version)
                        if mention_id in existing:  # an edit re-scores; a redelivery rewrites the same
                            for k, v in values.items():
                                setattr(existing[mention_id], k, v)
                        else:
                            fresh.append(values)
                    if fresh:  # one multi-row INSERT (an ORM add per row is one statement per row on SQLite)
                        await session.execute(insert(TriageResult), fresh)
                    await session.commit()
                break
            except IntegrityError:
                if attempt == 2:
                    raise
        first = {}
        for env in batch:
            first.setdefault(env.payload["mention_id"], env)
        return [Outgoing("route", f"m:{i}", {"mention_id": i, **trace(first[i].payload)}) for i in todo]
