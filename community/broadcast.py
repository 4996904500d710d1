"""One-to-many replies of an incident: a status message to everyone affected, a "fixed" follow-up.

Everyone affected means every author with a report grouped into the incident; each gets one
reply per message (to their latest mention), and no author gets status replies closer together
than ``incident_status_interval_minutes`` — a burst of updates does not flood anybody. Mentions
that join the incident later get the current status as they arrive (the act stage calls
:func:`reply_to_new_mention`). Every message is an entry of the incident's timeline.

Sending is paced per channel (``incident_broadcast_per_minute``, :mod:`service.dispatch`): replies
beyond the cap wait as ``queued``. A reply still waiting when a newer status is posted is brought
up to date in its place in the queue rather than followed by a second one, and closing with the
"fixed" follow-up supersedes the status replies still waiting — nobody is told "we're on it" after
"it's fixed", and nobody gets two messages where one will do. The fix supersedes ``pending`` ones
too (:data:`WAITING`): not claimed yet, their deliverer has not paced them yet, or died first and
left them to the pacer's safety net (:func:`service.stranded.queue_orphans`). A status reply
committed after the fix — the act stage read the incident open just before it closed — is
superseded on its way out instead (:data:`FIXED_SINCE`): as the queue is released
(:meth:`service.dispatch.Dispatcher.release_queued`, which every paced reply passes) and again just
before its send is claimed. Only one claimed before the fix was committed still goes out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, cast, exists, func, literal, select
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession

from community.incidents import REPORT_COLUMNS, SpikePolicy
from community.templates import TemplateRenderError, choose_tone, render
from escalation.public_guard import NEVER_PUBLIC
from models import Author, Incident, IncidentMention, IncidentUpdate, Mention, Reply, Template, TriageResult
from models.base import utcnow
from models.bulk import IDS
from service.audit import record
from triage.pii import detect_pii

FALLBACK = {
    "outage_status": "Hi {{ author_name }}, we know — {{ status_message }}",
    "outage_fixed": "Good news {{ author_name }}: it's fixed! Thanks for your patience.",
}
MAX_MESSAGE = 1_000
_NEWEST = (select(IncidentUpdate.incident_id, func.max(IncidentUpdate.id).label("uid"))
           .where(IncidentUpdate.incident_id.in_(IDS), IncidentUpdate.kind == "status")
           .group_by(IncidentUpdate.incident_id).subquery())
LATEST_STATUS = select(IncidentUpdate).join(_NEWEST, _NEWEST.c.uid == IncidentUpdate.id)  # built once (models.bulk)
WAITING = ("pending", "queued")  # a status reply not claimed yet: the "fixed" follow-up supersedes it
_U = IncidentUpdate.__table__.c
FIXED_FIRST = "the incident was fixed before it was sent"  # the error of a status reply the fix superseded
# a status reply (its key names its incident) whose incident closed since with the "fixed" follow-up
FIXED_SINCE = exists().where(_U.kind == "fixed", Reply.__table__.c.dedup_key.like(
    literal("incident:") + cast(_U.incident_id, String) + literal(":update:%")))


class IncidentError(ValueError):
    pass


async def affected(session: AsyncSession, incident_id: int,
                   policy: SpikePolicy) -> list[tuple[Mention, Author | None]]:
    """Each affected author's latest report in the incident (mentions without an author each
    count alone). Only reports of the incident's type on its channel count (the detector's rule,
    ``policy.is_report``), whatever joined before that rule: a thank-you or a post on another
    platform is never told "we're on it". Hidden or deleted posts get no public reply."""
    rows = (await session.execute(
        select(Mention, Author, *REPORT_COLUMNS).join(IncidentMention, IncidentMention.mention_id == Mention.id)
        .join(Incident, Incident.id == IncidentMention.incident_id)
        .join(TriageResult, TriageResult.mention_id == Mention.id)
        .outerjoin(Author, Author.id == Mention.author_id)
        .where(IncidentMention.incident_id == incident_id, Mention.hidden.is_(False), Mention.deleted.is_(False),
               Mention.platform == Incident.channel, TriageResult.issue_type == Incident.issue_type)
        .order_by(Mention.created_at))).all()
    latest: dict[Any, tuple[Mention, Author | None]] = {}
    for mention, author, *report in rows:
        if policy.is_report(*report):
            latest[mention.author_id if mention.author_id is not None else f"m{mention.id}"] = (mention, author)
    return list(latest.values())


async def _body(session: AsyncSession, name: str, tone: str | None) -> str:
    variants = await session.scalar(select(Template.variants).where(Template.name == name))  # the bodies alone
    return choose_tone(variants, tone) if variants else FALLBACK[name]


def _text(body: str, mention: Mention, author: Author | None, **extra: Any) -> str:
    ctx = {"author_name": (author.display_name or author.handle) if author else "there", **extra}
    try:
        return render(body, ctx, platform=mention.platform)
    except TemplateRenderError:
        return render(FALLBACK["outage_status"] if "status_message" in extra else FALLBACK["outage_fixed"],
                      ctx, platform=mention.platform)


async def _recently_told(session: AsyncSession, incident_id: int, since: datetime) -> set[int]:
    return set(await session.scalars(
        select(Mention.author_id).join(Reply, Reply.mention_id == Mention.id)
        .where(Reply.dedup_key.startswith(f"incident:{incident_id}:"), Reply.kind == "status",
               Reply.created_at > since, Reply.status.notin_(("deleted", "superseded")),
               Mention.author_id.is_not(None))))


async def _waiting(session: AsyncSession, incident_id: int) -> dict[str, Reply]:
    """Status replies of the incident still queued for their channel's slot, by author key."""
    rows = await session.scalars(select(Reply).where(
        Reply.dedup_key.startswith(f"incident:{incident_id}:update:"), Reply.status == "queued"))
    return {r.dedup_key.rsplit(":author:", 1)[1]: r for r in rows}


def _reply(key: str, mention: Mention, text: str, kind: str, template: str, actor: str, status: str) -> Reply:
    return Reply(dedup_key=key, mention_id=mention.id, conversation_id=mention.conversation_id,
                 platform=mention.platform, visibility="public", kind=kind, text=text, template=template,
                 status=status, sent_by=actor)


async def _existing_keys(session: AsyncSession, prefix: str) -> set[str]:
    return set(await session.scalars(select(Reply.dedup_key).where(Reply.dedup_key.startswith(prefix))))


async def post_status(session: AsyncSession, incident: Incident, message: str, actor: str, *, policy: SpikePolicy,
                      interval_minutes: float = 30.0, dry_run_channels: set[str] | frozenset[str] = frozenset(),
                      tone: str | None = None, now: datetime | None = None) -> tuple[IncidentUpdate, list[Reply]]:
    """Attach a status message and queue it for every affected author (see module doc)."""
    message = " ".join((message or "").split())
    if not message:
        raise IncidentError("a status message cannot be empty")
    if len(message) > MAX_MESSAGE:
        raise IncidentError(f"a status message is at most {MAX_MESSAGE} characters")
    secret = sorted({NEVER_PUBLIC[s.type] for s in detect_pii(message) if s.type in NEVER_PUBLIC})
    if secret:  # it goes out in public to every affected author, like any public reply
        raise IncidentError(f"a status message may not contain personal data ({', '.join(secret)})")
    if incident.status != "open":
        raise IncidentError("the incident is closed")
    now = now or utcnow()
    incident.status_message = message
    update = IncidentUpdate(incident_id=incident.id, kind="status", message=message, actor=actor, created_at=now)
    session.add(update)
    await session.flush()
    told = await _recently_told(session, incident.id, now - timedelta(minutes=interval_minutes))
    waiting = await _waiting(session, incident.id)
    body = await _body(session, "outage_status", tone)
    replies, skipped, refreshed = [], 0, 0
    for mention, author in await affected(session, incident.id, policy):
        who = str(mention.author_id or "m" + str(mention.id))
        if who in waiting:  # not sent yet: it carries this newer status instead, unless just claimed
            done = await session.execute(sql_update(Reply).where(Reply.id == waiting[who].id, Reply.status == "queued")
                                         .values(text=_text(body, mention, author, status_message=message))
                                         .execution_options(synchronize_session=False))
            if done.rowcount == 1:
                refreshed += 1
                continue
        if mention.author_id in told:
            skipped += 1
            continue
        key = f"incident:{incident.id}:update:{update.id}:author:{who}"
        status = "dry_run" if mention.platform in dry_run_channels else "pending"
        replies.append(_reply(key, mention, _text(body, mention, author, status_message=message), "status",
                              "outage_status", actor, status))
    session.add_all(replies)
    update.recipients = len(replies) + refreshed
    update.details = {"skipped_recently_told": skipped, "refreshed_waiting": refreshed}
    record(session, actor, "incident.status", "incident", incident.id, recipients=len(replies) + refreshed,
           skipped=skipped)
    await session.flush()
    return update, replies


async def close(session: AsyncSession, incident: Incident, actor: str, *, policy: SpikePolicy,
                send_fixed: bool = True, note: str | None = None,
                dry_run_channels: set[str] | frozenset[str] = frozenset(), tone: str | None = None,
                now: datetime | None = None) -> tuple[IncidentUpdate, list[Reply]]:
    """Close the incident; with ``send_fixed`` every affected author gets one "fixed" follow-up."""
    if incident.status != "open":
        raise IncidentError("the incident is already closed")
    now = now or utcnow()
    incident.status, incident.closed_at = "closed", now
    update = IncidentUpdate(incident_id=incident.id, kind="fixed" if send_fixed else "closed",
                            message=(note or "").strip()[:MAX_MESSAGE] or None, actor=actor, created_at=now)
    session.add(update)
    await session.flush()
    replies: list[Reply] = []
    if send_fixed:
        await session.execute(sql_update(Reply).where(  # waiting "we're on it" replies: the fix says more
            Reply.dedup_key.startswith(f"incident:{incident.id}:update:"), Reply.status.in_(WAITING))
            .values(status="superseded", error=FIXED_FIRST)
            .execution_options(synchronize_session=False))
        body = await _body(session, "outage_fixed", tone)
        have = await _existing_keys(session, f"incident:{incident.id}:fixed:")
        for mention, author in await affected(session, incident.id, policy):
            key = f"incident:{incident.id}:fixed:author:{mention.author_id or 'm' + str(mention.id)}"
            if key in have:
                continue
            status = "dry_run" if mention.platform in dry_run_channels else "pending"
            replies.append(_reply(key, mention, _text(body, mention, author), "status_fixed", "outage_fixed",
                                  actor, status))
        session.add_all(replies)
    update.recipients = len(replies)
    record(session, actor, "incident.closed", "incident", incident.id, fixed_follow_up=send_fixed,
           recipients=len(replies))
    await session.flush()
    return update, replies


async def latest_status(session: AsyncSession, incident_ids: set[int]) -> dict[int, IncidentUpdate]:
    """The newest status update of each incident (one query)."""
    if not incident_ids:
        return {}
    return {u.incident_id: u for u in await session.scalars(LATEST_STATUS, {"ids": list(incident_ids)})}


async def reply_to_new_mention(session: AsyncSession, incident: Incident, update: IncidentUpdate | None,
                               mention: Mention, author: Author | None, *, interval_minutes: float,
                               dry_run: bool, tone: str | None = None) -> Reply | None:
    """A mention that joined an open incident gets its current status, once per author per
    message and never sooner than the interval after the author's last status reply."""
    if update is None or incident.status != "open" or mention.hidden or not mention.is_public:
        return None
    who = mention.author_id or f"m{mention.id}"
    key = f"incident:{incident.id}:update:{update.id}:author:{who}"
    if await session.scalar(select(Reply.id).where(Reply.dedup_key == key)):
        return None
    if mention.author_id is not None and mention.author_id in await _recently_told(
            session, incident.id, utcnow() - timedelta(minutes=interval_minutes)):
        return None
    body = await _body(session, "outage_status", tone)
    reply = _reply(key, mention, _text(body, mention, author, status_message=update.message), "status",
                   "outage_status", "bot", "dry_run" if dry_run else "pending")
    session.add(reply)
    update.recipients = (update.recipients or 0) + 1
    return reply


async def timeline(session: AsyncSession, incident_id: int) -> list[dict[str, Any]]:
    """The incident's story, oldest first: detector, status messages, closing, and when mentions
    joined (counted per hour, so a thousand reports stay readable). Its opening stands at the
    incident's ``opened_at``, on the posts' clock like the mentions around it; when the detector
    saw the spike much later (a backlog, a replay) the message says when."""
    opened_at = await session.scalar(select(Incident.opened_at).where(Incident.id == incident_id))
    events: list[dict[str, Any]] = []
    for u in await session.scalars(select(IncidentUpdate).where(IncidentUpdate.incident_id == incident_id)):
        at, message = u.created_at, u.message
        if u.kind == "opened" and opened_at is not None and abs(at - opened_at) > timedelta(minutes=5):
            at, message = opened_at, f"{message} (detected {u.created_at:%Y-%m-%d %H:%M} UTC)"
        events.append({"at": at, "kind": u.kind, "message": message, "actor": u.actor, "recipients": u.recipients,
                       "details": u.details or {}})
    joined = (await session.execute(
        select(Mention.created_at).join(IncidentMention, IncidentMention.mention_id == Mention.id)
        .where(IncidentMention.incident_id == incident_id))).scalars().all()
    per_hour: dict[datetime, int] = {}
    for at in joined:
        hour = at.replace(minute=0, second=0, microsecond=0)
        per_hour[hour] = per_hour.get(hour, 0) + 1
    for hour, n in per_hour.items():
        events.append({"at": hour, "kind": "mentions", "message": f"{n} mention(s) grouped from this hour",
                       "actor": "detector", "recipients": 0, "details": {"count": n}})
    events.sort(key=lambda e: (e["at"], e["kind"] != "opened"))
    return events
