"""A moderator's decisions on the posts held for review (:func:`community.moderation.queue`):
approve, remove, ban or escalate, each recorded as the moderation actions that carry it out."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from community.moderation import HIDDEN_BY_HOLD, REMOVED_NOTICE, add_action
from escalation.public_guard import platform_name
from models import Author, Mention, ModerationAction, Reply, TriageResult
from service.audit import record
from triage.pii import redact

REVIEW_DECISIONS = ("approve", "remove", "ban", "escalate")
# act on the post itself: refused once it is deleted on its platform (a ban then bans its author alone)
GONE_DECISIONS = ("approve", "remove")
EXPOSED = "this post exposes personal data and stays hidden: ask its author to post again without it"


async def exposes_personal_data(session: AsyncSession, mention: Mention) -> bool:
    """Was this public post hidden because it shows personal data? Showing it again (approve, unhide)
    would put the card number or address back on the platform, where the stored copy is redacted."""
    exposed = await session.scalar(select(TriageResult.pii_exposed).where(TriageResult.mention_id == mention.id))
    return bool(exposed) and mention.is_public


def mark_reviewed(hold: ModerationAction, decision: str, actor: str) -> None:
    """A held post decided on: off the moderation queue, with the decision and who made it."""
    hold.status = "reviewed"
    hold.details = {**(hold.details or {}), "decision": decision, "by": actor}


async def pending_holds(session: AsyncSession, mention_id: int) -> list[ModerationAction]:
    """The holds of a post still waiting for a moderator."""
    return list(await session.scalars(select(ModerationAction).where(
        ModerationAction.mention_id == mention_id, ModerationAction.action == "hold",
        ModerationAction.status == "pending")))


async def review(session: AsyncSession, hold: ModerationAction, decision: str, actor: str, *,
                 reason: str | None, settings: Any) -> dict[str, list[int]]:
    """A moderator's decision on a held post. Returns the ids to carry out: ``actions`` (for
    :func:`community.moderation.execute`) and ``replies`` (for the dispatcher)."""
    if decision not in REVIEW_DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(REVIEW_DECISIONS)}")
    if hold.status != "pending":
        raise ValueError("this item was already reviewed")
    mention = await session.get(Mention, hold.mention_id)
    if mention is None:
        raise ValueError("the post no longer exists")
    if mention.deleted and decision in GONE_DECISIONS:  # a stale page: it left the queue with its deletion
        raise ValueError(f"the post was deleted on {platform_name(mention.platform)}: there is nothing to "
                         f"{decision} there any more")
    if decision in ("remove", "ban") and not (reason and reason.strip()):
        raise ValueError("removing a post needs a reason for its author")
    if decision == "approve" and await exposes_personal_data(session, mention):
        raise ValueError(EXPOSED)
    reason = (reason or "").strip()[:1000]
    mark_reviewed(hold, decision, actor)
    out: dict[str, list[int]] = {"actions": [], "replies": []}
    added: list[ModerationAction | None] = []
    filtered = await session.scalar(select(ModerationAction.status).where(
        ModerationAction.dedup_key == f"{hold.dedup_key}:filter"))
    hidden = filtered in HIDDEN_BY_HOLD  # an unknown filter: shown again on approval, removed on removal
    if decision == "approve":  # shown again where the hold hid it; a post never hidden has nothing to undo
        added.append(await add_action(session, f"review:{hold.id}:approve", mention, "approve",
                                      reason or "approved by a moderator", rule=hold.rule, actor=actor,
                                      perform=hidden or filtered == "unknown"))
    elif decision == "ban" and mention.deleted:  # the post is gone already: its author alone, as the API's ban
        added.append(await _ban(session, hold, mention, reason, actor))
    elif decision in ("remove", "ban"):  # every platform removes as it hides: a hidden post stays down
        added.append(await add_action(session, f"review:{hold.id}:remove", mention, "remove", reason,
                                      rule=hold.rule, actor=actor, perform=not hidden))
        notice = await _removal_notice(session, f"removed:{mention.id}", mention, reason, actor)
        if notice is not None:
            out["replies"].append(notice.id)
        if decision == "ban":
            added.append(await _ban(session, hold, mention, reason, actor))
    else:  # escalate: a private case with the agents
        from escalation.handoff import escalate_mention

        _, replies = await escalate_mention(session, mention, settings, actor)
        out["replies"] += [r.id for r in replies]
    record(session, actor, f"moderation.review.{decision}", "moderation_action", hold.id, reason=reason or None,
           rule=hold.rule, mention_id=mention.id)
    await session.flush()
    out["actions"] = [a.id for a in added if a is not None and a.status == "queued"]
    return out


async def _ban(session: AsyncSession, hold: ModerationAction, mention: Mention, reason: str,
               actor: str) -> ModerationAction | None:
    """A review's ban of the post's author (None: no author, or banned already)."""
    author = await session.get(Author, mention.author_id) if mention.author_id else None
    if author is None or author.banned:
        return None
    author.banned = True
    return await add_action(session, f"review:{hold.id}:ban", mention, "ban", reason, rule=hold.rule, actor=actor)


async def _removal_notice(session: AsyncSession, key: str, mention: Mention, reason: str, actor: str) -> Reply | None:
    if await session.scalar(select(Reply.id).where(Reply.dedup_key == key)):
        return None
    reply = Reply(dedup_key=key, mention_id=mention.id, conversation_id=mention.conversation_id,
                  platform=mention.platform, visibility="private", kind="notice",
                  text=REMOVED_NOTICE.format(reason=redact(reason)), status="pending", sent_by=actor)
    session.add(reply)
    await session.flush()
    return reply
