"""The polling cursor of ``GET /api/v1/mentions?since_id=``: how far a page may go.

A page holds the routed mentions above ``since_id`` in id order, and ``next_since_id`` moves past
every id it covers. Ids are given at ingest, routing comes later and not in id order, and on
PostgreSQL an id is visible only once its transaction commits: a cursor that moved past an id
whose mention is not routed yet, or not committed yet, would never see it. So a page stops below
(:func:`window`):

* the lowest mention not routed yet (a triage backlog, a message retried), unless it is deleted on
  its platform or erased (the pipeline routes neither; a deleted post restored later is routed
  then), or known to sit in the dead letters (:func:`service.dead_mentions.dead_lettered`: it is
  routed only if someone retries it, so it is passed at once). The explicit bound: a mention still
  not routed :data:`ROUTING_HOLD` after its ingest (its message lost with an in-process bus, or buried
  by the bus itself) stops holding every bot's feed back;
* the lowest id missing that may still commit (PostgreSQL, :mod:`console.id_gaps`: until its
  transaction is known to be over, at most :data:`console.id_gaps.GAP_TTL`).

Nothing is passed over silently: the ids a page moves past while they are not routed (deleted,
dead-lettered, or past the hold; not an erased post, which never shows again) are listed in it (``passed_unrouted``,
at most :data:`MAX_PASSED` a page: the page stops before the next), for a bot to read later by id
(``GET /api/v1/mentions/{id}``) if it wants the ones routed after all. A mention is never in two
pages, and a page's cursor never goes back (a request repeated repeats its page).

Filters narrow what holds a page back: a mention of another platform than the one asked for never
shows in these pages, nor does a post for the care team only (:func:`console.queries.care_team_only`:
a private message, a post triage scored security or fraud) to a reader outside it: they are neither
held for nor listed, not even by id. The outcome is not known before routing, so it narrows nothing
(one routed to a private case later is then left out of the reader's pages, as usual).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from console import id_gaps
from models import Mention, RouteDecision, TriageResult
from models.base import utcnow
from models.mentions import ERASED_TEXT
from service.dead_mentions import dead_lettered

ROUTING_HOLD = timedelta(hours=1)  # a mention not routed this long after ingest no longer holds a page
MAX_PASSED = 100  # unrouted ids a page moves past at most (it stops before the next one)


@dataclass(frozen=True)
class Window:
    """What a page read with ``since_id`` covers: ids above it and below ``bound``; ``passed``: the
    ids among them not routed, that the cursor moves past (ascending)."""

    since_id: int
    bound: int
    passed: list[int] = field(default_factory=list)

    def cursor(self, ids: list[int], limit: int) -> tuple[int, list[int]]:
        """``next_since_id`` and ``passed_unrouted`` for a page of ``ids`` (read below ``bound``, at
        most ``limit``): the whole window when the page is not full, else up to its last id."""
        if len(ids) < limit:
            return self.bound - 1, self.passed
        return ids[-1], [i for i in self.passed if i < ids[-1]]


class Polled(list):  # type: ignore[type-arg]
    """A page read with ``since_id`` (the mentions, as a list) and the cursor after it."""

    def __init__(self, rows: list[dict[str, Any]], next_since_id: int, passed_unrouted: list[int]) -> None:
        super().__init__(rows)
        self.next_since_id = next_since_id
        self.passed_unrouted = passed_unrouted


def _unrouted(column: Any) -> Select[Any]:
    """``column`` over the mentions not routed, with their triage if any, outer joined as
    :func:`console.queries.care_team_only_clause` expects (one row a mention: both are unique)."""
    return (select(column).select_from(Mention)
            .outerjoin(TriageResult, TriageResult.mention_id == Mention.id)
            .outerjoin(RouteDecision, RouteDecision.mention_id == Mention.id)
            .where(RouteDecision.id.is_(None)))


async def window(session: AsyncSession, page: Select[Any], since_id: int, limit: int, *,
                 platform: str | None = None, private: bool = True, now: datetime | None = None) -> Window:
    """How far the page ``page`` (routed mentions above ``since_id`` with the reader's filters, in
    id order; Mention joined with RouteDecision) may go. Its statements run in this order, each
    seeing what committed before it (PostgreSQL's read committed, SQLite's one writer): the page's
    ids (and whether their routing is :func:`console.id_gaps.quiet`), the ids missing, the mentions
    not routed, then the caller's page itself: what one step missed because it committed after,
    a later one sees."""
    now = now or utcnow()
    pg = id_gaps.may_still_commit(session)
    quiet = id_gaps.quiet(RouteDecision.__tablename__, Mention.__tablename__) if pg else false()
    ids = (await session.execute(page.with_only_columns(Mention.id, quiet).limit(limit))).all()
    if not ids:
        return Window(since_id, since_id + 1)
    top = ids[-1][0]
    bound = top + 1
    if pg:
        settled_below = max((i for i, q in ids if q), default=since_id)
        gap = await id_gaps.first_open_gap(session, Mention, Mention.ingested_at, since_id, top,
                                           settled_below=settled_below, now=now)
        bound = min(bound, gap) if gap is not None else bound
    seen = [Mention.id > since_id, Mention.id < bound]
    if platform:
        seen.append(Mention.platform == platform)
    if not private:  # what the page itself leaves out for the reader (the decision is none: not routed)
        from console.queries import care_team_only_clause  # console.queries imports this module

        seen.append(~care_team_only_clause())
    # the dead-letter record is read in the same two statements: no query more per poll
    dead = dead_lettered(Mention.id)
    pending = (Mention.deleted.is_(False), Mention.ingested_at > now - ROUTING_HOLD, ~dead)
    held = await session.scalar(_unrouted(func.min(Mention.id)).where(*seen, *pending))
    bound = min(bound, held) if held is not None else bound
    passed = list(await session.scalars(
        _unrouted(Mention.id).where(*seen, Mention.id < bound, or_(Mention.deleted.is_(True),
                                                                   Mention.ingested_at <= now - ROUTING_HOLD, dead),
                                    or_(Mention.deleted.is_(False), Mention.text != ERASED_TEXT))
        .order_by(Mention.id).limit(MAX_PASSED + 1)))
    if len(passed) > MAX_PASSED:  # the next page goes on from there
        bound, passed = passed[MAX_PASSED], passed[:MAX_PASSED]
    return Window(since_id, bound, passed)
