"""Opening, joining, assigning and resolving private cases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Author, Case, CaseMessage, Mention
from models.base import utcnow
from models.bulk import IDS
from service.audit import record
from triage import redact

FIRST_RESPONSE_SLA = timedelta(hours=1)
RESOLUTION_SLA = timedelta(hours=24)
OPEN_BY_AUTHOR = (select(Case.author_id, Case.id, Case.category, Case.conversation_id)
                  .where(Case.author_id.in_(IDS), Case.status != "resolved"))
# the same customer's open case opened on another platform (their identities linked)
OPEN_BY_CUSTOMER = (select(Author.id, Case.id, Case.category, Case.conversation_id)
                    .join(Case, Case.customer_id == Author.customer_id)
                    .where(Author.id.in_(IDS), Author.customer_id.is_not(None), Case.status != "resolved"))


@dataclass(frozen=True)
class SlaPolicy:
    """How long a customer may wait for the first human answer, and for the resolution."""

    first_response: timedelta = FIRST_RESPONSE_SLA
    resolution: timedelta = RESOLUTION_SLA

    @classmethod
    def from_settings(cls, settings: Any) -> SlaPolicy:
        return cls(timedelta(minutes=settings.sla_first_response_minutes),
                   timedelta(hours=settings.sla_resolution_hours))


async def open_or_join(session: AsyncSession, mention: Mention, category: str,
                       sla: SlaPolicy | None = None) -> tuple[Case, bool]:
    """The case for this mention and whether it was opened now. Idempotent per mention; a second
    mention of the same author while a case is open joins it instead of opening another, and so does
    one of the same customer on another platform (identities linked to the customer record)."""
    sla = sla or SlaPolicy()
    case = await session.scalar(select(Case).where(Case.opened_by_mention_id == mention.id))
    if case is not None:
        return case, False
    joined = await session.scalar(
        select(CaseMessage).where(CaseMessage.mention_id == mention.id).limit(1)
    )
    if joined is not None:
        return await session.get(Case, joined.case_id), False
    author = await session.get(Author, mention.author_id) if mention.author_id else None
    if mention.author_id is not None:
        case = await session.scalar(
            select(Case).where(Case.author_id == mention.author_id, Case.status != "resolved")
            .order_by(Case.id.desc()).limit(1)
        )
    if case is None and author is not None and author.customer_id is not None:  # the customer, elsewhere
        case = await session.scalar(
            select(Case).where(Case.customer_id == author.customer_id, Case.status != "resolved")
            .order_by(Case.id.desc()).limit(1)
        )
    opened = case is None
    if opened:
        customer_id = author.customer_id if author else None
        case = Case(
            conversation_id=mention.conversation_id, customer_id=customer_id,
            author_id=mention.author_id, opened_by_mention_id=mention.id, category=category,
            identity_pending=customer_id is None,
            first_response_due=mention.created_at + sla.first_response,
            resolution_due=mention.created_at + sla.resolution,
        )
        session.add(case)
        await session.flush()
    # the customer's own words are kept on the case, with personal data redacted
    session.add(CaseMessage(case_id=case.id, sender="customer", mention_id=mention.id, body=redact(mention.text)))
    await session.flush()
    return case, opened


async def open_cases_by_author(session: AsyncSession,
                              author_ids: set[int]) -> dict[int, tuple[int, str, int | None]]:
    """Each author's unresolved case as (case id, category, the conversation it was opened from): their
    own, else their customer's from another platform. Routing sends their further posts there (two
    queries per batch; at most one open case an author)."""
    if not author_ids:
        return {}
    params = {"ids": list(author_ids)}
    found = {author: (case_id, category, conversation) for author, case_id, category, conversation
             in (await session.execute(OPEN_BY_CUSTOMER, params)).all()}
    found.update({author: (case_id, category, conversation) for author, case_id, category, conversation
                  in (await session.execute(OPEN_BY_AUTHOR, params)).all()})
    return found


class CaseTaken(ValueError):
    """The case is assigned to another agent: taking it is an explicit take-over."""

    def __init__(self, holder_id: int) -> None:
        super().__init__("another agent is assigned to this case")
        self.holder_id = holder_id


def assign(session: AsyncSession, case: Case, user_id: int, actor: str, *, take_over: bool = False) -> None:
    """Give the case to ``user_id``. A case another agent holds is not taken silently (their chat
    would stop mid-sentence): :class:`CaseTaken` unless ``take_over``, which is audited with whom
    it was taken from."""
    if case.status == "resolved":
        raise ValueError("the case is resolved")
    if case.assigned_to == user_id:
        return
    if case.assigned_to is not None:
        if not take_over:
            raise CaseTaken(case.assigned_to)
        record(session, actor, "case.taken_over", "case", case.id, user_id=user_id, from_user_id=case.assigned_to)
    case.assigned_to = user_id
    record(session, actor, "case.assigned", "case", case.id, user_id=user_id)


async def resolve(session: AsyncSession, case: Case, actor: str, now: datetime | None = None) -> bool:
    """Close the case and end its customer access. False when it was resolved already."""
    from escalation.links import revoke_case_access

    if case.status == "resolved":
        return False
    now = now or utcnow()
    case.status, case.resolved_at = "resolved", now
    await revoke_case_access(session, case.id, now)
    session.add(CaseMessage(case_id=case.id, sender="system", body="The case was resolved."))
    record(session, actor, "case.resolved", "case", case.id)
    return True
