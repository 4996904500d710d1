"""Moderation actions: recording them, carrying them out on the platform, and the review queue
(a moderator's decisions on it: :mod:`community.decisions`).

A ``ModerationAction`` row's status says where it stands:

* ``pending`` — a post held for review; it waits in the moderation queue. A hold a rule (or the
  spam and abuse classifiers) made hides the post on its platform at once, like AutoModerator's
  "filter": a companion ``filter`` row (``<hold key>:filter``) carries that platform action, so
  approving shows the post again and removing leaves it down. A post reported by an agent or a
  bot stays up while it waits (someone asked for a look, nothing was decided).
* ``queued`` — a platform action (remove, hide, approve, lock, ban) to perform through the connector,
  or one put back by the sweep after its executor was killed mid-call (``details["interrupted"]``
  counts those times): a state set twice is set once, so the pacer's pass performs it again
  (:mod:`service.stranded`),
* ``sending`` — claimed by an executor (:func:`execute`), the platform call under way,
* ``done`` / ``failed`` / ``dry_run`` — performed, refused, or only recorded (dry run, no connector),
* ``unknown`` — claimed, and its executor never said what the platform did, interrupted three times
  (or once, for an action of the bot API); a person checks the platform and settles it on the
  moderation page or through the API (:mod:`console.settle`: ``done``, or ``queued`` again with its
  count of interruptions reset). Until a hide or removal is settled (or a later hide, removal or
  filter of the post is), public replies to its post are held back (:mod:`service.stranded`). An
  executor's answer that comes after all replaces ``unknown`` (audited ``moderation.late_result``),
  but only for the attempt it belongs to (``send_attempt``, migration 0017, raised by each claim and
  by "Try again"): the answer of a call given up for dead whose action was put back and performed
  again, or tried again, is never written over the newer attempt (:func:`record_outcome`),
* ``cancelled`` — never performed: its post was erased first (:mod:`service.privacy_actions`),
* ``recorded`` — an action with no platform counterpart (label, a lock on X, a filter on a post
  the platform cannot hide) or nothing left to do there (removing a post its hold already hid),
* ``alert`` / ``acknowledged`` — a ``notify`` rule's alert for a team: open until someone in the
  console acknowledges it; each is also the outgoing webhook event ``moderation.notify``,
* ``reviewed`` — a hold a moderator decided on (the decision is its own row).

Every row names the rule (or moderator) behind it and is mirrored in the audit log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from community import harvest
from escalation.links import shown_without_links
from listener.protocol import Action
from models import Author, Mention, ModerationAction, TriageResult
from models.base import utcnow
from models.bulk import IDS
from service.audit import record
from triage.pii import redact

log = logging.getLogger("socialcare.moderation")

# our action -> the connector's action kind, per platform (None: nothing to do on the platform)
PLATFORM_ACTIONS: dict[str, dict[str, str | None]] = {
    # ban: Reddit bans from the post's subreddit; Discourse suspends the user (admin API key);
    # X has no ban, so the brand account blocks the author (X Enterprise plan only, else `failed`)
    # filter: a held post hidden until a moderator decides (Reddit's removal is undone by approve)
    "reddit": {"remove": "remove", "hide": "remove", "filter": "remove", "approve": "approve", "lock": "lock",
               "ban": "ban"},
    "discourse": {"remove": "hide", "hide": "hide", "filter": "hide", "approve": "unhide", "lock": "lock",
                  "ban": "ban"},
    "x": {"remove": "hide", "hide": "hide", "filter": "hide", "approve": "unhide", "ban": "block"},  # X hides replies
}
CLAIMABLE = ("queued",)  # the only status an executor takes a row from: a failed action is queued anew
HIDDEN_BY_HOLD = ("queued", "sending", "done", "dry_run")  # a filter that hid the post (or is about to)
UNSETTLED = ("sending", "unknown")  # performed or not, nobody knows yet
BULK_LIMIT = 200  # one moderation page
REMOVAL_ACTIONS = ("remove", "hide")
REMOVED_NOTICE = "Your post was removed by the moderators. Reason: {reason}"
# private notices sent even when their template is missing or broken: fixed words, no personal data
BUILTIN_NOTICES = {
    "pii_removed_notice": "Hi {{ author_name }}, we've hidden your post because it included personal details. "
                          "To keep you safe, please don't share them publicly. We're happy to help in private.",
    # a rule's hold or removal when the rule names no template (community.routing.RULE_NOTICES)
    "rule_held_notice": "Hi {{ author_name }}, your post is waiting for a moderator to look at it before it "
                        "appears. {{ reason }}",
    "rule_removed_notice": "Hi {{ author_name }}, your post was removed by our community rules. {{ reason }}",
}
PII_NOTICE = "pii_removed_notice"
REPORT_RULE = "reported"  # the rule of a hold an agent or a bot asked for
_A = ModerationAction.__table__.c
RECORDED = select(_A.dedup_key).where(_A.mention_id.in_(IDS))  # built once (models.bulk)
QUEUED = select(_A.id).where(_A.mention_id.in_(IDS), _A.status == "queued")


def platform_kind(platform: str, action: str) -> str | None:
    return PLATFORM_ACTIONS.get(platform, {}).get(action)


def filter_kind(mention: Mention) -> str | None:
    """How a held post is hidden on its platform, or None where it cannot be: X hides only
    replies (and only in the brand's own conversations; elsewhere X refuses and the filter fails)."""
    if mention.platform == "x" and not mention.in_reply_to:
        return None
    return platform_kind(mention.platform, "filter")


async def add_action(session: AsyncSession, key: str, mention: Mention, action: str, reason: str, *,
                     rule: str | None, actor: str = "bot", recorded: set[str] | None = None,
                     perform: bool = True, **details: Any) -> ModerationAction | None:
    """Record an action once per ``key`` (a redelivered message adds nothing). Holds wait for a
    moderator, their post hidden meanwhile (a ``filter``, see the module doc) unless it was only
    reported; platform actions are queued for :func:`execute` (``perform=False``: only recorded,
    nothing left to do on the platform); the rest are only recorded.
    ``recorded``: every key already recorded for the post, read once for a batch (see
    :func:`recorded_keys`) and kept up to date here; without it the key is looked up."""
    reason = redact(reason) if reason else reason  # typed by a person or a bot: no personal data kept
    if recorded is None:
        if await session.scalar(select(ModerationAction.id).where(ModerationAction.dedup_key == key)):
            return None
    else:
        if key in recorded:
            return None
        recorded.add(key)
    if action == "hold":
        status = "pending"
    elif action == "notify":
        status = "alert"
    else:
        status = "queued" if perform and platform_kind(mention.platform, action) else "recorded"
    row = ModerationAction(dedup_key=key, mention_id=mention.id, action=action, rule=rule, reason=reason,
                           actor=actor, status=status, details=details)
    session.add(row)
    filtered = False
    if action == "hold" and rule != REPORT_RULE:
        filtered = filter_kind(mention) is not None
        session.add(ModerationAction(
            dedup_key=f"{key}:filter", mention_id=mention.id, action="filter", rule=rule, reason=reason, actor=actor,
            status="queued" if filtered else "recorded",
            details={} if filtered else {"error": f"{mention.platform} cannot hide this post: it stays up until "
                                                  "a moderator decides"}))
        if recorded is not None:
            recorded.add(f"{key}:filter")
    if action in REMOVAL_ACTIONS or filtered:
        mention.hidden = True
        await harvest.sync_copies(session, mention)  # a hidden post is no longer offered as an answer
    elif action == "approve":
        mention.hidden = False
    record(session, actor, f"moderation.{action}", "mention", mention.id, reason=reason, rule=rule,
           **({"notify": details["notify"]} if action == "notify" and details.get("notify") else {}))
    return row


async def recorded_keys(session: AsyncSession, mention_ids: list[int]) -> set[str]:
    """The keys of every action recorded for these posts (for :func:`add_action`)."""
    return set(await session.scalars(RECORDED, {"ids": list(mention_ids)}))


async def alerts(session: AsyncSession, *, open_only: bool = True, status: str | None = None,
                 limit: int = 100) -> list[dict[str, Any]]:
    """``notify`` alerts for the moderation page, newest first: who is alerted, by which rule, why,
    and the post in its redacted public form (never its raw text or personal data, nor a secure link
    it quotes: that opens the customer's private channel to whoever reads it). ``status``
    ("acknowledged"): only those (the page's short history)."""
    q = (select(ModerationAction, Mention, TriageResult).join(Mention, Mention.id == ModerationAction.mention_id)
         .outerjoin(TriageResult, TriageResult.mention_id == Mention.id)
         .where(ModerationAction.action == "notify").order_by(ModerationAction.id.desc()).limit(limit))
    if status or open_only:
        q = q.where(ModerationAction.status == (status or "alert"))
    return [{"id": a.id, "at": a.created_at, "notify": (a.details or {}).get("notify"), "rule": a.rule,
             "reason": a.reason, "status": a.status, "mention_id": m.id, "platform": m.platform,
             "channel": m.channel, "url": m.url, "conversation_id": m.conversation_id,
             "text": shown_without_links(shown_text(m, tri)),
             "acknowledged_by": (a.details or {}).get("acknowledged_by"),
             "acknowledged_at": (a.details or {}).get("acknowledged_at")}
            for a, m, tri in (await session.execute(q)).all()]


async def acknowledge(session: AsyncSession, action: ModerationAction, actor: str) -> bool:
    """Someone took the alert in hand; returns False if it was not an open alert."""
    if action.action != "notify" or action.status != "alert":
        return False
    action.status = "acknowledged"
    action.details = {**(action.details or {}), "acknowledged_by": actor, "acknowledged_at": utcnow().isoformat()}
    record(session, actor, "moderation.notify.acknowledged", "moderation_action", action.id, rule=action.rule)
    return True


def shown_text(mention: Mention, tri: TriageResult | None) -> str:
    """A post as any page may show it: triage's personal-data spans (or a fresh detection) redacted.
    Once the stored text itself was redacted, triage's spans (positions in the original) would cut
    into the words around the placeholders: the stored text is then read afresh."""
    from triage.protocol import REDACTED_VALUE, PiiSpan

    spans = (tri.scores or {}).get("pii") if tri is not None else None
    if not spans or REDACTED_VALUE.search(mention.text):
        return redact(mention.text)
    try:
        return redact(mention.text, [PiiSpan(**x) for x in spans])
    except (TypeError, ValueError):
        return redact(mention.text)


async def redact_everywhere(session: AsyncSession, mention: Mention, spans: list[dict] | None = None) -> bool:
    """:func:`redact_mention`, and the copies of the post kept as accepted community answers."""
    changed = redact_mention(mention, spans)
    await harvest.sync_copies(session, mention)
    return changed


async def report(session: AsyncSession, mention: Mention, actor: str, note: str) -> tuple[ModerationAction, bool]:
    """An agent or bot asks the moderators to look at a post: a hold with rule ``reported`` and the
    note (personal data redacted) as its reason. A reporter's repeat while theirs is pending adds
    nothing; after a review they may report again. Returns the hold and whether it is new."""
    from sqlalchemy import func

    mine = (ModerationAction.mention_id == mention.id, ModerationAction.action == "hold",
            ModerationAction.rule == REPORT_RULE, ModerationAction.actor == actor)
    pending = await session.scalar(select(ModerationAction).where(*mine, ModerationAction.status == "pending"))
    if pending is not None:
        return pending, False
    earlier = await session.scalar(select(func.count()).select_from(ModerationAction).where(*mine))
    row = await add_action(session, f"report:{mention.id}:{actor}:{earlier}", mention, "hold",
                           redact(note.strip())[:1000], rule=REPORT_RULE, actor=actor)
    if row is None:  # the same report submitted twice at once: the other request recorded it
        return await session.scalar(select(ModerationAction).where(*mine, ModerationAction.status == "pending")), False
    await session.flush()
    return row, True


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
                  dry_run_channels: frozenset[str] | set[str] = frozenset(),
                  kind_of: Callable[[str, str], str | None] = platform_kind) -> None:
    """Carry out queued actions through the connectors, each once: a row is claimed (``queued`` to
    ``sending``, one conditional statement) before anything else, so of two executors, or an
    executor and an erasure cancelling the row, only one goes on. ``kind_of``: the connector's
    action for (platform, our action); the bot API asks for its own kinds."""
    for action_id in action_ids:
        async with db.session() as session:
            row = await session.get(ModerationAction, action_id)
            if row is None or row.status not in CLAIMABLE:
                continue
            claimed = await session.execute(update(ModerationAction).where(
                ModerationAction.id == row.id, ModerationAction.status.in_(CLAIMABLE))
                .values(status="sending", claimed_at=utcnow(), send_attempt=ModerationAction.send_attempt + 1)
                .execution_options(synchronize_session=False))
            if claimed.rowcount != 1:
                await session.rollback()
                continue  # another executor took it, or an erasure cancelled it
            await session.refresh(row)  # as claimed (the row locked): this attempt's number
            attempt = row.send_attempt  # only this attempt's outcome is recorded
            await session.commit()
            mention = await session.get(Mention, row.mention_id)
            kind = kind_of(mention.platform, row.action) if mention else None
            connector = connectors.get(mention.platform) if mention else None
            error = None
            if kind is None:
                status = "recorded"
            elif dry_run or mention.platform in dry_run_channels or connector is None:
                status = "dry_run"
                error = None if dry_run or connector is not None else f"no connector for {mention.platform}"
            else:
                author = await session.get(Author, mention.author_id) if mention.author_id else None
                await session.commit()  # no transaction held while the platform answers
                action = Action(kind=kind, platform=mention.platform, target_external_id=mention.external_id,
                                recipient_id=author.platform_user_id if author else None,
                                recipient_handle=author.handle if author else None, reason=row.reason)
                try:
                    result = await connector.perform(action)
                    ok, error = result.ok, result.error
                except Exception as exc:  # noqa: BLE001 - a platform error must not stop the others
                    ok, error = False, f"{type(exc).__name__}: {exc}"
                status = "done" if ok else "failed"
                log.info("moderation %s %s on %s: %s", row.id, row.action, mention.platform, status)
            await record_outcome(session, row, attempt, status, error)
            await session.commit()


async def record_outcome(session: AsyncSession, row: ModerationAction, attempt: int, status: str,
                         error: str | None) -> bool:
    """Write what the platform said of ``attempt`` (its ``send_attempt`` as claimed) only while the row
    is still at that attempt and ``sending``, or ``unknown`` — swept while its call took far too long:
    the platform's answer is the truth then, a person need not look (audited ``moderation.late_result``).
    Never over a newer attempt (the sweep put it back in the queue and the pacer claimed it again, or a
    person tried it again) nor over a status a person or an erasure set: the answer of an attempt given
    up for dead is logged and audited ``moderation.stale_result`` instead (ids and statuses only), and
    the newer attempt records its own. Returns whether it was written; the caller commits."""
    for was in UNSETTLED:
        done = await session.execute(update(ModerationAction).where(
            ModerationAction.id == row.id, ModerationAction.status == was, ModerationAction.send_attempt == attempt)
            .values(status=status).execution_options(synchronize_session=False))
        if done.rowcount == 1:
            break
    else:
        now = (await session.execute(select(ModerationAction.status, ModerationAction.send_attempt)
                                     .where(ModerationAction.id == row.id))).first()
        if now is not None and (now.send_attempt != attempt or now.status in CLAIMABLE):  # a newer attempt's
            record(session, "system", "moderation.stale_result", "moderation_action", row.id,
                   mention_id=row.mention_id, kind=row.action, status=status, attempt=attempt,
                   current_attempt=now.send_attempt, current_status=now.status)
            log.warning("moderation %s: the answer (%s) of attempt %s is not recorded: the action was put back "
                        "or performed again since (attempt %s, %s)", row.id, status, attempt, now.send_attempt,
                        now.status)
        else:
            log.warning("moderation %s: its outcome (%s) was not recorded: its status changed meanwhile", row.id,
                        status)
        return False
    # read once the update locked the row: an erasure committed before left its reason and details so
    fresh = await session.get(ModerationAction, row.id, populate_existing=True)
    if was == "unknown":
        record(session, "system", "moderation.late_result", "moderation_action", row.id,
               mention_id=row.mention_id, kind=row.action, status=status)
        log.warning("moderation %s: a late outcome (%s) replaces unknown", row.id, status)
    if error and fresh is not None:
        fresh.details = {**(fresh.details or {}), "error": error[:500]}
    return True


async def queued_actions(session: AsyncSession, mention_ids: list[int]) -> list[int]:
    return list(await session.scalars(QUEUED, {"ids": list(mention_ids)}))


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


async def queue(session: AsyncSession, limit: int = 200) -> list[tuple[ModerationAction, Mention, Author | None,
                                                                        TriageResult | None]]:
    """Held posts waiting for a moderator, oldest first, with author and scores (one query). A post
    deleted on its platform (by its author, a platform moderator, with its thread; or erased here)
    waits for no decision: it leaves the queue, and comes back if the platform shows it again."""
    rows = await session.execute(
        select(ModerationAction, Mention, Author, TriageResult)
        .join(Mention, Mention.id == ModerationAction.mention_id)
        .outerjoin(Author, Author.id == Mention.author_id)
        .outerjoin(TriageResult, TriageResult.mention_id == Mention.id)
        .where(ModerationAction.action == "hold", ModerationAction.status == "pending", Mention.deleted.is_(False))
        .order_by(ModerationAction.created_at, ModerationAction.id).limit(limit))
    return [tuple(r) for r in rows.all()]
