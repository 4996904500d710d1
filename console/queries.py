"""Read models for the console and API: routed mentions with their triage, redacted."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Author, Mention, RouteDecision, TriageResult


def public_text(mention: Mention, tri: TriageResult | None) -> str:
    """The text as the console shows it: personal data redacted wherever it is shown (the same
    rendering the moderation alerts use)."""
    from community.moderation import shown_text

    return shown_text(mention, tri)


async def routed_mentions(session: AsyncSession, *, outcome: str | None = None, platform: str | None = None,
                          limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    q = (
        select(Mention, TriageResult, RouteDecision, Author)
        .join(RouteDecision, RouteDecision.mention_id == Mention.id)
        .outerjoin(TriageResult, TriageResult.mention_id == Mention.id)
        .outerjoin(Author, Author.id == Mention.author_id)
        .order_by(TriageResult.priority.desc(), Mention.created_at.desc(), Mention.id.desc())  # a total order:
        # pages of equal priority and time neither repeat nor skip a mention
        .limit(limit).offset(offset)
    )
    if outcome:
        q = q.where(RouteDecision.outcome == outcome)
    if platform:
        q = q.where(Mention.platform == platform)
    out = []
    for m, tri, d, a in (await session.execute(q)).all():
        out.append({
            "id": m.id, "platform": m.platform, "external_id": m.external_id, "url": m.url,
            "author": a.handle if a else None, "created_at": m.created_at.isoformat(),
            "text": public_text(m, tri), "hidden": m.hidden,
            "triage": None if tri is None else {
                "sentiment": tri.sentiment, "sensitivity": tri.sensitivity, "issue_type": tri.issue_type,
                "toxicity": tri.toxicity, "spam": tri.spam, "pii_exposed": tri.pii_exposed,
                "priority": tri.priority, "model_version": tri.model_version,
            },
            "route": {"outcome": d.outcome, "reason": d.reason, "confidence": d.confidence},
        })
    return out
