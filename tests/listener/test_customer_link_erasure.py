"""A signed widget post links its author to the customer record, unless its author was erased after
publishing it (the widget's retry delivers it late): ingest drops that post by its tombstone, and
the link must not bring back the identity the erasure deleted. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from listener import webhook
from listener.ingest import ingest_batch
from models import Customer, SocialIdentity
from models.base import utcnow
from models.db import Database
from service import erasure
from service.erasure import Subject
from service.settings import load_settings
from service.tombstones import privacy_key

SECRET = "generic-secret"


@pytest.fixture
async def widget(any_database_url, tmp_path):
    """The webhook on a real database with Jane's customer record; what it published."""
    db = Database(any_database_url)
    await db.upgrade()
    async with db.session() as s:
        s.add(Customer(external_ref="cus_42", name="Jane Doe", email="jane@example.com"))
        await s.commit()
    published: list = []

    async def publish(batch):
        published.extend(batch)

    settings = load_settings(webhook_secret=SECRET, secret_key="link-test-secret-0123456789", var_dir=tmp_path / "var")
    app = web.Application()
    app.router.add_routes(webhook.routes(settings, publish, db=db))
    c = TestClient(TestServer(app, host="127.0.0.1"))
    await c.start_server()
    c.published, c.db, c.settings = published, db, settings
    yield c
    await c.close()
    await db.close()


async def deliver(client, i: int, created_at: str) -> dict:
    post = {"source": "help-widget", "id": f"msg-{i}", "text": "I was charged twice", "created_at": created_at,
            "author": {"id": "u-9", "handle": "jane", "name": "Jane"}, "customer": {"id": "cus_42"}}
    raw, ts = json.dumps(post).encode(), str(int(time.time()))
    resp = await client.post(webhook.PATH, data=raw, headers={
        "Content-Type": "application/json", "X-Socialcare-Timestamp": ts,
        "X-Socialcare-Signature": webhook.sign(SECRET, raw, ts)})
    assert resp.status == 202
    return await resp.json()


async def identities(db) -> list[tuple]:
    async with db.session() as s:
        return [(i.platform, i.handle_key) for i in await s.scalars(select(SocialIdentity))]


async def test_a_late_post_of_an_erased_author_links_nobody_and_a_later_one_links_again(widget):
    before = (utcnow() - timedelta(minutes=5)).isoformat()
    assert await deliver(widget, 1, before) == {"accepted": 1, "customers_linked": 1}
    async with widget.db.session() as s:
        await ingest_batch(s, widget.published)
        await s.commit()
    counts = await erasure.erase(widget.db, Subject(platform="webhook", user_id="help-widget:u-9"), actor="dpo",
                                 reason="art 17", secret=privacy_key(widget.settings))
    assert counts["identities"] == 1 and await identities(widget.db) == []
    # the widget's retry of a post written before the erasure: its tombstone drops it, and no link comes back
    assert await deliver(widget, 2, (utcnow() - timedelta(minutes=1)).isoformat()) == \
        {"accepted": 1, "customers_linked": 0}
    assert await identities(widget.db) == []
    # what the person writes after the erasure is new data: linked as usual
    assert await deliver(widget, 3, (utcnow() + timedelta(seconds=5)).isoformat()) == \
        {"accepted": 1, "customers_linked": 1}
    assert await identities(widget.db) == [("webhook", "id:help-widget:u-9")]
