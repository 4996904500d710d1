"""Read models of the triage console: the agent queue and a conversation with its customer context.

The unit of work is a conversation (claims are per conversation): it is in the queue while it is
open and holds a mention the router gave to an agent, or a bot answer held back as a suggestion,
that is still on its platform: a post deleted there (or erased here) leaves the queue, and comes
back if the platform shows it again. Order: unanswered before answered, then high priority first,
then the earliest SLA deadline.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from console.moderation_view import link
from console.queries import (
    PRIVATE_OUTCOME,
    PRIVATE_SENSITIVITY,
    care_team_only,
    moderated_ids,
    post_state,
    public_text,
)
from escalation.links import shown_without_links
from escalation.public_guard import platform_name
from models import (
    Author,
    Case,
    CaseMessage,
    Conversation,
    Customer,
    Mention,
    Reply,
    RouteDecision,
    TriageResult,
    User,
)
from models.base import utcnow
from service.audit import record
from service.stranded import INTERRUPTED

FIRST_RESPONSE_TARGET = timedelta(hours=1)  # the service-level target for a first human answer
CLAIM_TTL = timedelta(minutes=15)  # a claim left idle this long may be taken by someone else
QUEUE_LIMIT = 300
FILTERS = ("channel", "issue_type", "sentiment", "sensitivity", "unclaimed")
HUMAN_REPLY = Reply.sent_by != "bot"
DONE_REPLY = ("pending", "sending", "sent", "dry_run", "unknown")
VIEW_REASON = "conversation view"
UNATTRIBUTED = "console:unattributed"  # a caller that did not say who is looking (still audited)


def priority_band(priority: float) -> int:
    """Coarse bands so the SLA decides within a band: 2 high (≥70), 1 medium (≥40), 0 low."""
    return 2 if priority >= 70 else 1 if priority >= 40 else 0


@dataclass
class QueueItem:
    conversation_id: int
    mention_id: int  # the mention the agent should read first (highest priority, waiting)
    platform: str
    author: str | None
    text: str
    issue_type: str
    sentiment: str
    sensitivity: str
    priority: float
    waiting: int  # queued mentions in the conversation
    first_at: datetime
    due_at: datetime
    answered: bool
    claimed_by: str | None
    claimed_at: datetime | None
    tags: list[str] = field(default_factory=list)

    @property
    def overdue(self) -> bool:
        return not self.answered and self.due_at < utcnow()

    @property
    def band(self) -> int:
        return priority_band(self.priority)

    def sort_key(self) -> tuple:
        return (self.answered, -self.band, self.due_at, -self.priority, self.conversation_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id, "mention_id": self.mention_id, "platform": self.platform,
            "author": self.author, "text": self.text, "issue_type": self.issue_type, "sentiment": self.sentiment,
            "sensitivity": self.sensitivity, "priority": round(self.priority, 1), "waiting": self.waiting,
            "first_at": self.first_at.isoformat(), "due_at": self.due_at.isoformat(), "overdue": self.overdue,
            "answered": self.answered, "claimed_by": self.claimed_by,
            "claimed_at": self.claimed_at.isoformat() if self.claimed_at else None, "tags": list(self.tags),
        }


def clean_filters(query: Any) -> dict[str, str]:
    """Filters from a query string; values are only ever compared, never interpreted (``unclaimed``
    is on or off)."""
    filters = {k: str(query.get(k))[:80] for k in FILTERS if query.get(k)}
    if "unclaimed" in filters:
        filters["unclaimed"] = "1"
    return filters


def _queued(q: Any, filters: dict[str, str]) -> Any:
    """``q`` (over mentions) narrowed to posts waiting for an agent in open conversations, filtered.
    Every view of the queue (page, live rows, API, the waiting counts) goes through here. A post
    deleted on its platform (erased ones are deleted too) waits for nobody: no public answer can reach
    it, and its SLA clock must not run."""
    suggested = select(Reply.mention_id).where(Reply.status == "suggested", Reply.mention_id.is_not(None))
    q = (q.join(Conversation, Conversation.id == Mention.conversation_id)
         .join(RouteDecision, RouteDecision.mention_id == Mention.id)
         .outerjoin(TriageResult, TriageResult.mention_id == Mention.id)
         .where(Conversation.status == "open", Mention.deleted.is_(False),
                or_(RouteDecision.outcome == "agent_queue", Mention.id.in_(suggested))))
    if "channel" in filters:
        q = q.where(Mention.platform == filters["channel"])
    for name in ("issue_type", "sentiment", "sensitivity"):
        if name in filters:
            q = q.where(getattr(TriageResult, name) == filters[name])
    if "unclaimed" in filters:  # free to pick up: never claimed, released, or idle past the claim TTL
        q = q.where(or_(Conversation.claimed_by.is_(None), Conversation.claimed_at.is_(None),
                        Conversation.claimed_at < utcnow() - CLAIM_TTL))
    return q


async def _last_human(session: AsyncSession, conv_ids: set[int]) -> dict[int, datetime]:
    """When a person last answered in each conversation."""
    return dict((await session.execute(
        select(Reply.conversation_id, Reply.created_at).where(
            Reply.conversation_id.in_(conv_ids), HUMAN_REPLY, Reply.status.in_(DONE_REPLY))
        .order_by(Reply.created_at))).all())


async def _most_urgent(session: AsyncSession, filters: dict[str, str], limit: int) -> set[int]:
    """The conversations the queue shows, from one light row each: in the queue's order, so a large
    backlog never pushes the oldest, most overdue conversations out (reading only the newest posts
    did). The order is the queue's own, with each conversation's first waiting post taken as its
    first queued post; a margin of conversations beyond ``limit`` absorbs the difference."""
    rows = (await session.execute(_queued(
        select(Mention.conversation_id, func.max(TriageResult.priority), func.min(Mention.created_at),
               func.max(Mention.created_at)), filters).group_by(Mention.conversation_id))).all()
    if len(rows) <= limit:
        return {r[0] for r in rows}
    answered_at = await _last_human(session, {r[0] for r in rows})

    def key(row: tuple) -> tuple:
        conv_id, priority, first, last = row
        answered = conv_id in answered_at and answered_at[conv_id] >= last
        return answered, -priority_band(priority or 0.0), first, -(priority or 0.0), conv_id

    return {r[0] for r in sorted(rows, key=key)[:limit * 2]}


async def queue_items(session: AsyncSession, filters: dict[str, str] | None = None,
                      limit: int = QUEUE_LIMIT) -> list[QueueItem]:
    filters = filters or {}
    shown = await _most_urgent(session, filters, limit)
    if not shown:
        return []
    q = _queued(select(Mention, TriageResult, Author, Conversation), filters).outerjoin(
        Author, Author.id == Mention.author_id).where(Mention.conversation_id.in_(shown))
    rows = (await session.execute(q)).all()
    if not rows:
        return []
    conv_ids = {c.id for _, _, _, c in rows}
    last_human = await _last_human(session, conv_ids)
    claimers = {c.claimed_by for _, _, _, c in rows if c.claimed_by}
    names = dict((await session.execute(select(User.id, User.username).where(User.id.in_(claimers)))).all()) \
        if claimers else {}
    grouped: dict[int, list[tuple]] = {}
    for row in rows:
        grouped.setdefault(row[3].id, []).append(row)
    items = []
    for conv_id, group in grouped.items():
        conv = group[0][3]
        answered_at = last_human.get(conv_id)
        waiting = [r for r in group if answered_at is None or r[0].created_at > answered_at]
        pick = waiting or group
        top = max(pick, key=lambda r: (r[1].priority if r[1] else 0.0, r[0].created_at))
        m, tri, author, _ = top
        first = min(r[0].created_at for r in pick)
        items.append(QueueItem(
            conversation_id=conv_id, mention_id=m.id, platform=m.platform,
            author=author.handle if author else None, text=public_text(m, tri),
            issue_type=tri.issue_type if tri else "unknown", sentiment=tri.sentiment if tri else "unknown",
            sensitivity=tri.sensitivity if tri else "unknown", priority=tri.priority if tri else 0.0,
            waiting=len(waiting), first_at=first, due_at=first + FIRST_RESPONSE_TARGET, answered=not waiting,
            claimed_by=names.get(conv.claimed_by), claimed_at=conv.claimed_at, tags=list(conv.tags or []),
        ))
    items.sort(key=QueueItem.sort_key)
    return items[:limit]


def plain_label(text: str, limit: int = 60) -> str:
    """One-line text for places that cannot isolate bidi text (an <option>): format characters
    (bidi overrides, zero-width joiners) and line breaks removed, shortened."""
    clean = "".join(" " if ch in "\r\n\t" else ch for ch in text if unicodedata.category(ch) != "Cf")
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def claim_is_live(conv: Conversation, now: datetime | None = None) -> bool:
    return bool(conv.claimed_by and conv.claimed_at and conv.claimed_at > (now or utcnow()) - CLAIM_TTL)


def _triage_view(tri: TriageResult | None) -> dict[str, Any] | None:
    if tri is None:
        return None
    scores = tri.scores or {}
    tasks = []
    for task in ("sentiment", "sensitivity", "issue_type", "toxicity", "spam"):
        s = scores.get(task) or {}
        tasks.append({"task": task, "label": getattr(tri, task), "score": s.get("score"),
                      "explanation": list(s.get("explanation") or [])[:5], "model": s.get("model")})
    return {"tasks": tasks, "priority": round(tri.priority, 1),
            "priority_explanation": list(scores.get("priority_explanation") or [])[:6],
            "pii": sorted({p.get("type", "?") for p in scores.get("pii") or []}), "language": tri.language,
            "model_version": tri.model_version}


def pick_target(mentions: list[dict[str, Any]], focus: int | None = None) -> dict[str, Any] | None:
    """The post being answered: the one the agent chose (``focus``), else the latest one waiting
    for an agent, else the latest post of the thread; a post deleted on its platform only when chosen
    or when every post is (it can only be answered privately)."""
    chosen = [m for m in mentions if focus is not None and m["id"] == focus]
    there = [m for m in mentions if not m["deleted"]]
    waiting = [m for m in there if m["route"] and m["route"]["outcome"] == "agent_queue"]
    return (chosen or waiting or there or mentions or [None])[-1]


async def conversation_view(session: AsyncSession, conv_id: int, *, viewer: str | None = None,
                            why: str = VIEW_REASON, focus: int | None = None,
                            with_customer: bool = True, private: bool = True) -> dict[str, Any] | None:
    """The thread (with triage and its explanations), its replies, and the context of the person
    being answered: the author of the target post (``focus``, see :func:`pick_target`), their
    customer record and their history on every channel. In a thread with several people (a Reddit
    thread, a forum topic) the others' posts are never shown as that customer's. All customer text
    is shown redacted.

    Showing the customer record (name, plan, attributes) is a view of it: audited here as
    ``customer.viewed`` with ``viewer`` (who), ``why`` and the time, and committed before the view is
    returned, so no page shows a record whose viewing went unrecorded. ``with_customer=False`` (a
    moderator's read-only look at the thread) shows no record and no history, and audits nothing.
    ``private=False`` (a reader outside the care team, :func:`console.queries.in_care_team`) leaves out
    private matters but those on the moderation page, private replies, and replies to what is left out."""
    conv = await session.get(Conversation, conv_id)
    if conv is None:
        return None
    rows = (await session.execute(
        select(Mention, TriageResult, RouteDecision, Author)
        .outerjoin(TriageResult, TriageResult.mention_id == Mention.id)
        .outerjoin(RouteDecision, RouteDecision.mention_id == Mention.id)
        .outerjoin(Author, Author.id == Mention.author_id)
        .where(Mention.conversation_id == conv_id).order_by(Mention.created_at))).all()
    replies = list(await session.scalars(select(Reply).where(Reply.conversation_id == conv_id)
                                         .order_by(Reply.created_at)))
    if not private:
        moderated = await moderated_ids(session, [m.id for m, *_ in rows])
        rows = [(m, tri, d, a) for m, tri, d, a in rows if m.id in moderated or not care_team_only(m, tri, d)]
        shown = {m.id for m, *_ in rows}
        replies = [r for r in replies if r.visibility == "public" and (r.mention_id is None or r.mention_id in shown)]
    thread: list[dict[str, Any]] = []
    authors_by_mention: dict[int, Author | None] = {}
    for m, tri, d, a in rows:
        authors_by_mention[m.id] = a
        state = post_state(m)
        gone = f" ({state})" if m.deleted and state else ""  # "Reply to" says which posts are deleted
        thread.append({"type": "mention", "at": m.created_at, "id": m.id, "platform": m.platform, "url": m.url,
                       "author": a.handle if a else None, "text": public_text(m, tri), "hidden": m.hidden,
                       "deleted": m.deleted, "state": state,
                       "label": plain_label(f"#{m.id}{gone} {a.handle if a else ''}: {public_text(m, tri)}"),
                       "is_public": m.is_public, "triage": _triage_view(tri),
                       "route": {"outcome": d.outcome, "reason": d.reason} if d else None})
    urls = {m.id: m.url for m, *_ in rows}
    for r in replies:
        thread.append({"type": "reply", "at": r.created_at, "id": r.id, "platform": r.platform, "text": shown_without_links(r.text),
                       "status": r.status, "visibility": r.visibility, "sent_by": r.sent_by, "kind": r.kind,
                       # an unknown one (interrupted mid-call): where to check it, and why it is unknown
                       "where": platform_name(r.platform), "post_url": link(urls.get(r.mention_id)),
                       "error": r.error if r.status == "unknown" and r.error != INTERRUPTED else None})
    thread.sort(key=lambda e: (e["at"], e["type"] == "reply"))
    mentions = [e for e in thread if e["type"] == "mention"]
    target = pick_target(mentions, focus)
    person = authors_by_mention.get(target["id"]) if target else None
    customer = None
    author_ids: set[int] = set()
    customer_ids: set[int] = set()
    if with_customer:
        if person is not None:
            author_ids.add(person.id)
            if person.customer_id:
                customer_ids.add(person.customer_id)
        elif target is not None and conv.customer_id:  # an erased or unknown author: the thread's customer
            customer_ids.add(conv.customer_id)
        if customer_ids:
            author_ids |= set(await session.scalars(select(Author.id).where(Author.customer_id.in_(customer_ids))))
        customer = await session.get(Customer, next(iter(customer_ids))) if customer_ids else None
    history = []
    if author_ids:
        history_rows = (await session.execute(
            select(Mention, TriageResult, RouteDecision, Author)
            .outerjoin(TriageResult, TriageResult.mention_id == Mention.id)
            .outerjoin(RouteDecision, RouteDecision.mention_id == Mention.id)
            .outerjoin(Author, Author.id == Mention.author_id)
            .where(Mention.author_id.in_(author_ids),
                   or_(Mention.conversation_id.is_(None), Mention.conversation_id != conv_id))
            .order_by(Mention.created_at.desc()).limit(20))).all()
        for m, tri, d, a in history_rows:
            history.append({"id": m.id, "at": m.created_at, "platform": m.platform, "text": public_text(m, tri),
                            "author": a.handle if a else None,
                            "conversation_id": m.conversation_id, "issue_type": tri.issue_type if tri else None,
                            "sentiment": tri.sentiment if tri else None, "outcome": d.outcome if d else None})
    case_filter = [Case.conversation_id == conv_id]
    if author_ids:
        case_filter.append(Case.author_id.in_(author_ids))
    if customer_ids:
        case_filter.append(Case.customer_id.in_(customer_ids))
    cases = list(await session.scalars(select(Case).where(or_(*case_filter)).order_by(Case.created_at.desc())
                                       .limit(10)))
    case_messages = {}
    if cases and with_customer:
        for cm in await session.scalars(select(CaseMessage).where(
                CaseMessage.case_id.in_([c.id for c in cases])).order_by(CaseMessage.created_at)):
            case_messages.setdefault(cm.case_id, []).append(cm)
    other_replies = []
    if history:  # shown as the thread shows replies: a secure link still in the outbox is masked
        other_replies = [{"created_at": r.created_at, "platform": r.platform, "kind": r.kind, "status": r.status,
                          "visibility": r.visibility, "conversation_id": r.conversation_id,
                          "text": shown_without_links(r.text)}
                         for r in await session.scalars(select(Reply).where(
                             Reply.mention_id.in_([h["id"] for h in history]), Reply.status.in_(DONE_REPLY))
                             .order_by(Reply.created_at.desc()).limit(20))]
    if customer is not None:
        record(session, viewer or UNATTRIBUTED, "customer.viewed", "customer", customer.id, reason=why,
               conversation_id=conv_id)
        await session.commit()
    claimer = await session.get(User, conv.claimed_by) if conv.claimed_by else None
    latest = max([e["id"] for e in mentions], default=0)
    return {
        "conversation": conv, "thread": thread, "mentions": mentions, "latest_mention_id": latest,
        "target_id": target["id"] if target else None,
        "target_deleted": bool(target and target["deleted"]),  # the form offers a private message first
        "person": {"handle": person.handle, "platform": person.platform} if person is not None else None,
        "last_reply_id": max([r.id for r in replies], default=0),
        "claimed_by": claimer.username if claimer and claim_is_live(conv) else None,
        "claimed_by_id": conv.claimed_by if claim_is_live(conv) else None,
        "customer": customer, "history": history, "cases": cases, "case_messages": case_messages,
        "other_replies": other_replies, "authors": [a for a in authors_by_mention.values() if a is not None],
        # handled in a private channel: the reply form offers a private message first (a public one
        # would be refused, escalation.public_guard)
        "private_matter": any(c.status != "resolved" for c in cases) or any(
            (tri is not None and tri.sensitivity in PRIVATE_SENSITIVITY)
            or (d is not None and d.outcome == PRIVATE_OUTCOME) for _, tri, d, _ in rows),
    }


async def unknown_replies(session: AsyncSession, limit: int = 20) -> list[tuple[int, int]]:
    """The conversations holding a reply nobody knows was posted (its sender was interrupted mid
    call, service.stranded), oldest first, each with how many: they stay so until a person settles
    them, and the queue, where an answered conversation sinks, names them."""
    return [tuple(r) for r in (await session.execute(
        select(Reply.conversation_id, func.count()).where(Reply.status == "unknown", Reply.conversation_id.is_not(None))
        .group_by(Reply.conversation_id).order_by(func.min(Reply.id)).limit(limit))).all()]


async def newer_human_replies(session: AsyncSession, conv_id: int, since_reply_id: int,
                              me: str) -> list[Reply]:
    """Replies someone else made after the agent last looked: the collision to warn about."""
    return list(await session.scalars(select(Reply).where(
        Reply.conversation_id == conv_id, Reply.id > since_reply_id, HUMAN_REPLY, Reply.sent_by != me,
        Reply.status.in_(DONE_REPLY))))


