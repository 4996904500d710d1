"""The triage stage: scores stored mentions and keeps every score with its model version."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from listener.deletions import respect_erasure_and_removal
from models import Author, Mention, TriageResult
from models.bulk import IDS, add_rows, update_rows
from service.bus import Envelope
from service.stages.base import Outgoing, StageContext, trace
from triage.protocol import TriageInput, TriageOutput

_M, _A, _T = Mention.__table__.c, Author.__table__.c, TriageResult.__table__.c
POSTS = (select(_M.id, _M.text, _M.platform, _M.is_public, _M.deleted, _A.followers)  # what triage reads
         .select_from(Mention.__table__.outerjoin(Author.__table__, _A.id == _M.author_id)).where(_M.id.in_(IDS)))
SCORED = select(_T.mention_id, _T.id).where(_T.mention_id.in_(IDS))


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
            rows = (await session.execute(POSTS, {"ids": ids})).all()
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
                    existing = dict((await session.execute(SCORED, {"ids": todo})).all())
                    fresh, rescored = [], []
                    for mention_id, out in zip(todo, outputs):
                        values = result_row(mention_id, out, version)
                        if mention_id in existing:  # an edit re-scores; a redelivery rewrites the same
                            rescored.append((existing[mention_id], values))
                        else:
                            fresh.append(values)
                    await add_rows(session, TriageResult, fresh)  # one statement per batch, not per row
                    await update_rows(session, TriageResult, rescored)
                    # erased while it was being scored, or deleted on its platform meanwhile: no words kept
                    erased = await respect_erasure_and_removal(session, todo)
                    await session.commit()
                break
            except IntegrityError:
                if attempt == 2:
                    raise
        first = {}
        for env in batch:
            first.setdefault(env.payload["mention_id"], env)
        return [Outgoing("route", f"m:{i}", {"mention_id": i, **trace(first[i].payload)}) for i in todo
                if i not in erased]
