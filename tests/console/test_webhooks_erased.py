"""An outgoing-webhook scan racing one person's erasure (console.webhooks_out, service.erasure): the
scan that read the post before the erasure committed writes the erasure's stub, never the words,
whichever commits first. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from console import webhooks_deleted, webhooks_out
from listener.ingest import ingest_batch
from listener.protocol import NormalizedMention
from models import RouteDecision, TriageResult, WebhookDelivery, WebhookSubscription
from models.base import utcnow
from service import erasure
from service.erasure import Subject

T0 = datetime(2026, 12, 1, 8, tzinfo=UTC)
WORDS = "zqx I am Maria Lopez, card 4242"
SECRET = "webhook-erasure-secret-0123456789"


async def her_post(db) -> int:
    """Maria's post, triaged and routed with explanations and a reason that quote it."""
    post = NormalizedMention(platform="x", external_id="2001", text=WORDS, created_at=T0, author_id="id-marial",
                             author_handle="MariaL", author_name="Maria Lopez", url="https://x.com/MariaL/status/2001",
                             raw={"id": "2001", "text": WORDS})
    async with db.session() as s:
        [res] = await ingest_batch(s, [post])
        s.add(TriageResult(mention_id=res.mention_id, model_version="t", sentiment="negative", sensitivity="none",
                           issue_type="billing", toxicity="none", spam="ham", pii_exposed=False, priority=0.5,
                           scores={"sentiment": {"label": "negative", "score": 0.9, "explanation": ["'zqx'"]}}))
        s.add(RouteDecision(mention_id=res.mention_id, outcome="agent_queue", reason="shares 'zqx card' with an answer",
                            confidence=0.5, router_version="t"))
        await s.commit()
    return res.mention_id


async def subscribed(db) -> None:
    async with db.session() as s:
        s.add(WebhookSubscription(name="crm-bot", url="http://127.0.0.1:9/hook", secret="a secret of enough length",
                                  created_by="test", events=["mention.triaged", "mention.routed"],
                                  created_at=utcnow() - timedelta(hours=1)))
        await s.commit()
    await webhooks_out.scan(db, now=later())  # the watermarks exist: the next scan announces what follows


def later() -> datetime:
    return utcnow() + timedelta(seconds=5)  # past the scanner's settle delay


async def erase_her(db) -> None:
    await erasure.erase(db, Subject(platform="x", handle="MariaL"), actor="dpo", reason="art 17", secret=SECRET)


async def written(db) -> list[WebhookDelivery]:
    async with db.session() as s:
        return list(await s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def assert_stubs(deliveries: list[WebhookDelivery], mention_id: int) -> None:
    assert {d.event_type for d in deliveries} == {"mention.triaged", "mention.routed"}
    for d in deliveries:
        assert "zqx" not in json.dumps(d.payload) and "maria" not in json.dumps(d.payload).lower(), d.payload
        assert d.payload["data"] == {"mention_id": mention_id, "erased": True}
        assert d.payload["id"] == d.event_id and d.payload["type"] == d.event_type  # the receiver still hears of it


async def test_a_scan_that_read_a_post_before_its_erasure_commits_only_the_erasures_stub(any_db, monkeypatch):
    """The scanner builds the post's event, the erasure commits (no delivery to stub yet), then the
    scanner writes: it checks again before committing."""
    await subscribed(any_db)
    mention_id = await her_post(any_db)
    source = webhooks_out.SOURCES["mention.triaged"]

    async def build_then_erase(session, row):
        data = await source.build(session, row)
        assert "zqx" in json.dumps(data)
        await erase_her(any_db)  # another transaction, committed
        return data

    monkeypatch.setitem(webhooks_out.SOURCES, "mention.triaged", dataclasses.replace(source, build=build_then_erase))
    assert await webhooks_out.scan(any_db, now=later()) == 2
    assert_stubs(await written(any_db), mention_id)


async def test_an_erasure_waits_for_a_scan_about_to_commit_and_then_stubs_its_deliveries(any_db, monkeypatch):
    """The other order: the scan has written (SQLite) or locked the post ``FOR SHARE``
    (PostgreSQL) and checked; the erasure waits for its commit, then stubs what it wrote."""
    await subscribed(any_db)
    mention_id = await her_post(any_db)
    checked, go = asyncio.Event(), asyncio.Event()
    respect = webhooks_deleted.respect_removal

    async def hold(session, deliveries):
        await respect(session, deliveries)
        checked.set()
        await go.wait()

    monkeypatch.setattr(webhooks_deleted, "respect_removal", hold)
    scanning = asyncio.create_task(webhooks_out.scan(any_db, now=later()))
    await asyncio.wait_for(checked.wait(), 10)
    erasing = asyncio.create_task(erase_her(any_db))
    await asyncio.sleep(0.5)
    assert not erasing.done()  # waits for the scan's transaction
    go.set()
    assert await scanning == 2
    await asyncio.wait_for(erasing, 10)
    assert_stubs(await written(any_db), mention_id)
