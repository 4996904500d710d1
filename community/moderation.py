"""Moderation actions: recording them, carrying them out on the platform, and the review queue.

A ``ModerationAction`` row's status says where it stands:

* ``pending`` — a post held for review; it waits in the moderation queue,
* ``queued`` — a platform action (remove, hide, approve, lock, ban) to perform through the connector,
* ``done`` / ``failed`` / ``dry_run`` — performed, refused, or only recorded (dry run, no connector),
* ``recorded`` — an action with no platform counterpart (label, notify, a hold on X),
* ``reviewed`` — a hold a moderator decided on (the decision is its own row).

Every row names the rule (or moderator) behind it and is mirrored in the audit log.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from listener.protocol import Action
from models import Author, Mention, ModerationAction, Reply, TriageResult
from service.audit import record
from triage.pii import redact

log = logging.getLogger("socialcare.moderation")

# our action -> the connector's action kind, per platform (None: nothing to do on the platform)
PLATFORM_ACTIONS: dict[str, dict[str, str | None]] = {
    "reddit": {"remove": "remove", "hide": "remove", "approve": "approve", "lock": "lock", "ban": "ban"},
    "discourse": {"remove": "hide", "hide": "hide", "approve": "unhide", "lock": "lock", "ban": "ban"},
    "x": {"remove": "hide", "hide": "hide", "approve": "unhide", "ban": "ban"},  # X hides replies
}
REVIEW_DECISIONS = ("approve", "remove", "ban", "escalate")
BULK_LIMIT = 200  # one moderation page
REMOVAL_ACTIONS = ("remove", "hide")
REMOVED_NOTICE = "Your post was removed by the moderators. Reason: {reason}"


def platform_kind(platform: str, action: str) -> str | None:
    return PLATFORM_ACTIONS.get(platform, {}).get(action)


async def add_action(session: AsyncSession, key: str, mention: Mention, action: str, reason: str, *,
                     rule: str | None, actor: str = "bot", **details: Any) -> ModerationAction | None:
    """Record an action once per ``key`` (a redelivered message adds nothing). Holds wait for a
    moderator; platform actions are queued for :func:`execute`; the rest are only recorded."""
    if await session.scalar(select(ModerationAction.id).where(ModerationAction.dedup_key == key)):
        return None
    if action == "hold":
        status = "pending"
    else:
        status = "queued" if platform_kind(mention.platform, action) else "recorded"
    row = ModerationAction(dedup_key=key, mention_id=mention.id, action=action, rule=rule, reason=reason,
                           actor=actor, status=status, details=details)
    session.add(row)
    if action in REMOVAL_ACTIONS:
        mention.hidden = True
    elif action == "approve":
        mention.hidden = False
    record(session, actor, f"moderation.{action}", "mention", mention.id, reason=reason, rule=rule)
    return row


def redact_mention(mention: Mention, spans: list[dict] | None = None) -> bool:
    """Personal data out of the stored post, its text and raw payload, so no page, export or API
    shows it again. Returns whether anything changed."""
    from triage.protocol import PiiSpan

    objs = [PiiSpan(**s) for s in spans] if spans else None
    try:
        text = redact(mention.text, objs)
    except (IndexError, ValueError):  # spans from an older text (an edit): detect afresh
        text = redact(mention.text)
    raw = _redact_json(mention.raw or {})
    changed = text != mention.text or raw != mention.raw
    mention.text, mention.raw = text, raw
    return changed


def _redact_json(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_json(v) for v in value]
    return value


async def execute(db: Any, connectors: dict[str, Any], action_ids: list[int], *, dry_run: bool,
                  dry_run_channels: frozenset[str] | set[str] = frozenset()) -> None:
    """Carry out queued actions through the connectors, each once (a row leaves ``queued`` first)."""
    for action_id in action_ids:
        async with db.session() as session:
            row = await session.get(ModerationAction, action_id)
            if row is None or row.status != "queued":
                continue
            mention = await session.get(Mention, row.mention_id)
            kind = platform_kind(mention.platform, row.action) if mention else None
            connector = connectors.get(mention.platform) if mention else None
            if kind is None:
                row.status = "recorded"
            elif dry_run or mention.platform in dry_run_channels or connector is None:
                row.status = "dry_run"
                if connector is None and not dry_run:
                    row.details = {**(row.details or {}), "error": f"no connector for {mention.platform}"}
            else:
                author = await session.get(Author, mention.author_id) if mention.author_id else None
                row.status = "sending"
                await session.commit()
                action = Action(kind=kind, platform=mention.platform, target_external_id=mention.external_id,
                                recipient_id=author.platform_user_id if author else None,
                                recipient_handle=author.handle if author else None, reason=row.reason)
                try:
                    result = await connector.perform(action)
                    ok, error = result.ok, result.error
                except Exception as exc:  # noqa: BLE001 - a platform error must not stop the others
                    ok, error = False, f"{type(exc).__name__}: {exc}"
                row.status = "done" if ok else "failed"
                if error:
                    row.details = {**(row.details or {}), "error": error[:500]}
                log.info("moderation %s %s on %s: %s", row.id, row.action, mention.platform, row.status)
            await session.commit()


async def queued_actions(session: AsyncSession, mention_ids: list[int]) -> list[int]:
    return list(await session.scalars(select(ModerationAction.id).where(
        ModerationAction.mention_id.in_(mention_ids), ModerationAction.status == "queued")))


async def author_removals(session: AsyncSession, author_ids: set[int]) -> dict[int, int]:
    """How many of each author's posts were removed or hidden (rules: ``removals_at_least``)."""
    if not author_ids:
        return {}
    from sqlalchemy import func

    rows = await session.execute(
        select(Mention.author_id, func.count(func.distinct(Mention.id)))
        .join(ModerationAction, ModerationAction.mention_id == Mention.id)
        .where(Mention.author_id.in_(author_ids), ModerationAction.action.in_(REMOVAL_ACTIONS),
               ModerationAction.status.notin_(("failed",)))
        .group_by(Mention.author_id))
    return {a: int(n) for a, n in rows.all()}


async def review(session: AsyncSession, hold: ModerationAction, decision: str, actor: str, *,
                 reason: str | None, settings: Any) -> dict[str, list[int]]:
    """A moderator's decision on a held post. Returns the ids to carry out: ``actions`` (for
    :func:`execute`) and ``replies`` (for the dispatcher)."""
    if decision not in REVIEW_DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(REVIEW_DECISIONS)}")
    if hold.status != "pending":
        raise ValueError("this item was already reviewed")
    mention = await session.get(Mention, hold.mention_id)
    if mention is None:
        raise ValueError("the post no longer exists")
    if decision in ("remove", "ban") and not (reason and reason.strip()):
        raise ValueError("removing a post needs a reason for its author")
    reason = (reason or "").strip()[:1000]
    hold.status = "reviewed"
    hold.details = {**(hold.details or {}), "decision": decision, "by": actor}
    out: dict[str, list[int]] = {"actions": [], "replies": []}
    added: list[ModerationAction | None] = []
    if decision == "approve":
        added.append(await add_action(session, f"review:{hold.id}:approve", mention, "approve",
                                      reason or "approved by a moderator", rule=hold.rule, actor=actor))
    elif decision in ("remove", "ban"):
        added.append(await add_action(session, f"review:{hold.id}:remove", mention, "remove", reason,
                                      rule=hold.rule, actor=actor))
        notice = await _removal_notice(session, f"removed:{mention.id}", mention, reason, actor)
        if notice is not None:
            out["replies"].append(notice.id)
        if decision == "ban" and mention.author_id:
            author = await session.get(Author, mention.author_id)
            if author is not None and not author.banned:
                author.banned = True
                added.append(await add_action(session, f"review:{hold.id}:ban", mention, "ban", reason,
                                              rule=hold.rule, actor=actor))
    else:  # escalate: a private case with the agents
        from escalation.handoff import escalate_mention

        _, replies = await escalate_mention(session, mention, settings, actor)
        out["replies"] += [r.id for r in replies]
    record(session, actor, f"moderation.review.{decision}", "moderation_action", hold.id, reason=reason or None,
           rule=hold.rule, mention_id=mention.id)
    await session.flush()
    out["actions"] = [a.id for a in added if a is not None and a.status == "queued"]
    return out


async def _removal_notice(session: AsyncSession, key: str, mention: Mention, reason: str, actor: str) -> Reply | None:
    if await session.scalar(select(Reply.id).where(Reply.dedup_key == key)):
        return None
    reply = Reply(dedup_key=key, mention_id=mention.id, conversation_id=mention.conversation_id,
                  platform=mention.platform, visibility="private", kind="notice",
                  text=REMOVED_NOTICE.format(reason=reason), status="pending", sent_by=actor)
    session.add(reply)
    await session.flush()
    return reply


async def queue(session: AsyncSession, limit: int = 200) -> list[tuple[ModerationAction, Mention, Author | None,
                                                                        TriageResult | None]]:
    """Held posts waiting for a moderator, oldest first, with author and scores (one query)."""
    rows = await session.execute(
        select(ModerationAction, Mention, Author, TriageResult)
        .join(Mention, Mention.id == ModerationAction.mention_id)
        .outerjoin(Author, Author.id == Mention.author_id)
        .outerjoin(TriageResult, TriageResult.mention_id == Mention.id)
        .where(ModerationAction.action == "hold", ModerationAction.status == "pending")
        .order_by(ModerationAction.created_at, ModerationAction.id).limit(limit))
    return [tuple(r) for r in rows.all()]
