"""A CRM link by handle alone (no platform user id: escalation.customers) names the first account
seen with the handle, on SQLite and PostgreSQL: from then on it is keyed by that account's user id,
and an account that later shows the same handle (it was given up and taken) does not inherit the
customer record; made while several accounts on record showed the handle, it links none of them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from escalation.customers import link_identity
from listener.ingest import ingest_batch
from listener.protocol import NormalizedMention
from models import Author, Customer, SocialIdentity


def post(eid: str, user_id: str, handle: str) -> NormalizedMention:
    return NormalizedMention(platform="x", external_id=eid, text="@brand hello", created_at=datetime.now(UTC),
                             author_id=user_id, author_handle=handle)


async def ingest(db, *posts: NormalizedMention) -> None:
    async with db.session() as s:
        await ingest_batch(s, list(posts))
        await s.commit()


async def crm(db, handle: str = "@maria") -> int:
    async with db.session() as s:
        customer = Customer(name="Maria Imported", email="maria@example.com")
        s.add(customer)
        await s.flush()
        await link_identity(s, customer.id, "x", handle)
        await s.commit()
        return customer.id


async def linked(db) -> dict[str, int | None]:
    async with db.session() as s:
        return {a.platform_user_id: a.customer_id for a in await s.scalars(select(Author))}


async def keys(db) -> list[str]:
    async with db.session() as s:
        return list(await s.scalars(select(SocialIdentity.handle_key)))


async def test_the_first_account_seen_with_an_imported_handle_takes_it_and_a_later_one_does_not(any_db):
    cid = await crm(any_db)
    await ingest(any_db, post("1", "111", "Maria"))
    assert await keys(any_db) == ["id:111"]  # bound to the account, not to the name
    await ingest(any_db, post("2", "111", "maria_new"), post("3", "222", "maria"))  # renamed; a stranger took it
    assert await linked(any_db) == {"111": cid, "222": None}


async def test_of_two_accounts_first_seen_in_one_batch_with_the_handle_one_takes_it(any_db):
    cid = await crm(any_db)
    await ingest(any_db, post("1", "111", "maria"), post("2", "222", "@Maria"))
    assert await linked(any_db) == {"111": cid, "222": None}
    assert await keys(any_db) == ["id:111"]


async def test_a_handle_imported_after_its_account_was_seen_is_bound_to_that_account(any_db):
    await ingest(any_db, post("1", "111", "maria"))
    cid = await crm(any_db)
    assert await keys(any_db) == ["id:111"] and await linked(any_db) == {"111": cid}
    await crm(any_db)  # imported again for another record: the account is linked by id already
    await ingest(any_db, post("2", "222", "maria"))
    assert (await linked(any_db))["222"] is None


async def test_a_handle_several_accounts_showed_links_none_of_them_nor_a_newcomer(any_db):
    await ingest(any_db, post("1", "111", "maria"), post("2", "222", "maria"))
    await crm(any_db)
    assert await keys(any_db) == ["maria"]  # pending: which account the CRM meant is unclear
    await ingest(any_db, post("3", "333", "maria"))
    assert await linked(any_db) == {"111": None, "222": None, "333": None}
