"""Who a privacy request is about: the person named (a platform account by handle or user id, or a
customer record) and what is on record of them, for the erasure (:mod:`service.erasure`) and the
export (:mod:`service.privacy_export`), which must find exactly the same person.

A handle is not an account: it can be given up and taken by a stranger (identities are keyed by
the platform's user id for that reason, migration 0015). So a handle that more than one account
(distinct user ids) has carried on record is refused as ambiguous rather than merged: exporting
would hand the requester a stranger's data, erasing would erase the stranger. And an account named
by user id never reaches out, through one of its handles, to what that handle now names for
another account (an identity or a dead letter keyed by the handle, the handle's tombstone). Its
erasure still records (keyed hashes in its audit entry, ``shown_keys``) every handle it showed: a
customer whose CRM identity names one of those handles alone is then refused as ambiguous, though
only the handle's new owner still shows it (the CRM may have meant the erased account).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import AuditEvent, Author, Case, Customer, CustomerSession, SocialIdentity
from models.mentions import ERASED_TEXT
from service.tombstones import handle_key, subject_key

Account = tuple[str, str, str]  # (platform, "handle" | "id", value)


class UnknownSubject(LookupError):
    """Nothing on record for the person named."""


class AmbiguousSubject(ValueError):
    """The handle named was carried by more than one account: which one is the person's?"""

    def __init__(self, platform: str, handle: str, user_ids: Iterable[str], *, erased: bool = False) -> None:
        self.user_ids, self.erased = sorted(set(user_ids)), erased
        accounts = len(self.user_ids) + erased
        ids = ", ".join(self.user_ids) + (" and an account erased before" if erased else "")
        super().__init__(f"ambiguous subject: @{handle} on {platform} was used by {accounts} accounts "
                         f"(user ids {ids}); a handle can change hands: name the person's "
                         "account with --user-id")


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
    shown: set[Account] = field(default_factory=set)  # every handle their authors showed, now another's too
    erased_before: bool = False
    # with --customer: pending cases a session of theirs verified as the record on
    # (escalation.verification.verified_as), and those of them where no session verified as anyone else
    verified_case_ids: set[int] = field(default_factory=set)
    chat_case_ids: set[int] = field(default_factory=set)


def without(text: str, values: Iterable[str]) -> str:
    """``text`` with each of ``values`` (case-insensitive, with or without "@") replaced."""
    for value in sorted({v for v in values if v and len(v) >= 2}, key=len, reverse=True):
        text = re.sub(rf"@?{re.escape(value)}", "[subject]", text, flags=re.IGNORECASE)
    return text


async def find_subject(session: AsyncSession, subject: Subject, secret: str | None = None) -> Found:
    """The subject's authors, identities and customer; :class:`UnknownSubject` when none is on
    record (a subject erased before is recognised through the keyed hashes of the audit log),
    :class:`AmbiguousSubject` for a handle more than one account carried."""
    if subject.customer_id is not None:
        return await _customer(session, subject.customer_id, secret)
    found = Found()
    platform, key, uid = subject.platform, subject.handle_key, subject.user_id
    found.values |= {v for v in (key, uid) if v}
    uids = {uid} if uid else set()
    if key:  # every author and identity that showed the handle: one account, or refused
        await _add_authors(session, found, and_(Author.platform == platform, _handle_is(Author, key)))
        owners, identity_ids = await _owners(session, platform, key)
        uids |= owners
        found.identity_ids |= identity_ids
    if uids:  # the account by its id, whatever handle it showed (with and without its id)
        await _add_authors(session, found, and_(Author.platform == platform, or_(
            Author.platform_user_id.in_(uids), Author.author_key.in_(uids))))
    handles = ({key} if key else set()) | {handle_key(a.handle) for a in (await session.execute(
        select(Author.handle).where(Author.id.in_(found.author_ids)))).all() if a.handle}
    found.values |= uids | handles
    found.shown |= {(platform, "handle", h) for h in handles}
    handles -= await _taken(session, platform, handles, uids)  # now another account's: not theirs to erase
    found.identity_ids |= set(await session.scalars(select(SocialIdentity.id).where(
        SocialIdentity.platform == platform, or_(SocialIdentity.handle_key.in_(handles | {f"id:{u}" for u in uids}),
                                                 SocialIdentity.platform_user_id.in_(uids)))))
    found.accounts |= {(platform, "handle", h) for h in handles} | {(platform, "id", u) for u in uids}
    if secret:
        found.keys = {subject_key(secret, *account) for account in found.accounts}
    if not found.author_ids and not found.identity_ids:
        if found.keys and await _erased_before(session, found.keys):
            found.erased_before = True
            return found
        raise UnknownSubject(f"nothing on record for {'user id ' + uid if uid else '@' + (key or '')} on {platform}")
    return found


async def _customer(session: AsyncSession, customer_id: int, secret: str | None = None) -> Found:
    """A customer record, its linked identities and the authors they match. An identity keyed by a
    handle alone is the one account that showed it, or refused as ambiguous: when more than one
    did, and (given the ``secret`` of the audit log's hashes) when an account erased before did."""
    found = Found(customer=await session.get(Customer, customer_id))
    if found.customer is None:
        raise UnknownSubject(f"no customer record {customer_id}")
    c = found.customer
    found.values |= {v for v in (c.name, c.email, c.phone, c.external_ref) if v and v != ERASED_TEXT}
    identities = list(await session.execute(select(
        SocialIdentity.id, SocialIdentity.platform, SocialIdentity.handle_key, SocialIdentity.handle,
        SocialIdentity.platform_user_id).where(SocialIdentity.customer_id == c.id)))
    found.identity_ids = {i.id for i in identities}
    found.customer_ids = {c.id}
    match = [Author.customer_id == c.id]
    for i in identities:
        uid = i.handle_key[3:] if i.handle_key.startswith("id:") else i.platform_user_id
        if uid is None:  # keyed by a handle alone (a CRM import): the one account that showed it, or refused
            owners, _ = await _owners(session, i.platform, i.handle_key)
            if owners and secret and await _shown_by_erased(session, secret, i.platform, i.handle_key, owners):
                raise AmbiguousSubject(i.platform, i.handle_key, owners, erased=True)
            uid = next(iter(owners), None)
        if uid is not None:
            match.append(and_(Author.platform == i.platform, Author.platform_user_id == uid))
            found.accounts.add((i.platform, "id", uid))
        else:
            match.append(and_(Author.platform == i.platform, _handle_is(Author, i.handle_key)))
            found.accounts.add((i.platform, "handle", i.handle_key))
        found.values |= {i.handle_key.removeprefix("id:"), i.handle or ""}
    rows = await _add_authors(session, found, or_(*match))
    for platform in {a.platform for a in rows}:  # a handle one of theirs showed, now another account's: not theirs
        uids = {a.platform_user_id for a in rows if a.platform == platform and a.platform_user_id}
        handles = {handle_key(a.handle) for a in rows if a.platform == platform and a.handle}
        found.shown |= {(platform, "handle", h) for h in handles}
        handles -= await _taken(session, platform, handles, uids)
        found.accounts |= {(platform, "handle", h) for h in handles} | {(platform, "id", u) for u in uids}
    found.verified_case_ids, found.chat_case_ids = await verified_cases(session, c.id)
    return found


async def verified_cases(session: AsyncSession, customer_id: int) -> tuple[set[int], set[int]]:
    """The cases on which a customer session verified as this record (an identity still pending:
    the visitor read the record's e-mail, the case stays unlinked), and those of them whose chat is
    theirs: no session of the case verified as another record, nor is the case another's."""
    mine = set(await session.scalars(select(CustomerSession.case_id).where(
        CustomerSession.customer_id == customer_id, CustomerSession.verified_at.is_not(None))))
    if not mine:
        return set(), set()
    shared = set(await session.scalars(select(CustomerSession.case_id).where(
        CustomerSession.case_id.in_(mine), CustomerSession.verified_at.is_not(None),
        CustomerSession.customer_id.is_not(None), CustomerSession.customer_id != customer_id)))
    shared |= set(await session.scalars(select(Case.id).where(
        Case.id.in_(mine), Case.customer_id.is_not(None), Case.customer_id != customer_id)))
    return mine, mine - shared


async def _owners(session: AsyncSession, platform: str | None, key: str) -> tuple[set[str], set[int]]:
    """The accounts (user ids) the authors and identities showing handle ``key`` belong to, and those
    identities' ids; :class:`AmbiguousSubject` when more than one account did."""
    authors = set(await session.scalars(select(Author.platform_user_id).where(
        Author.platform == platform, _handle_is(Author, key), Author.platform_user_id.is_not(None))))
    identities = (await session.execute(select(SocialIdentity.id, SocialIdentity.handle_key,
                                               SocialIdentity.platform_user_id).where(
        SocialIdentity.platform == platform, _handle_is(SocialIdentity, key)))).all()
    owners = authors | {i.platform_user_id or i.handle_key[3:] for i in identities
                        if i.platform_user_id or i.handle_key.startswith("id:")}
    if len(owners) > 1:
        raise AmbiguousSubject(platform or "", key, owners)
    return owners, {i.id for i in identities}


def _handle_is(model: Any, key: str) -> Any:
    """SQL: an author (by handle, or keyed by it) or an identity (by handle, or keyed by it) showing ``key``."""
    return or_(func.lower(func.ltrim(model.handle, "@")) == key,
               model.author_key == f"@{key}" if model is Author else model.handle_key == key)


async def _taken(session: AsyncSession, platform: str | None, handles: set[str], uids: set[str]) -> set[str]:
    """Those of ``handles`` an author or identity of another account (a user id not in ``uids``)
    carries on record: the handle changed hands."""
    if not handles:
        return set()
    out: set[str] = set()
    for model in (Author, SocialIdentity):
        other = and_(model.platform == platform, model.platform_user_id.is_not(None),
                     model.platform_user_id.notin_(uids) if uids else model.platform_user_id.is_not(None))
        shown = func.lower(func.ltrim(model.handle, "@"))
        out |= {h for h in await session.scalars(select(shown).where(other, shown.in_(handles)))}
    return out


async def _add_authors(session: AsyncSession, found: Found, where: Any) -> list[Any]:
    rows = (await session.execute(select(Author.id, Author.customer_id, Author.handle, Author.display_name,
                                         Author.platform_user_id, Author.platform).where(where))).all()
    found.author_ids |= {a.id for a in rows}
    found.customer_ids |= {a.customer_id for a in rows if a.customer_id}
    found.values |= {v for a in rows for v in (a.handle, a.display_name, a.platform_user_id) if v}
    return rows


async def _erased_before(session: AsyncSession, keys: set[str]) -> bool:
    for details in await session.scalars(select(AuditEvent.details).where(AuditEvent.action == "privacy.erased")):
        if keys & set((details or {}).get("subject_keys") or []):
            return True
    return False


async def _shown_by_erased(session: AsyncSession, secret: str, platform: str, key: str, owners: set[str]) -> bool:
    """Did an account erased before show handle ``key``, one that is none of ``owners`` (the
    accounts showing it now)? Read from the erasures' audit entries: the keyed hashes of the handles
    their accounts showed (``shown_keys``; older entries: ``subject_keys``, which hold those that were
    nobody else's then) and of their user ids."""
    handle = subject_key(secret, platform, "handle", key)
    theirs = {subject_key(secret, platform, "id", uid) for uid in owners}
    for details in await session.scalars(select(AuditEvent.details).where(AuditEvent.action == "privacy.erased")):
        keys = set((details or {}).get("subject_keys") or [])
        if handle in keys | set((details or {}).get("shown_keys") or []) and not keys & theirs:
            return True
    return False


def named_only(subject: Subject, secret: str | None) -> Found:
    """Nothing on record but the account the request names (its posts may sit in dead letters only)."""
    if subject.platform is None or not (subject.handle_key or subject.user_id):
        return Found()
    account = (subject.platform, "handle", subject.handle_key) if subject.handle_key else \
        (subject.platform, "id", subject.user_id)
    return Found(values={account[2]}, accounts={account}, keys={subject_key(secret, *account)} if secret else set())
