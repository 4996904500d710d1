"""The customer record: import from the brand's CRM export and link social identities."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, time
from pathlib import Path

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Author, Customer, SocialIdentity

HANDLE_COLUMNS = {"x_handle": "x", "reddit_username": "reddit", "discourse_username": "discourse"}


async def link_identity(session: AsyncSession, customer_id: int, platform: str, handle: str | None,
                        user_id: str | None = None, source: str = "import") -> SocialIdentity:
    """Link a platform account to a customer (idempotent), and the authors already seen with it."""
    if not handle and not user_id:
        raise ValueError("an identity needs a handle or a platform user id")
    key = handle.lstrip("@").lower() if handle else f"id:{user_id}"
    row = await session.scalar(select(SocialIdentity).where(SocialIdentity.platform == platform,
                                                            SocialIdentity.handle_key == key))
    if row is None:
        row = SocialIdentity(customer_id=customer_id, platform=platform, handle=handle, handle_key=key,
                             platform_user_id=user_id, source=source)
        session.add(row)
    else:
        row.customer_id = customer_id
        if source != "import":
            row.source = source
    if user_id and row.platform_user_id is None:
        row.platform_user_id = user_id
    same = [Author.platform_user_id == user_id] if user_id else []
    if handle:
        same += [func.lower(Author.handle) == key, func.lower(Author.handle) == "@" + key]
    if same:
        for a in await session.scalars(select(Author).where(Author.platform == platform, or_(*same))):
            a.customer_id = customer_id
    return row


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
