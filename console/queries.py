"""Read models for the console and API: routed mentions with their triage, redacted."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from console import poll_cursor
from escalation.public_guard import platform_name
from models import Author, Mention, ModerationAction, RouteDecision, TriageResult
from service.privacy import erased

PRIVATE_SENSITIVITY = ("security", "fraud")
PRIVATE_OUTCOME = "escalate_private"
CARE_TEAM = ("agent", "admin")  # the roles (and their tokens) that read private matters
MODERATED = ("hold", "notify")  # a held or reported post, an alert: put before the moderators


def public_text(mention: Mention, tri: TriageResult | None) -> str:
    """The text as the console shows it: personal data redacted wherever it is shown (the same
    rendering the moderation alerts use), and a secure link a customer quoted masked (it opens their
    private channel to whoever reads it)."""
    from community.moderation import shown_text
    from escalation.links import shown_without_links

    return shown_without_links(shown_text(mention, tri))


def care_team_only(mention: Mention, tri: TriageResult | None,
                   decision: RouteDecision | None = None) -> bool:
    """A post for the care team's eyes only: a private message, or a report of a takeover or fraud
    (scored so, or routed to a private case). What leaves the team (the marketing digest, outgoing
    webhooks) never quotes one, and other roles never see one (:func:`in_care_team`). Not
    :func:`escalation.public_guard.private_matter` (whether a public reply is refused: an open case
    of the author's counts there, and a public post by them is still shown to other roles)."""
    return (not mention.is_public or (tri is not None and tri.sensitivity in PRIVATE_SENSITIVITY)
            or (decision is not None and decision.outcome == PRIVATE_OUTCOME))


def care_team_only_clause() -> ColumnElement[bool]:
    """:func:`care_team_only` in SQL, over Mention with TriageResult and RouteDecision (outer joins:
    a missing row makes nothing private, and no NULL may turn a NOT into "unknown")."""
    return or_(Mention.is_public.is_(False),
               func.coalesce(TriageResult.sensitivity, "").in_(PRIVATE_SENSITIVITY),
               func.coalesce(RouteDecision.outcome, "") == PRIVATE_OUTCOME)


def moderators_see_clause() -> ColumnElement[bool]:
    """What a moderator may read, in SQL over the same joins as :func:`care_team_only_clause`: any post
    but the care team's, and those put before the moderators all the same (:func:`moderated_ids`)."""
    put = aliased(ModerationAction)  # not the outer query's actions, when it selects some
    put_before = select(put.id).where(put.mention_id == Mention.id, put.action.in_(MODERATED)).exists()
    return or_(~care_team_only_clause(), put_before)


def in_care_team(role: str) -> bool:
    """Whether a user (or a token of a user) of ``role`` reads private matters and private replies:
    the care team only. Others are shown neither, in lists, counts or by id (404: not even that it exists)."""
    return role in CARE_TEAM


async def moderated_ids(session: AsyncSession, mention_ids: list[int]) -> set[int]:
    """The posts among ``mention_ids`` put before the moderators (a hold, a report or an alert,
    whatever its state): the moderation page shows them, so a moderator reads them even when they
    are private matters."""
    if not mention_ids:
        return set()
    return set(await session.scalars(select(ModerationAction.mention_id).where(
        ModerationAction.mention_id.in_(mention_ids), ModerationAction.action.in_(MODERATED))))


async def moderated_conversations(session: AsyncSession, conv_ids: set[int]) -> set[int]:
    """The conversations among ``conv_ids`` a moderator may read: those holding a post with a hold,
    a report, an alert or another moderation action, on a post a moderator reads (what the moderation
    page lists and links to; any other thread is the agents')."""
    if not conv_ids:
        return set()
    return set(await session.scalars(
        select(Mention.conversation_id).join(ModerationAction, ModerationAction.mention_id == Mention.id)
        .outerjoin(TriageResult, TriageResult.mention_id == Mention.id)
        .outerjoin(RouteDecision, RouteDecision.mention_id == Mention.id)
        .where(Mention.conversation_id.in_(conv_ids), moderators_see_clause()).distinct()))


def post_state(mention: Mention | dict[str, Any]) -> str | None:
    """What the console says beside a post (a row, or a mention as :func:`routed_mentions` gives it):
    "deleted on X" when it is gone from its platform (it wins over our own hide: nobody can see it or
    answer it in public there), else "hidden", else nothing. An erased post is also ``deleted``, but
    says so in its text (``[erased]``), as it always did."""
    m = SimpleNamespace(**mention) if isinstance(mention, dict) else mention
    if m.deleted and not erased(m):
        return f"deleted on {platform_name(m.platform)}"
    return "hidden" if m.hidden else None


async def routed_counts(session: AsyncSession, *, private: bool) -> list[tuple[str, int]]:
    """How many mentions each routing outcome has; without ``private`` (:func:`in_care_team`), not
    counting private matters."""
    q = select(RouteDecision.outcome, func.count()).group_by(RouteDecision.outcome).order_by(RouteDecision.outcome)
    if not private:
        q = (q.join(Mention, Mention.id == RouteDecision.mention_id)
             .outerjoin(TriageResult, TriageResult.mention_id == Mention.id).where(~care_team_only_clause()))
    return [(o, int(n)) for o, n in (await session.execute(q)).all()]


async def routed_mentions(session: AsyncSession, *, outcome: str | None = None, platform: str | None = None,
                          limit: int = 100, offset: int = 0, since_id: int | None = None,
                          private: bool = True) -> list[dict[str, Any]]:
    """Routed mentions, highest priority first (then newest, then highest id); with ``since_id``,
    those with a greater id in ascending id order, a page for a polling cursor (nothing shifts):
    a :class:`console.poll_cursor.Polled` list, with ``next_since_id`` and ``passed_unrouted``
    (see :mod:`console.poll_cursor`: the page stops below a mention not routed or not committed
    yet). Without ``private`` (a caller outside the care team, :func:`in_care_team`), private
    matters are left out in the query itself, so pages stay full and a cursor passes them by."""
    q = (
        select(Mention, TriageResult, RouteDecision, Author)
        .join(RouteDecision, RouteDecision.mention_id == Mention.id)
        .outerjoin(TriageResult, TriageResult.mention_id == Mention.id)
        .outerjoin(Author, Author.id == Mention.author_id)
    )
    if outcome:
        q = q.where(RouteDecision.outcome == outcome)
    if platform:
        q = q.where(Mention.platform == platform)
    if not private:
        q = q.where(~care_team_only_clause())
    window = None
    if since_id is None:  # a total order: pages of equal priority and time neither repeat nor skip a mention
        q = q.order_by(TriageResult.priority.desc(), Mention.created_at.desc(), Mention.id.desc())
        q = q.offset(offset)
    else:
        q = q.where(Mention.id > since_id).order_by(Mention.id)
        window = await poll_cursor.window(session, q, since_id, limit, platform=platform, private=private)
        q = q.where(Mention.id < window.bound)
    q = q.limit(limit)
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
    if window is None:
        return out
    return poll_cursor.Polled(out, *window.cursor([r["id"] for r in out], limit))
