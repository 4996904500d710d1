"""One person's erasure on request (GDPR art. 17, CCPA deletion): who they are on record
(:mod:`service.privacy_subject`), and everything about them erased in one transaction with
:mod:`service.privacy`'s building blocks, with their dead letters on the bus
(:mod:`service.privacy_bus`) removed just before it commits, so a bus that does not answer leaves the
database as it was and the request can simply be run again. Their accounts are tombstoned
(:mod:`service.tombstones`): a post of theirs still on its way to ingest is not stored; even a
subject unknown so far is tombstoned, since their first post may be on its way. Once committed, the
bus's topics are trimmed, so the acknowledged stream entries that still carry their posts go now.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import Case, Conversation, CustomerSession, Mention, SocialIdentity
from models.base import utcnow
from service import privacy_bus
from service.audit import record
from service.privacy import (
    anonymise_authors,
    chunks,
    delivered,
    drop_other_accounts,
    erase_cases,
    erase_chat,
    erase_customer,
    erase_posts,
    stub_deliveries,
)
from service.privacy_payloads import account_filter, account_matcher
from service.privacy_subject import (  # noqa: F401 (re-exported: callers name them from here)
    Account,
    AmbiguousSubject,
    Found,
    Subject,
    UnknownSubject,
    find_subject,
    named_only,
    without,
)
from service.stages.base import STAGES
from service.tombstones import begin_erasure, remember, subject_key

log = logging.getLogger("socialcare.privacy")
SCAN_IDS = 5000  # ids per statement of the search of other people's payloads (_naming)


async def erase(db: Any, subject: Subject, *, actor: str, reason: str, dry_run: bool = False,
                secret: str | None = None, bus: Any = None) -> Counter:
    """Erase everything about one person in one transaction (rolled back with ``dry_run``: the
    counts are what would change), and with ``bus`` (a started :class:`service.bus.Bus`) their
    dead letters. Returns the counts per kind; :class:`UnknownSubject` when neither the database
    nor the bus holds anything of them; the bus's :class:`BusUnavailable` changes nothing."""
    counts: Counter = Counter()
    async with db.session() as session:
        await begin_erasure(session)  # first: orders this erasure and the ingest batches in flight
        try:
            found, unknown = await find_subject(session, subject, secret), None
        except UnknownSubject as exc:
            if bus is None:
                await _tombstone_only(session, subject, secret, actor, reason, dry_run)
                raise
            found, unknown = named_only(subject, secret), exc
        # FOR UPDATE (PostgreSQL): a stage's write about one of these posts (its foreign-key check)
        # waits for this transaction, or this one for the stage's (see respect_erasure)
        mention_ids = list(await session.scalars(select(Mention.id).where(
            Mention.author_id.in_(found.author_ids)).with_for_update())) if found.author_ids else []
        letters = await privacy_bus.of_person(bus, await privacy_bus.person(session, found.accounts, mention_ids)) \
            if bus is not None else []
        if unknown is not None and not letters:
            await _tombstone_only(session, subject, secret, actor, reason, dry_run)
            raise unknown
        found.values |= privacy_bus.names(letters)
        case_where = [Case.author_id.in_(found.author_ids)]
        if found.customer is not None:
            case_where.append(Case.customer_id == found.customer.id)
        case_ids = list(await session.scalars(select(Case.id).where(or_(*case_where))))
        await erase_posts(session, mention_ids, counts)
        await erase_cases(session, case_ids, counts)
        await erase_chat(session, found.chat_case_ids - set(case_ids), counts)
        await _others_posts(session, mention_ids, found, counts)
        if found.customer_ids and mention_ids:  # the threads they wrote in no longer name their customer
            for ids in chunks(mention_ids):
                counts["conversation_links"] += (await session.execute(update(Conversation).where(
                    Conversation.customer_id.in_(found.customer_ids),
                    Conversation.id.in_(select(Mention.conversation_id).where(Mention.id.in_(ids))))
                    .values(customer_id=None))).rowcount
        if found.customer is not None:
            counts["conversation_links"] += (await session.execute(update(Conversation).where(
                Conversation.customer_id == found.customer.id).values(customer_id=None))).rowcount
            counts["sessions_revoked"] += (await session.execute(update(CustomerSession).where(
                CustomerSession.customer_id == found.customer.id).values(
                customer_id=None, revoked_at=func.coalesce(CustomerSession.revoked_at, utcnow())))).rowcount
            await erase_customer(session, found.customer, counts)
        await anonymise_authors(session, found.author_ids, counts)
        if found.identity_ids:
            counts["identities"] += (await session.execute(delete(SocialIdentity).where(
                SocialIdentity.id.in_(found.identity_ids)))).rowcount
        for ids in chunks(mention_ids):
            await stub_deliveries(session, delivered("mention_id").in_(ids), counts)
        for ids in chunks(case_ids):
            await stub_deliveries(session, delivered("case_id").in_(ids), counts)
        # last before the commit: a bus that fails here leaves the database as it was
        counts["dead_letters"] = await privacy_bus.remove(bus, [d.id for d in letters], dry_run=dry_run)
        counts = Counter({k: v for k, v in counts.items() if v})
        if dry_run:
            await session.rollback()
            return counts
        tombstoned = await remember(session, secret, found.accounts) if secret else 0
        record(session, actor, "privacy.erased", "customer" if found.customer else "author",
               found.customer.id if found.customer else min(found.author_ids, default=None),
               reason=without(reason, found.values), mode=_mode(subject), platform=subject.platform,
               author_ids=sorted(found.author_ids), case_ids=sorted(case_ids), counts=dict(counts),
               erased_before=found.erased_before, subject_keys=sorted(found.keys),
               dead_letters_checked=bus is not None, tombstones=tombstoned,
               shown_keys=sorted({subject_key(secret, *a) for a in found.shown}) if secret else [])
        await session.commit()
    await _trim(bus)
    return counts


async def _others_posts(session: AsyncSession, mention_ids: list[int], found: Found, counts: Counter) -> None:
    """Other people's posts in the threads the person wrote in, or whose payload names one of
    their accounts (a reply's ``in_reply_to_user_id``, an @-mention's entry): the payload keys
    that name accounts go (:func:`service.privacy.drop_other_accounts`)."""
    for ids in chunks(mention_ids):
        threads = select(Mention.conversation_id).where(Mention.id.in_(ids), Mention.conversation_id.is_not(None))
        await drop_other_accounts(session, Mention.conversation_id.in_(threads), counts)
    for ids in chunks(await _naming(session, found.accounts)):
        await drop_other_accounts(session, Mention.id.in_(ids), counts)


async def _naming(session: AsyncSession, accounts: set[Account]) -> list[int]:
    """The posts whose payload names one of these accounts as a whole value, where payloads name
    accounts (:func:`service.privacy_payloads.account_matcher`): never because an id or handle is
    part of another value (a three-letter id is part of many). The database picks the candidates
    (:func:`service.privacy_payloads.account_filter`: every payload that names them, few others),
    the exact check is Python's. One pass: the platform's posts are read by ranges of :data:`SCAN_IDS` ids
    along the primary key, each payload once, every statement short (an erasure runs in one
    transaction that ingest waits for: no post is stored meanwhile, so the ids' span read first is
    the whole). Paging by ``id > last ORDER BY id LIMIT n`` over the filter instead made SQLite read
    the platform's every payload again for each page."""
    wanted: dict[str, tuple[set[str], set[str]]] = {}
    for platform, kind, value in accounts:
        if value:
            wanted.setdefault(platform, (set(), set()))[kind == "id"].add(value.lower())
    out: list[int] = []
    for platform, (handles, ids) in wanted.items():
        low, high = (await session.execute(select(func.min(Mention.id), func.max(Mention.id)).where(
            Mention.platform == platform))).one()
        if low is None:
            continue
        names = account_matcher(handles, ids)
        # the platform compared as an expression: the id range is the access path, never the
        # platform's index (SQLite and an unanalysed PostgreSQL would read all its rows per range)
        candidates = and_(Mention.platform.concat("") == platform, Mention.raw.is_not(None),
                          account_filter(session.bind.dialect.name, Mention.raw, handles, ids))
        for start in range(low - 1, high, SCAN_IDS):
            rows = await session.execute(select(Mention.id, Mention.raw).where(
                Mention.id > start, Mention.id <= start + SCAN_IDS, candidates))
            out += [r.id for r in rows if names(r.raw)]
    return out


async def _trim(bus: Any) -> None:
    """After the commit: drop the stream entries every group has acknowledged, which still hold the
    person's posts as published (a worker trims only now and then). Housekeeping: a bus that does
    not answer leaves them for its workers' next trim."""
    for topic in STAGES if bus is not None else ():
        try:
            await bus.trim(topic)
        except Exception as exc:  # noqa: BLE001 - the erasure is committed; the workers trim later
            log.warning("erasure: could not trim the %s topic (%s)", topic, type(exc).__name__)


async def _tombstone_only(session: AsyncSession, subject: Subject, secret: str | None, actor: str, reason: str,
                          dry_run: bool) -> None:
    """Nothing on record for the account named: tombstone it all the same (a post of theirs may be
    on its way to ingest), audited as ``privacy.tombstoned``; the caller then reports the unknown subject."""
    found = named_only(subject, secret)
    if dry_run or not secret or not found.accounts:
        return
    n = await remember(session, secret, found.accounts)
    record(session, actor, "privacy.tombstoned", "author", None, reason=without(reason, found.values),
           mode=_mode(subject), platform=subject.platform, subject_keys=sorted(found.keys), tombstones=n)
    await session.commit()


def _mode(subject: Subject) -> str:
    return "customer" if subject.customer_id is not None else "handle" if subject.handle else "user_id"
