"""Service measures for a time window, as a service manager reads them.

Definitions (a *contact* is a customer mention in the window that the router gave a care outcome:
auto answer, community answer, broadcast, agent queue or private escalation — not spam, abuse or
"nothing to answer"):

- **deflected**: contacts answered by the bot, the community or an incident broadcast whose
  thread got no agent reply and no case — handled without an agent.
- **escalated**: contacts taken to a private case (by the router or an agent's "take private").
- **cases created / solved**: private cases opened / resolved in the window.

One clock per kind of event: what a customer started is counted by when they wrote — contacts,
escalations and cases created (a case by the post that opened it; one opened without a post, by
its creation time) — so a replayed or backlogged day has its escalations and its cases on the same
day (a follow-up that joins an open case is escalated but opens no case). What the team did is
counted when they did it: cases solved (``resolved_at``) and first answers.
- **first response**: per thread that needed a human (agent queue, escalation, or an agent
  replied), the time from its first such contact in the window to the first human answer (an
  agent's reply on any channel of the thread, or the case's first response). Median and p90.
- **service level**: share of those threads answered within the target; threads still inside
  their target time and unanswered are not counted yet.
- **first-contact resolution**: share of answered threads where the customer did not write
  again (on any channel, any thread) after the first human answer.
- **repeat contacts**: contacts whose author (or the customer behind them, across channels) had
  another contact in the seven days before.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from console.digest import utc_day
from console.queue_data import DONE_REPLY, FIRST_RESPONSE_TARGET
from models import Author, Case, Mention, Reply, RouteDecision
from models.base import utcnow

CARE_OUTCOMES = ("auto_answer", "community_answer", "broadcast", "agent_queue", "escalate_private")
BOT_OUTCOMES = ("auto_answer", "community_answer", "broadcast")
HUMAN_OUTCOMES = ("agent_queue", "escalate_private")
REPEAT_WINDOW = timedelta(days=7)


async def latest_contact_before(session: AsyncSession, start: datetime) -> date | None:
    """The day (UTC) the last contact before ``start`` was written: an empty window (a quiet weekend,
    a data set of past days such as the demo's) can point at where the contacts are."""
    at = await session.scalar(
        select(func.max(Mention.created_at)).join(RouteDecision, RouteDecision.mention_id == Mention.id)
        .where(Mention.created_at < start, RouteDecision.outcome.in_(CARE_OUTCOMES)))
    return utc_day(at) if at is not None else None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Summary:
    start: str
    end: str
    target_seconds: int
    contacts: int
    deflected: int
    deflection_rate: float | None
    escalated: int
    cases_created: int
    cases_solved: int
    threads_needing_agent: int
    answered: int
    answered_within_target: int
    service_level: float | None
    first_response_median_s: float | None
    first_response_p90_s: float | None
    first_contact_resolution: float | None
    repeat_contacts: int
    repeat_contact_rate: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


async def summary(session: AsyncSession, start: datetime, end: datetime, *,
                  target: timedelta = FIRST_RESPONSE_TARGET, now: datetime | None = None) -> Summary:
    now = now or utcnow()
    contacts = (await session.execute(
        select(Mention.id, Mention.created_at, Mention.author_id, Mention.conversation_id, RouteDecision.outcome,
               Author.customer_id)
        .join(RouteDecision, RouteDecision.mention_id == Mention.id)
        .outerjoin(Author, Author.id == Mention.author_id)
        .where(Mention.created_at >= start, Mention.created_at < end, RouteDecision.outcome.in_(CARE_OUTCOMES))
        .order_by(Mention.created_at))).all()
    conv_ids = {c.conversation_id for c in contacts if c.conversation_id}
    human_replies: dict[int, list[datetime]] = {}
    if conv_ids:
        for cid, at in (await session.execute(select(Reply.conversation_id, Reply.created_at).where(
                Reply.conversation_id.in_(conv_ids), Reply.sent_by != "bot", Reply.kind.in_(("agent", "bot_api")),
                Reply.status.in_(DONE_REPLY)))).all():
            human_replies.setdefault(cid, []).append(at)
    case_rows = list(await session.scalars(select(Case).where(Case.conversation_id.in_(conv_ids)))) if conv_ids else []
    cases_by_conv: dict[int, list[Case]] = {}
    for c in case_rows:
        cases_by_conv.setdefault(c.conversation_id, []).append(c)
    opened_by = {c.opened_by_mention_id for c in case_rows}

    deflected = escalated = 0
    first_need: dict[int, datetime] = {}
    for c in contacts:
        conv = c.conversation_id
        has_human = bool(human_replies.get(conv)) or bool(cases_by_conv.get(conv))
        if c.outcome in BOT_OUTCOMES and not has_human:
            deflected += 1
        if c.outcome == "escalate_private" or c.id in opened_by:
            escalated += 1
        if conv and (c.outcome in HUMAN_OUTCOMES or has_human) and conv not in first_need:
            first_need[conv] = c.created_at

    waits, within, answered_convs = [], 0, {}
    for conv, t0 in first_need.items():
        times = [t for t in human_replies.get(conv, []) if t >= t0]
        times += [c.first_response_at for c in cases_by_conv.get(conv, []) if c.first_response_at and c.first_response_at >= t0]
        if times:
            wait = (min(times) - t0).total_seconds()
            waits.append(wait)
            within += wait <= target.total_seconds()
            answered_convs[conv] = min(times)
    due_unanswered = sum(1 for conv, t0 in first_need.items() if conv not in answered_convs and t0 + target <= now)

    # repeat contacts and first-contact resolution look at the customer on every channel
    author_ids = {c.author_id for c in contacts if c.author_id}
    customer_of = {c.author_id: c.customer_id for c in contacts if c.author_id}
    customer_ids = {v for v in customer_of.values() if v}
    if customer_ids:
        for aid, cust in (await session.execute(select(Author.id, Author.customer_id).where(
                Author.customer_id.in_(customer_ids)))).all():
            author_ids.add(aid)
            customer_of[aid] = cust
    person = {aid: (f"c{customer_of[aid]}" if customer_of.get(aid) else f"a{aid}") for aid in author_ids}
    history: dict[str, list[datetime]] = {}
    if author_ids:
        for aid, at in (await session.execute(
            select(Mention.author_id, Mention.created_at).join(RouteDecision, RouteDecision.mention_id == Mention.id)
            .where(Mention.author_id.in_(author_ids), Mention.created_at >= start - REPEAT_WINDOW,
                   RouteDecision.outcome.in_(CARE_OUTCOMES)))).all():
            history.setdefault(person[aid], []).append(at)
    repeat = 0
    for c in contacts:
        if c.author_id is None:
            continue
        earlier = [t for t in history.get(person[c.author_id], []) if c.created_at - REPEAT_WINDOW <= t < c.created_at]
        repeat += bool(earlier)
    conv_person = {c.conversation_id: person.get(c.author_id) for c in contacts if c.author_id}
    resolved_first = sum(
        1 for conv, first in answered_convs.items()
        if not any(t > first for t in history.get(conv_person.get(conv) or "", [])))

    opened_at = func.coalesce(Mention.created_at, Case.created_at)  # the customer's clock, as for contacts
    cases_created = await session.scalar(select(func.count(Case.id)).select_from(Case).outerjoin(
        Mention, Mention.id == Case.opened_by_mention_id).where(opened_at >= start, opened_at < end)) or 0
    cases_solved = len(list(await session.scalars(select(Case.id).where(
        Case.resolved_at.is_not(None), Case.resolved_at >= start, Case.resolved_at < end))))
    med = percentile(waits, 50)
    p90 = percentile(waits, 90)
    return Summary(
        start=start.isoformat(), end=end.isoformat(), target_seconds=int(target.total_seconds()),
        contacts=len(contacts), deflected=deflected, deflection_rate=_rate(deflected, len(contacts)),
        escalated=escalated, cases_created=cases_created, cases_solved=cases_solved,
        threads_needing_agent=len(first_need), answered=len(answered_convs), answered_within_target=within,
        service_level=_rate(within, len(answered_convs) + due_unanswered),
        first_response_median_s=round(med, 1) if med is not None else None,
        first_response_p90_s=round(p90, 1) if p90 is not None else None,
        first_contact_resolution=_rate(resolved_first, len(answered_convs)),
        repeat_contacts=repeat, repeat_contact_rate=_rate(repeat, len(contacts)),
    )
