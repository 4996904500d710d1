"""Nothing stored is left half-done by a process that went away. An embedded stop drains the ingest
queue first (its messages are in no database yet); what the later in-process queues still held is
resumed from the database when `socialcare run` starts again, each post triaged, routed and acted
on once. A stored post's ingest message redelivered after its worker died before passing it on
(either bus) sends the post on to triage. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from listener.protocol import NormalizedMention
from models import Mention, Reply, RouteDecision, TriageResult
from service.bus import Envelope
from service.resume import unfinished
from service.runtime import Runtime
from service.stages.base import StageContext
from service.stages.ingest import IngestStage

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
TEXTS = ["@AcmeHelp how do I reset my password? the email never arrives",
         "@AcmeHelp love the new update, the playlists are great",
         "@AcmeHelp when will my order arrive? it shipped 4 days ago"]


def posts(n: int) -> list[NormalizedMention]:
    return [NormalizedMention(platform="x", external_id=str(5000 + i), text=f"{TEXTS[i % 3]} #{i}",
                              created_at=T0 + timedelta(seconds=i), author_id=str(i % 11),
                              author_handle=f"fan{i % 11}") for i in range(n)]


class SlowTriager:
    """The real triager, a second a call: the triage queue is still full at the stop."""

    def __init__(self, inner) -> None:  # noqa: ANN001
        self.inner = inner
        self.model_version = inner.model_version

    async def score_batch(self, inputs):  # noqa: ANN001, ANN201
        await asyncio.sleep(1.0)
        return await self.inner.score_batch(inputs)


async def counted(db) -> dict[str, int]:  # noqa: ANN001
    async with db.session() as s:
        return {"mentions": await s.scalar(select(func.count()).select_from(Mention)),
                "triaged": await s.scalar(select(func.count()).select_from(TriageResult)),
                "decided": await s.scalar(select(func.count()).select_from(RouteDecision)),
                "acted": await s.scalar(select(func.count()).select_from(RouteDecision)
                                        .where(RouteDecision.acted_at.is_not(None))),
                "reply_keys": await s.scalar(select(func.count(func.distinct(Reply.dedup_key)))),
                "replies": await s.scalar(select(func.count()).select_from(Reply))}


async def test_a_stop_that_leaves_the_queues_full_loses_nothing_the_next_start_resumes_it(
        embedded_settings, any_database_url, triager, caplog):
    settings = embedded_settings.model_copy(update={"database_url": any_database_url, "shutdown_drain_seconds": 0.3,
                                                    "shutdown_batch_seconds": 5.0, "bus_batch_size": 20})
    n = 120
    rt = await Runtime.open(settings, triager=SlowTriager(triager), with_connectors=False)
    await rt.start()
    await rt.submit(posts(n))
    for _ in range(600):  # every post stored (the ingest queue drained), triage far behind
        if (await counted(rt.db))["mentions"] == n:
            break
        await asyncio.sleep(0.05)
    caplog.set_level(logging.INFO, logger="socialcare")
    await rt.close()  # SIGTERM with a backlog: ingest drained, the triage queue not
    assert "resumed from the database at the next start" in caplog.text
    assert "lost with this process" not in caplog.text
    rt = await Runtime.open(settings, triager=triager, with_connectors=False)
    try:
        before = await counted(rt.db)
        assert before["mentions"] == n and before["triaged"] < n  # stored, half of them never triaged
        await rt.start()
        await rt.pipeline.wait_idle(timeout=120)
        after = await counted(rt.db)
    finally:
        await rt.close()
    assert after["mentions"] == after["triaged"] == after["decided"] == after["acted"] == n
    assert after["replies"] == after["reply_keys"]  # nothing sent twice
    assert "resuming work a previous process left unfinished" in caplog.text


async def test_only_unfinished_live_work_is_resumed_each_at_its_stage(any_db):
    ids = {}
    async with any_db.session() as s:
        for name, flags in (("stored", {}), ("triaged", {}), ("routed", {}), ("done", {}),
                            ("deleted", {"deleted": True})):
            m = Mention(platform="x", external_id=name, text=f"post {name}", created_at=T0, content_hash=name, **flags)
            s.add(m)
            await s.flush()
            ids[name] = m.id
        for name in ("triaged", "routed", "done"):
            s.add(TriageResult(mention_id=ids[name], model_version="t", sentiment="neutral", sensitivity="none",
                               escalate=False, issue_type="other", toxicity="not_offensive", spam="ham",
                               pii_exposed=False, language="en", priority=1.0, scores={}))
        s.add(RouteDecision(mention_id=ids["routed"], outcome="agent_queue", reason="r", router_version="t"))
        s.add(RouteDecision(mention_id=ids["done"], outcome="ignore", reason="r", router_version="t",
                            acted_at=T0))
        await s.commit()
    work = await unfinished(any_db)
    assert [(k, p["mention_id"]) for k, p in work["triage"]] == [(f"m:{ids['stored']}", ids["stored"])]
    assert [p["mention_id"] for _, p in work["route"]] == [ids["triaged"]]
    assert [(p["mention_id"], p["outcome"]) for _, p in work["act"]] == [(ids["routed"], "agent_queue")]


async def test_a_stored_post_whose_message_comes_again_untriaged_goes_on_to_triage(any_db):
    """The worker stored the post and died before passing it on: the redelivery finds a duplicate,
    which goes on to triage while it has no triage result, and only then."""
    stage = IngestStage(StageContext(settings=None, db=any_db))
    [post] = posts(1)
    env = Envelope(id="1", topic="ingest", key="x:5000", payload={"mention": post.to_dict(), "t0": 1.0})
    [first] = await stage.handle([env])  # passed on, then lost with the worker
    [again] = await stage.handle([Envelope(id="2", topic="ingest", key=env.key, payload=env.payload, attempts=2)])
    assert (again.topic, again.payload["mention_id"]) == ("triage", first.payload["mention_id"])
    async with any_db.session() as s:
        s.add(TriageResult(mention_id=first.payload["mention_id"], model_version="t", sentiment="neutral",
                           sensitivity="none", escalate=False, issue_type="other", toxicity="not_offensive",
                           spam="ham", pii_exposed=False, language="en", priority=1.0, scores={}))
        await s.commit()
    assert await stage.handle([Envelope(id="3", topic="ingest", key=env.key, payload=env.payload)]) == []
