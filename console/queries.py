"""Read models for the console and API: routed mentions with their triage, redacted."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from escalation.public_guard import platform_name
from models import Author, Mention, RouteDecision, TriageResult
from models.base import utcnow
from service.privacy import erased

ROUTING_GRACE = timedelta(minutes=15)  # a mention ingested this recently may still be on its way to routing


PRIVATE_SENSITIVITY = ("security", "fraud")


def public_text(mention: Mention, tri: TriageResult | None) -> str:
    """The text as the console shows it: personal data redacted wherever it is shown (the same
    rendering the moderation alerts use), and a secure link a customer quoted masked (it opens their
    private channel to whoever reads it)."""
    from community.moderation import shown_text
    from escalation.links import shown_without_links

    return shown_without_links(shown_text(mention, tri))


def private_matter(mention: Mention, tri: TriageResult | None) -> bool:
    """A post for the care team's eyes only: a private message, or a report of a takeover or fraud.
    What leaves the team (the marketing digest, outgoing webhooks) never quotes one."""
    return not mention.is_public or (tri is not None and tri.sensitivity in PRIVATE_SENSITIVITY)


def post_state(mention: Mention | dict[str, Any]) -> str | None:
    """What the console says beside a post (a row, or a mention as :func:`routed_mentions` gives it):
    "deleted on X" when it is gone from its platform (it wins over our own hide: nobody can see it or
    answer it in public there), else "hidden", else nothing. An erased post is also ``deleted``, but
    says so in its text (``[erased]``), as it always did."""
    m = SimpleNamespace(**mention) if isinstance(mention, dict) else mention
    if m.deleted and not erased(m):
        return f"deleted on {platform_name(m.platform)}"
    return "hidden" if m.hidden else None


async def routing_horizon(session: AsyncSession, since_id: int, now: datetime | None = None) -> int | None:
    """The lowest id above ``since_id`` of a mention ingested within ROUTING_GRACE and not routed yet.

    Ids are given at ingest, routing comes later and not in id order: a cursor that moved past
    such a mention would never see it. A page read with ``since_id`` stops below it (one that
    never gets routed, e.g. dead-lettered, stops holding the cursor after the grace)."""
    routed = select(RouteDecision.mention_id).where(RouteDecision.mention_id == Mention.id).exists()
    return await session.scalar(select(func.min(Mention.id)).where(
        Mention.id > since_id, Mention.ingested_at >= (now or utcnow()) - ROUTING_GRACE, ~routed))


async def routed_mentions(session: AsyncSession, *, outcome: str | None = None, platform: str | None = None,
                          limit: int = 100, offset: int = 0, since_id: int | None = None) -> list[dict[str, Any]]:
    """Routed mentions, highest priority first (then newest, then highest id); with ``since_id``,
    those with a greater id in ascending id order (a cursor for polling: nothing shifts)."""
    q = (
        select(Mention, TriageResult, RouteDecision, Author)
        .join(RouteDecision, RouteDecision.mention_id == Mention.id)
        .outerjoin(TriageResult, TriageResult.mention_id == Mention.id)
        .outerjoin(Author, Author.id == Mention.author_id)
        .limit(limit).offset(offset)
    )
    if since_id is None:  # a total order: pages of equal priority and time neither repeat nor skip a mention
        q = q.order_by(TriageResult.priority.desc(), Mention.created_at.desc(), Mention.id.desc())
    else:
        q = q.where(Mention.id > since_id).order_by(Mention.id)
        horizon = await routing_horizon(session, since_id)
        if horizon is not None:
            q = q.where(Mention.id < horizon)
    if outcome:
        q = q.where(RouteDecision.outcome == outcome)
    if platform:
        q = q.where(Mention.platform == platform)
    out = []
    for m, tri, d, a in (await session.execute(q)).all():
        out.append({
            "id": m.id, "platform": m.platform, "external_id": m.external_id, "url": m.url,
            "author": a.handle if a else None, "created_at": m.created_at.isoformat(),
            "text": public_text(m, tri), "hidden": m.hidden, "deleted": m.deleted, "is_public": m.is_public,
            "conversation_id": m.conversation_id,
            "triage": None if tri is None else {
                "sentiment": tri.sentiment, "sensitivity": tri.sensitivity, "issue_type": tri.issue_type,
                "toxicity": tri.toxicity, "spam": tri.spam, "pii_exposed": tri.pii_exposed,
                "priority": tri.priority, "model_version": tri.model_version,
            },
            "route": {"outcome": d.outcome, "reason": d.reason, "confidence": d.confidence},
        })
    return out
