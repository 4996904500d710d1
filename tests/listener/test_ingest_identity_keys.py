"""Which customer record an author is linked to: by the account's user id first, by a handle only
where no link names the account (a handle can be given up and taken by a stranger)."""

from datetime import UTC, datetime

from sqlalchemy import select

from escalation.customers import link_identity
from listener.ingest import handle_key, ingest_batch
from listener.protocol import NormalizedMention
from models import Author, Customer, SocialIdentity


def post(eid: str, user_id: str | None, handle: str) -> NormalizedMention:
    return NormalizedMention(platform="x", external_id=eid, text="@brand hello", created_at=datetime.now(UTC),
                             author_id=user_id, author_handle=handle)


async def _customers(db, *names: str) -> list[int]:
    async with db.session() as s:
        rows = [Customer(name=n, email=f"{n.lower()}@example.com") for n in names]
        s.add_all(rows)
        await s.commit()
        return [c.id for c in rows]


async def _author(db, user_id: str) -> Author:
    async with db.session() as s:
        return await s.scalar(select(Author).where(Author.platform == "x", Author.platform_user_id == user_id))


def test_the_user_id_is_looked_up_before_the_handle():
    assert handle_key("@Jane", "111") == ["id:111", "jane"]
    assert handle_key("@Jane", None) == ["jane"] and handle_key(None, "111") == ["id:111"]


async def test_a_stranger_taking_a_verified_customers_old_handle_does_not_get_her_record(db):
    (jane,) = await _customers(db, "Jane")
    async with db.session() as s:
        await link_identity(s, jane, "x", "jane", "111", source="verification")
        await s.commit()
    async with db.session() as s:  # Jane renamed herself; a new account (999) took @jane
        await ingest_batch(s, [post("1", "999", "jane"), post("2", "111", "jane_new")])
        await s.commit()
    assert (await _author(db, "999")).customer_id is None
    assert (await _author(db, "111")).customer_id == jane


async def test_the_account_linked_by_its_id_wins_over_a_handle_linked_to_someone_else(db):
    ana, jane = await _customers(db, "Ana", "Jane")
    async with db.session() as s:
        await link_identity(s, ana, "x", "jane")  # the CRM's word for a handle, no account id
        await link_identity(s, jane, "x", "jane_b", "111", source="verification")
        await s.commit()
    async with db.session() as s:
        await ingest_batch(s, [post("1", "111", "jane"), post("2", "222", "jane")])
        await s.commit()
    assert (await _author(db, "111")).customer_id == jane
    assert (await _author(db, "222")).customer_id == ana  # the handle alone still links as imported


async def test_linking_an_account_by_id_links_no_other_account_by_its_handle(db):
    (jane,) = await _customers(db, "Jane")
    async with db.session() as s:
        await ingest_batch(s, [post("1", "999", "jane")])  # a stranger seen with the handle before the link
        await s.commit()
        await link_identity(s, jane, "x", "jane", "111", source="verification")
        await s.commit()
        keys = list(await s.scalars(select(SocialIdentity.handle_key)))
    assert keys == ["id:111"] and (await _author(db, "999")).customer_id is None
