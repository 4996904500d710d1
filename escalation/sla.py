"""SLA timers of private cases: a periodic checker records breaches once, logs and audits them.

The first response is the first agent message in the case's chat; the resolution is the case being
resolved. A breach row per (case, kind) makes the checker idempotent, so several processes may
run it. Log lines carry the case id and the kind, never anything about the customer.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from escalation.links import scrub_delivered_links
from models import Case, SlaBreach
from models.base import utcnow
from service.audit import record

log = logging.getLogger("socialcare.escalation.sla")
FIRST_RESPONSE, RESOLUTION = "first_response", "resolution"
RECENT = timedelta(days=1)


def missed(case: Case, now: datetime) -> list[tuple[str, datetime]]:
    """The deadlines ``case`` has missed by ``now``: a first response counts when the first agent
    message came (or the case was resolved without one), a resolution when the case was resolved."""
    out = []
    answered = case.first_response_at or case.resolved_at
    if case.first_response_due is not None and (answered or now) > case.first_response_due:
        out.append((FIRST_RESPONSE, case.first_response_due))
    if case.resolution_due is not None and (case.resolved_at or now) > case.resolution_due:
        out.append((RESOLUTION, case.resolution_due))
    return out


def open_and_late(now: datetime) -> ColumnElement[bool]:
    """The open cases past a deadline by ``now``, in SQL: the open ones :func:`missed` finds late."""
    return and_(Case.status != "resolved", or_(Case.first_response_due < now, Case.resolution_due < now))


async def check_breaches(session: AsyncSession, now: datetime | None = None) -> list[SlaBreach]:
    """Record every deadline missed and not yet recorded; returns the new breaches. Looks at open
    cases past a deadline and at cases resolved in the last day (late resolutions)."""
    now = now or utcnow()
    late = list(await session.scalars(select(Case).where(or_(open_and_late(now),
                                                             Case.resolved_at >= now - RECENT))))
    if not late:
        return []
    known = {(b.case_id, b.kind) for b in await session.scalars(
        select(SlaBreach).where(SlaBreach.case_id.in_([c.id for c in late])))}
    new: list[SlaBreach] = []
    for case in late:
        for kind, due in missed(case, now):
            if (case.id, kind) in known:
                continue
            breach = SlaBreach(case_id=case.id, kind=kind, due_at=due, detected_at=now)
            session.add(breach)
            record(session, "system", "sla.breached", "case", case.id, kind=kind, due_at=due.isoformat())
            log.warning("SLA breach: case %s missed its %s deadline (%s)", case.id, kind, due.isoformat())
            new.append(breach)
    await session.flush()
    return new


async def breaches(session: AsyncSession, *, open_only: bool = True) -> list[tuple[SlaBreach, Case]]:
    """Breaches for the console, newest first (by default those of cases still open)."""
    q = select(SlaBreach, Case).join(Case, Case.id == SlaBreach.case_id).order_by(SlaBreach.detected_at.desc())
    if open_only:
        q = q.where(Case.status != "resolved")
    return [(b, c) for b, c in (await session.execute(q)).all()]


async def late_cases(session: AsyncSession, shown: list[Case],
                     now: datetime | None = None) -> tuple[dict[int, set[str]], int]:
    """The kinds of deadline each case of ``shown`` (already loaded) missed, and how many deadlines
    the open cases missed in all, shown or not. Both count what the checker recorded and what an open
    case missed since its last pass (it runs every ``sla_check_interval_seconds``), so an agent never
    reads "no breach" beside a deadline already gone. One read of the breaches; :func:`missed` is
    applied to the open cases given, and only the other open and late ones are loaded."""
    now = now or utcnow()
    ids = [c.id for c in shown]
    late: dict[int, set[str]] = {}
    open_ids: set[int] = set()
    for case_id, kind, status in await session.execute(
            select(SlaBreach.case_id, SlaBreach.kind, Case.status).join(Case, Case.id == SlaBreach.case_id)
            .where(or_(SlaBreach.case_id.in_(ids), Case.status != "resolved"))):
        late.setdefault(case_id, set()).add(kind)
        if status != "resolved":
            open_ids.add(case_id)
    unshown = await session.scalars(select(Case).where(open_and_late(now), Case.id.not_in(ids)))
    for case in [*(c for c in shown if c.status != "resolved"), *unshown]:
        for kind, _ in missed(case, now):
            late.setdefault(case.id, set()).add(kind)
            open_ids.add(case.id)
    return {i: late[i] for i in ids if i in late}, sum(len(late[i]) for i in open_ids)


async def sweep(db: Any) -> int:
    """One pass: record breaches and scrub delivered secure links. Returns the new breaches."""
    async with db.session() as session:
        try:
            new = await check_breaches(session)
            await scrub_delivered_links(session)
            await session.commit()
        except IntegrityError:  # another process recorded the same breach first
            await session.rollback()
            return 0
    return len(new)


async def run_periodically(db: Any, interval_seconds: float, stop: asyncio.Event) -> None:
    """The checker loop: a failing pass is logged and the next one tried on time."""
    from service.periodic import every

    await every(interval_seconds, lambda: sweep(db), stop, what="SLA check", logger=log)
