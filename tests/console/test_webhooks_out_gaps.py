"""Outgoing webhooks announce every row once, also one that commits after a row with a higher id
(PostgreSQL gives ids at insert: an act batch opens a case and works on while another commits)
or one dated before it was written (an incident's ``opened_at`` is its first post's time): the
scanner's cursor keeps the ids below it not announced yet and looks for them again."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from console.webhooks_out import GAP_TTL, scan
from models import Case, ConnectorCursor, WebhookDelivery, WebhookSubscription
from models.base import utcnow
from models.db import Database


async def subscribe(db) -> None:
    async with db.session() as s:
        s.add(WebhookSubscription(name="crm-bot", url="http://127.0.0.1:9/hook", secret="a secret of enough length",
                                  created_by="test", events=["case.opened"], created_at=utcnow() - timedelta(hours=1)))
        await s.commit()
    assert await scan(db, now=utcnow() + timedelta(seconds=5)) == 0  # the watermark exists


async def announced(db) -> list[str]:
    async with db.session() as s:
        return sorted(await s.scalars(select(WebhookDelivery.event_id)))


async def cursor(db) -> str:
    async with db.session() as s:
        return (await s.get(ConnectorCursor, "webhooks:case.opened")).cursor


async def test_a_row_settling_after_a_higher_one_is_announced_when_it_settles(any_db):
    await subscribe(any_db)
    now = utcnow()
    async with any_db.session() as s:
        recent, old = Case(category="fraud", created_at=now), Case(category="fraud", created_at=now - timedelta(hours=1))
        s.add(recent)
        await s.flush()
        s.add(old)
        await s.commit()
    assert recent.id < old.id
    assert await scan(any_db, now=now + timedelta(seconds=1)) == 1  # the old one; the recent one not settled
    assert await announced(any_db) == [f"case.opened:{old.id}"]
    assert json.loads(await cursor(any_db))["gaps"].keys() == {str(recent.id)}
    assert await scan(any_db, now=now + timedelta(seconds=5)) == 1
    assert await announced(any_db) == sorted([f"case.opened:{old.id}", f"case.opened:{recent.id}"])
    assert await cursor(any_db) == str(old.id)  # nothing left to look for
    assert await scan(any_db, now=now + timedelta(seconds=10)) == 0


async def test_on_postgresql_a_case_committed_after_a_higher_id_is_announced_and_a_rolled_back_id_forgotten(
        postgres_url):
    db = Database(postgres_url)
    await db.upgrade()
    try:
        await subscribe(db)
        async with db.session() as slow, db.session() as quick:
            first = Case(category="security")
            slow.add(first)
            await slow.flush()  # id given, transaction open (an act batch working on)
            second = Case(category="fraud", created_at=utcnow() - timedelta(minutes=1))
            quick.add(second)
            await quick.commit()
            assert first.id < second.id
            assert await scan(db, now=utcnow() + timedelta(seconds=5)) == 1
            assert await announced(db) == [f"case.opened:{second.id}"]
            await slow.commit()
        assert await scan(db, now=utcnow() + timedelta(seconds=5)) == 1
        assert f"case.opened:{first.id}" in await announced(db)

        async with db.session() as s:  # an id given and rolled back: a gap no row will fill
            lost = Case(category="fraud")
            s.add(lost)
            await s.flush()
            await s.rollback()
        async with db.session() as s:
            third = Case(category="fraud", created_at=utcnow() - timedelta(minutes=1))
            s.add(third)
            await s.commit()
        assert await scan(db, now=utcnow() + timedelta(seconds=5)) == 1
        assert json.loads(await cursor(db))["gaps"].keys() == {str(lost.id)}
        assert await scan(db, now=utcnow() + GAP_TTL + timedelta(minutes=1)) == 0
        assert await cursor(db) == str(third.id)  # forgotten
        assert len(await announced(db)) == 3
    finally:
        await db.close()


@pytest.mark.parametrize("old_cursor", ["0", None])
async def test_a_cursor_written_before_gaps_were_kept_still_reads(any_db, old_cursor):
    await subscribe(any_db)
    async with any_db.session() as s:
        c = Case(category="fraud", created_at=utcnow() - timedelta(minutes=1))
        s.add(c)
        (await s.get(ConnectorCursor, "webhooks:case.opened")).cursor = old_cursor
        await s.commit()
    assert await scan(any_db, now=utcnow() + timedelta(seconds=5)) == 1
    assert await cursor(any_db) == str(c.id)
