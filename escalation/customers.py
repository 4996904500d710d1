"""The customer record: import from the brand's CRM export and link social identities.

A handle is not an account: it can be given up and taken by a stranger, who must not inherit the
record. So a link the CRM made by handle alone (no platform user id) names the first account seen
with that handle, and is keyed by that account's user id from then on: when it is made, the one
account on record that showed the handle (several: none of them, it stays pending, and privacy
requests refuse it as ambiguous); else the first account ingest sees with it afterwards
(:func:`claim_handle_link`, while no other account on record shows the handle). A later account
with the same handle is not linked by it.
"""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, time
from pathlib import Path

from sqlalchemy import exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import Author, Customer, SocialIdentity

HANDLE_COLUMNS = {"x_handle": "x", "reddit_username": "reddit", "discourse_username": "discourse"}


async def link_identity(session: AsyncSession, customer_id: int, platform: str, handle: str | None,
                        user_id: str | None = None, source: str = "import") -> SocialIdentity:
    """Link a platform account to a customer (idempotent), and the authors already seen with it.

    With the platform's user id known the link is keyed by it (``id:<user id>``, the handle kept to
    show): a handle can be given up and taken by a stranger, who must not inherit the record. The
    customer's link by that handle (an import's) becomes this one. Only without a user id (a CRM
    import, a source that gives none) is the handle the key until an account is seen with it (see
    the module docstring), and only authors without a user id are matched by the handle."""
    if not handle and not user_id:
        raise ValueError("an identity needs a handle or a platform user id")
    by_name = handle.lstrip("@").lower() if handle else None
    if not user_id:  # the CRM's handle alone: the one account on record that showed it, if it is nobody else's
        owners = await _showing(session, platform, by_name)
        taken = await _identity(session, platform, f"id:{owners[0]}") if len(owners) == 1 else None
        if len(owners) == 1 and (taken is None or taken.customer_id == customer_id):  # else: its own link wins
            return await link_identity(session, customer_id, platform, handle, owners[0], source)
    key = f"id:{user_id}" if user_id else by_name
    row = await _identity(session, platform, key)
    if user_id and by_name and (named := await _identity(session, platform, by_name)) is not None \
            and named.customer_id == customer_id and named.platform_user_id in (None, user_id):
        if row is None:
            named.handle_key, row = key, named  # bound to the account from now on, not to the name
        else:
            await session.delete(named)
    if row is None:
        row = SocialIdentity(customer_id=customer_id, platform=platform, handle=handle, handle_key=key,
                             platform_user_id=user_id, source=source)
        session.add(row)
    else:
        row.customer_id = customer_id
        if source != "import":
            row.source = source
        if handle and user_id:
            row.handle = handle  # the name the account has now
    if user_id and row.platform_user_id is None:
        row.platform_user_id = user_id
    same = Author.platform_user_id == user_id if user_id else \
        (_shown(Author) == by_name) & Author.platform_user_id.is_(None)  # an account's: by its id only
    for a in await session.scalars(select(Author).where(Author.platform == platform, same)):
        a.customer_id = customer_id
    return row


def _shown(model: type) -> object:
    """SQL: the handle an author or identity shows, as handles are compared (no '@', lower-case)."""
    return func.lower(func.ltrim(model.handle, "@"))


async def _showing(session: AsyncSession, platform: str, key: str, but: str | None = None) -> list[str]:
    """The user ids of the accounts on record (authors) that showed handle ``key``, ``but`` that one."""
    where = [Author.platform == platform, _shown(Author) == key, Author.platform_user_id.is_not(None)]
    if but is not None:
        where.append(Author.platform_user_id != but)
    return sorted(set(await session.scalars(select(Author.platform_user_id).where(*where))))


async def claim_handle_link(session: AsyncSession, platform: str, key: str, user_id: str) -> int | None:
    """Ingest's side of a link by handle alone (``key``, as :func:`link_identity` keys it): an
    account first seen with the handle (user id ``user_id``) takes it, the link keyed by its id from
    now on. Its customer id; None when another account on record shows the handle (which account the
    CRM meant is unclear: none is linked) or another account took the link first (the UPDATE's
    condition, re-read after a concurrent claim commits, decides)."""
    if await _showing(session, platform, key, but=user_id):
        return None
    bound = SocialIdentity.__table__.alias("bound")
    return await session.scalar(update(SocialIdentity).where(
        SocialIdentity.platform == platform, SocialIdentity.handle_key == key,
        SocialIdentity.platform_user_id.is_(None) | (SocialIdentity.platform_user_id == user_id),
        ~exists().where(bound.c.platform == platform, bound.c.handle_key == f"id:{user_id}"))
        .values(handle_key=f"id:{user_id}", platform_user_id=user_id)
        .returning(SocialIdentity.customer_id).execution_options(synchronize_session=False))


async def _identity(session: AsyncSession, platform: str, key: str) -> SocialIdentity | None:
    return await session.scalar(select(SocialIdentity).where(SocialIdentity.platform == platform,
                                                             SocialIdentity.handle_key == key))


def customer_since(value: str | None, where: str) -> datetime | None:
    """The CRM's ``created_at`` ("customer since"): a date or an ISO date-time, UTC unless it says
    otherwise. Empty means unknown; anything else is refused with the row, never read as today."""
    raw = (value or "").strip()
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw) if "T" in raw or " " in raw else datetime.combine(
            date.fromisoformat(raw), time())
    except ValueError as exc:
        raise ValueError(f"{where}: created_at {raw[:40]!r} is not a date (YYYY-MM-DD or an ISO date-time)") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


async def import_customers_csv(session: AsyncSession, path: Path) -> int:
    """Upsert customers by ``customer_id`` and link their handles. Returns the number of rows."""
    count = 0
    with path.open(newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            where = f"{path}: line {count + 2}"
            ref = rec.get("customer_id") or rec.get("id")
            if not ref or not rec.get("name"):
                raise ValueError(f"{where}: a customer needs customer_id and name")
            since = customer_since(rec.get("created_at"), where)
            customer = await session.scalar(select(Customer).where(Customer.external_ref == ref))
            if customer is None:
                customer = Customer(external_ref=ref, name=rec["name"])
                session.add(customer)
            if since is not None:
                customer.created_at = since
            customer.name, customer.email = rec["name"], rec.get("email") or None
            customer.phone, customer.plan = rec.get("phone") or None, rec.get("plan") or None
            await session.flush()
            for column, platform in HANDLE_COLUMNS.items():
                if rec.get(column):
                    await link_identity(session, customer.id, platform, rec[column].strip())
            count += 1
    await session.flush()
    return count
