"""One unresolved case per author, and each customer post kept on it once, even when two act workers
escalate the same author or the same redelivered post at once: the database refuses the second
insert, and the retried batch joins the first."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from escalation.cases import open_or_join
from models import Author, Case, CaseMessage, Mention
from models.db import Database

T0 = datetime(2026, 11, 20, 9, tzinfo=timezone.utc)


@pytest.fixture
def db(any_db):
    return any_db


async def two_posts(db: Database) -> tuple[int, int]:
    async with db.session() as s:
        author = Author(platform="x", author_key="u1", handle="victim")
        s.add(author)
        await s.flush()
        posts = [Mention(platform="x", external_id=str(i), text=f"my account was hacked #{i}", author_id=author.id,
                         created_at=T0, content_hash=f"h{i}") for i in (1, 2)]
        s.add_all(posts)
        await s.commit()
        return posts[0].id, posts[1].id


async def two_workers_at_once(db: Database, first: int, second: int) -> tuple[tuple[int, bool], tuple[int, bool]]:
    """Worker A acts on post ``first`` and holds its transaction open while worker B acts on
    ``second``; B waits on A's uncommitted row, fails once A commits, and the act stage retries B's
    batch. Returns (case id, opened) for A and for B's retry."""
    async with db.session() as a, db.session() as b:
        case_a, opened_a = await open_or_join(a, await a.get(Mention, first), "security")  # not committed yet
        case_a_id = case_a.id
        racing = asyncio.create_task(open_or_join(b, await b.get(Mention, second), "security"))
        await asyncio.sleep(0.3)
        assert not racing.done()  # waits on the first worker's uncommitted row
        await a.commit()
        with pytest.raises(IntegrityError):
            await racing
        await b.rollback()
    async with db.session() as retry:  # the act stage retries the batch
        case_b, opened_b = await open_or_join(retry, await retry.get(Mention, second), "security")
        case_b_id = case_b.id
        await retry.commit()
    return (case_a_id, opened_a), (case_b_id, opened_b)


async def test_the_database_refuses_a_second_unresolved_case_for_an_author(db):
    first, second = await two_posts(db)
    async with db.session() as s:
        author_id = (await s.get(Mention, first)).author_id
        s.add(Case(author_id=author_id, opened_by_mention_id=first, category="security"))
        await s.commit()
        s.add(Case(author_id=author_id, opened_by_mention_id=second, category="fraud"))
        with pytest.raises(IntegrityError):
            await s.commit()
        await s.rollback()
        case = await s.scalar(select(Case).where(Case.author_id == author_id))
        case.status = "resolved"
        await s.commit()
        s.add(Case(author_id=author_id, opened_by_mention_id=second, category="fraud"))  # a new problem later
        await s.commit()


async def test_two_workers_escalating_one_author_at_once_end_with_one_case(postgres_url):
    db = Database(postgres_url)
    await db.upgrade()
    try:
        first, second = await two_posts(db)
        (case_a, opened_a), (case_b, opened_b) = await two_workers_at_once(db, first, second)
        assert opened_a and not opened_b and case_b == case_a
        async with db.session() as s:
            assert await s.scalar(select(func.count()).select_from(Case)) == 1
            joined = set(await s.scalars(select(CaseMessage.mention_id).where(CaseMessage.case_id == case_a)))
        assert joined == {first, second}
    finally:
        await db.engine.dispose()


async def test_the_database_refuses_a_customer_post_twice_on_its_case(db):
    first, second = await two_posts(db)
    async with db.session() as s:
        case_id = (await open_or_join(s, await s.get(Mention, first), "security"))[0].id
        await s.commit()
        s.add(CaseMessage(case_id=case_id, sender="customer", mention_id=first, body="again"))
        with pytest.raises(IntegrityError):
            await s.commit()
        await s.rollback()
        s.add(CaseMessage(case_id=case_id, sender="agent", mention_id=first, body="replying to that post"))
        await s.commit()  # only the customer's own copy is unique


async def test_two_workers_joining_one_redelivered_post_at_once_keep_it_once(postgres_url):
    db = Database(postgres_url)
    await db.upgrade()
    try:
        first, second = await two_posts(db)
        async with db.session() as s:
            case = (await open_or_join(s, await s.get(Mention, first), "security"))[0].id
            await s.commit()
        (joined_a, opened_a), (joined_b, opened_b) = await two_workers_at_once(db, second, second)
        assert joined_a == joined_b == case and not opened_a and not opened_b
        async with db.session() as s:
            kept = list(await s.scalars(select(CaseMessage.mention_id).where(CaseMessage.case_id == case)))
        assert sorted(kept) == sorted([first, second])
    finally:
        await db.engine.dispose()
