"""One person's erasure on request (GDPR art. 17, CCPA deletion): who they are on record, and
everything about them erased in one transaction with :mod:`service.privacy`'s building blocks, with
their dead letters on the bus (:mod:`service.privacy_bus`) removed just before it commits, so a bus
that does not answer leaves the database as it was and the request can simply be run again. Their
accounts are tombstoned (:mod:`service.tombstones`): a post of theirs still on its way to ingest
is not stored; even a subject unknown so far is tombstoned, since their first post may be on its way.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import AuditEvent, Author, Case, Conversation, Customer, CustomerSession, Mention, SocialIdentity
from models.base import utcnow
from models.mentions import ERASED_TEXT
from service import privacy_bus
from service.audit import record
from service.privacy import (
    anonymise_authors,
    chunks,
    delivered,
    erase_cases,
    erase_customer,
    erase_posts,
    stub_deliveries,
)
from service.privacy_bus import Account
from service.tombstones import begin_erasure, handle_key, remember, subject_key


class UnknownSubject(LookupError):
    """Nothing on record for the person named."""


@dataclass(frozen=True)
class Subject:
    """Whose data to erase: a platform account by handle or user id, or a customer record."""

    platform: str | None = None
    handle: str | None = None
    user_id: str | None = None
    customer_id: int | None = None

    @property
    def handle_key(self) -> str | None:
        return handle_key(self.handle) if self.handle else None


@dataclass
class Found:
    """What belongs to the subject: internal ids, and the values to keep out of the audit log."""

    author_ids: set[int] = field(default_factory=set)
    customer_ids: set[int] = field(default_factory=set)  # linked to the authors (cleared from links)
    identity_ids: set[int] = field(default_factory=set)
    customer: Customer | None = None  # with --customer: the record itself is erased
    values: set[str] = field(default_factory=set)  # handles, ids, names: kept out of the audit log
    keys: set[str] = field(default_factory=set)  # keyed hashes of the subject's handles and ids
    accounts: set[Account] = field(default_factory=set)  # read before anonymising: their dead letters
    erased_before: bool = False


def without(text: str, values: Iterable[str]) -> str:
    """``text`` with each of ``values`` (case-insensitive, with or without "@") replaced."""
    for value in sorted({v for v in values if v and len(v) >= 2}, key=len, reverse=True):
        text = re.sub(rf"@?{re.escape(value)}", "[subject]", text, flags=re.IGNORECASE)
    return text


async def find_subject(session: AsyncSession, subject: Subject, secret: str | None = None) -> Found:
    """The subject's authors, identities and customer; :class:`UnknownSubject` when none is on
    record (a subject erased before is recognised through the keyed hashes of the audit log)."""
    found = Found()
    if subject.customer_id is not None:
        found.customer = await session.get(Customer, subject.customer_id)
        if found.customer is None:
            raise UnknownSubject(f"no customer record {subject.customer_id}")
        c = found.customer
        found.values |= {v for v in (c.name, c.email, c.phone, c.external_ref) if v and v != ERASED_TEXT}
        identities = list(await session.execute(select(
            SocialIdentity.id, SocialIdentity.platform, SocialIdentity.handle_key, SocialIdentity.handle,
            SocialIdentity.platform_user_id).where(SocialIdentity.customer_id == c.id)))
        found.identity_ids = {i.id for i in identities}
        found.customer_ids = {c.id}
        match = [Author.customer_id == c.id]
        for i in identities:
            if i.handle_key.startswith("id:"):
                match.append(and_(Author.platform == i.platform, Author.platform_user_id == i.handle_key[3:]))
                found.accounts.add((i.platform, "id", i.handle_key[3:]))
            else:
                match.append(and_(Author.platform == i.platform, _handle_is(i.handle_key)))
                found.accounts.add((i.platform, "handle", i.handle_key))
            if i.platform_user_id:
                found.accounts.add((i.platform, "id", i.platform_user_id))
            found.values |= {i.handle_key.removeprefix("id:"), i.handle or ""}
        await _add_authors(session, found, or_(*match))
        return found
    platform, key, uid = subject.platform, subject.handle_key, subject.user_id
    found.values |= {v for v in (key, uid) if v}
    await _add_authors(session, found, and_(Author.platform == platform, _handle_is(key)) if key else
                       and_(Author.platform == platform, or_(Author.platform_user_id == uid, Author.author_key == uid)))
    uids = {uid} if uid else set()
    handles = {key} if key else set()
    for a in (await session.execute(select(Author.platform_user_id, Author.handle).where(
            Author.id.in_(found.author_ids)))).all():
        uids |= {a.platform_user_id} - {None}
        handles |= {a.handle.lstrip("@").lower()} if a.handle else set()
    if uids:  # the same account seen with and without its id
        await _add_authors(session, found, and_(Author.platform == platform, Author.platform_user_id.in_(uids)))
    found.identity_ids = set(await session.scalars(select(SocialIdentity.id).where(
        SocialIdentity.platform == platform, or_(SocialIdentity.handle_key.in_(handles | {f"id:{u}" for u in uids}),
                                                 SocialIdentity.platform_user_id.in_(uids)))))
    found.values |= uids | handles
    found.accounts |= {(platform, "handle", h) for h in handles} | {(platform, "id", u) for u in uids}
    if secret:
        found.keys = {subject_key(secret, platform, "handle", h) for h in handles} | \
                     {subject_key(secret, platform, "id", u) for u in uids}
    if not found.author_ids and not found.identity_ids:
        if found.keys and await _erased_before(session, found.keys):
            found.erased_before = True
            return found
        raise UnknownSubject(f"nothing on record for {'user id ' + uid if uid else '@' + (key or '')} on {platform}")
    return found


def _handle_is(key: str) -> Any:
    return or_(func.lower(func.ltrim(Author.handle, "@")) == key, Author.author_key == f"@{key}")


async def _add_authors(session: AsyncSession, found: Found, where: Any) -> None:
    rows = (await session.execute(select(Author.id, Author.customer_id, Author.handle, Author.display_name,
                                         Author.platform_user_id, Author.platform).where(where))).all()
    found.author_ids |= {a.id for a in rows}
    found.customer_ids |= {a.customer_id for a in rows if a.customer_id}
    found.values |= {v for a in rows for v in (a.handle, a.display_name, a.platform_user_id) if v}
    found.accounts |= {(a.platform, "handle", a.handle.lstrip("@").lower()) for a in rows if a.handle} | \
                      {(a.platform, "id", a.platform_user_id) for a in rows if a.platform_user_id}


async def _erased_before(session: AsyncSession, keys: set[str]) -> bool:
    for details in await session.scalars(select(AuditEvent.details).where(AuditEvent.action == "privacy.erased")):
        if keys & set((details or {}).get("subject_keys") or []):
            return True
    return False


def named_only(subject: Subject, secret: str | None) -> Found:
    """Nothing on record but the account the request names (its posts may sit in dead letters only)."""
    if subject.platform is None or not (subject.handle_key or subject.user_id):
        return Found()
    account = (subject.platform, "handle", subject.handle_key) if subject.handle_key else \
        (subject.platform, "id", subject.user_id)
    return Found(values={account[2]}, accounts={account}, keys={subject_key(secret, *account)} if secret else set())


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
               dead_letters_checked=bus is not None, tombstones=tombstoned)
        await session.commit()
    return counts


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
