"""One-time codes: issue, check, limit. The same for every verifier (:mod:`escalation.verifiers`).

Codes are six digits from :mod:`secrets`, stored only as argon2 hashes, valid for minutes. Every
check first *reserves* an attempt with one conditional UPDATE, so parallel guesses cannot exceed
the limit; the limit reached locks the session for a while, and repeated lock-outs end it (the
customer then needs a new link from an agent). When the visitor's identity is pending and they
give an e-mail address, the code goes to the record with that address — never to the address as
typed — and what the visitor sees is the same whether or not a record matched.

What a verified code proves depends on the case. With the identity known, the code went to the
record the account was already linked to, and the link is confirmed. With it pending, the visitor
holds the link sent to the account and reads the e-mail of *some* record: that is who they are
for this chat, not proof that the account is that customer's. The link holder may be whoever took
the account over (the very subject of a security case), or someone the link leaked to, verifying
as a record of their own; linking the account then would attach its later posts, cases and
public-reply checks to a stranger's record, for good. So a pending case is not linked by the
code: the session records the customer who verified (:func:`verified_as`, shown to the agent on
the case with that record), and an agent who has talked to them links the account to it
(:func:`confirm_identity`, audited).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from escalation.customers import link_identity
from escalation.verifiers import Verifier
from models import Author, Case, CaseMessage, Conversation, Customer, CustomerSession
from models.base import utcnow
from service.audit import record

CODE_DIGITS = 6
# a short-lived six-digit code is protected by the attempt limit, not by the hash's cost: OWASP's
# minimum argon2id profile (19 MiB, 2 passes) keeps a leaked hash useless for the code's lifetime
# without letting a burst of requests exhaust memory; hashing runs in a thread, off the event loop
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

# what check_code answers
VERIFIED, WRONG, LOCKED, ENDED, EXPIRED, NO_CODE = "verified", "wrong", "locked", "ended", "expired", "no_code"
# what request_code answers
SENT, THROTTLED, UNAVAILABLE = "sent", "throttled", "unavailable"


def new_code() -> str:
    return f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"


def _code_ok_sync(stored: str, given: str) -> bool:
    try:
        return _HASHER.verify(stored, given)
    except (VerificationError, InvalidHashError):
        return False


async def _code_ok(stored: str, given: str) -> bool:
    return await asyncio.to_thread(_code_ok_sync, stored, given)


async def _hash(code: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, code)


@dataclass
class CodeRequest:
    outcome: str  # sent | throttled | unavailable | locked | verified | ended
    hint: str | None = None  # the masked destination, for a case whose customer is known
    send: Callable[[], Awaitable[None]] | None = None  # the delivery, to run after the commit


def _locked(cs: CustomerSession, now: datetime) -> bool:
    return cs.locked_until is not None and cs.locked_until > now


async def _customer_by_email(session: AsyncSession, email: str) -> Customer | None:
    """The one customer whose record has this address (None when none, or ambiguous)."""
    address = email.strip().lower()
    if not address or "@" not in address or len(address) > 320:
        return None
    rows = list(await session.scalars(select(Customer).where(func.lower(Customer.email) == address).limit(2)))
    return rows[0] if len(rows) == 1 else None


async def request_code(session: AsyncSession, cs: CustomerSession, case: Case, verifier: Verifier, settings: Any,
                       *, email: str | None = None, now: datetime | None = None) -> CodeRequest:
    """Issue a fresh code for the session (replacing any earlier one) and say how it will travel."""
    now = now or utcnow()
    if cs.verified_at is not None:
        return CodeRequest(VERIFIED)
    if cs.revoked_at is not None:
        return CodeRequest(ENDED)
    if _locked(cs, now):
        return CodeRequest(LOCKED)
    if cs.codes_sent >= settings.verify_max_code_sends:
        return CodeRequest(THROTTLED)
    known = case.customer_id is not None
    if known:
        customer = await session.get(Customer, case.customer_id)
    else:
        customer = await _customer_by_email(session, email or "")
    code = new_code()
    # hashed even when nobody will receive it: the same work, whether or not a record matched
    cs.code_hash = await _hash(code)
    cs.customer_id = customer.id if customer is not None else None
    cs.code_expires_at = now + timedelta(minutes=settings.verify_code_ttl_minutes)
    cs.codes_sent += 1
    cs.last_code_at = now
    deliverable = customer is not None and verifier.can_verify(customer)
    record(session, "customer", "verification.code_requested", "case", case.id, channel=verifier.channel,
           identity="known" if known else "pending", matched=deliverable)
    if known and not deliverable:
        cs.code_hash = None
        return CodeRequest(UNAVAILABLE)
    hint = verifier.hint(customer) if known and customer is not None else None
    send = None
    if deliverable:
        ttl = settings.verify_code_ttl_minutes

        async def send() -> None:
            await verifier.deliver(customer, code, ttl)

    return CodeRequest(SENT, hint=hint, send=send)


async def check_code(session: AsyncSession, cs: CustomerSession, case: Case, code: str, settings: Any,
                     now: datetime | None = None) -> str:
    """Check a code: verified | wrong | locked | ended | expired | no_code. A wrong code counts."""
    now = now or utcnow()
    if cs.verified_at is not None:
        return VERIFIED
    if cs.revoked_at is not None:
        return ENDED
    if _locked(cs, now):
        return LOCKED
    if cs.code_hash is None:
        return NO_CODE
    # reserve the attempt first: a parallel guess sees the raised count, or waits for it
    reserved = await session.execute(
        update(CustomerSession)
        .where(CustomerSession.id == cs.id, CustomerSession.revoked_at.is_(None),
               CustomerSession.failed_attempts < settings.verify_max_attempts,
               or_(CustomerSession.locked_until.is_(None), CustomerSession.locked_until <= now))
        .values(failed_attempts=CustomerSession.failed_attempts + 1)
        .returning(CustomerSession.failed_attempts)
        .execution_options(synchronize_session=False)
    )
    attempts = reserved.scalar()
    if attempts is None:
        return LOCKED
    await session.refresh(cs)
    given = "".join(ch for ch in code if ch.isdigit())[:CODE_DIGITS + 2]
    expired = cs.code_expires_at is None or cs.code_expires_at <= now
    # always the same work: a session whose e-mail matched no record holds a hash nobody can match
    matches = await _code_ok(cs.code_hash, given) if cs.code_hash else False
    if matches and not expired and cs.customer_id is not None:
        cs.failed_attempts, cs.code_hash, cs.verified_at = 0, None, now
        await _verified(session, cs, case, now)
        return VERIFIED
    record(session, "customer", "verification.failed", "case", case.id, attempts=attempts)
    if attempts >= settings.verify_max_attempts:
        cs.failed_attempts, cs.code_hash = 0, None  # the code is burnt; a new one is needed after the wait
        cs.lockouts += 1
        if cs.lockouts >= settings.verify_max_lockouts:
            cs.revoked_at = now
            record(session, "customer", "verification.session_ended", "case", case.id, lockouts=cs.lockouts)
            return ENDED
        cs.locked_until = now + timedelta(minutes=settings.verify_lockout_minutes)
        record(session, "customer", "verification.locked", "case", case.id, lockouts=cs.lockouts)
        return LOCKED
    return EXPIRED if expired else WRONG


async def _verified(session: AsyncSession, cs: CustomerSession, case: Case, now: datetime) -> None:
    """The session is verified; a known identity is confirmed, a pending one waits for an agent."""
    customer_id = cs.customer_id
    assert customer_id is not None
    if case.status == "open":
        case.status = "verified"
    known = case.customer_id == customer_id  # the code went to the record the account is linked to
    if known:
        await _link(session, case, customer_id, now)
        body = "The customer verified their identity."
    else:
        body = "The customer verified with a code sent to a customer record; an agent confirms the link."
    session.add(CaseMessage(case_id=case.id, sender="system", body=body))
    record(session, "customer", "verification.succeeded", "case", case.id, customer_id=customer_id,
           identity="known" if known else "pending")


async def _link(session: AsyncSession, case: Case, customer_id: int, verified_at: datetime) -> None:
    """Bind the case, its author's account and its conversation to the customer."""
    case.customer_id, case.identity_pending = customer_id, False
    author = await session.get(Author, case.author_id) if case.author_id else None
    if author is not None and (author.handle or author.platform_user_id):
        identity = await link_identity(session, customer_id, author.platform, author.handle,
                                       author.platform_user_id, source="verification")
        identity.verified_at = verified_at
        author.customer_id = customer_id
    if case.conversation_id:
        conv = await session.get(Conversation, case.conversation_id)
        if conv is not None and conv.customer_id is None:
            conv.customer_id = customer_id


async def verified_as(session: AsyncSession, case: Case) -> list[tuple[Customer, datetime]]:
    """The customers whom the case's sessions verified as, with when (latest first, each once): on
    a pending case, whom the agent is talking to, and whom they may link the account to."""
    rows = await session.execute(
        select(Customer, CustomerSession.verified_at).join(CustomerSession, CustomerSession.customer_id == Customer.id)
        .where(CustomerSession.case_id == case.id, CustomerSession.verified_at.is_not(None))
        .order_by(CustomerSession.verified_at.desc(), CustomerSession.id.desc()))
    seen: dict[int, tuple[Customer, datetime]] = {}
    for customer, at in rows.all():
        seen.setdefault(customer.id, (customer, at))
    return list(seen.values())


async def confirm_identity(session: AsyncSession, case: Case, customer_id: int, actor: str) -> bool:
    """An agent's confirmation that the pending case's account is the customer a session verified as:
    link it for next time. False (nothing changed) unless the case is pending and a session of it
    verified as that customer. The case is claimed with one conditional UPDATE before anything is
    linked: of two agents confirming at once (the same record or two), the second changes nothing."""
    if case.customer_id is not None:
        return False
    match = {c.id: at for c, at in await verified_as(session, case)}
    if customer_id not in match:
        return False
    claimed = await session.execute(
        update(Case).where(Case.id == case.id, Case.customer_id.is_(None))
        .values(customer_id=customer_id, identity_pending=False).execution_options(synchronize_session=False))
    if claimed.rowcount != 1:
        return False
    await _link(session, case, customer_id, match[customer_id])
    record(session, actor, "case.identity_confirmed", "case", case.id, customer_id=customer_id)
    return True
