"""Helpers of the privacy tests: a database with people in it, built through the real code paths
(ingest, the route and act stages, the case chat, moderation, the webhook scanner), and a dump of
every column of every table to search for what an erasure must have removed."""

from __future__ import annotations

import asyncio
import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from listener.ingest import ingest_batch
from listener.protocol import ActionResult, NormalizedMention
from models import Base, Mention, TriageResult
from service.bus import Envelope
from service.pipeline import ingest_key
from service.settings import load_settings
from service.stages.act import ActStage
from service.stages.base import StageContext
from service.stages.route import RouteStage
from tests.redis_keys import delete_redis_keys  # noqa: F401 (the privacy tests import it from here)

DEMO = Path(__file__).resolve().parents[2] / "service" / "demo"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
SECRET_KEY = "privacy-test-secret-0123456789abcdef"
_ids = itertools.count(1)


class FakeConnector:
    """Stands in for a platform and records what it was asked to do."""

    def __init__(self, platform: str) -> None:
        self.name, self.platform, self.calls = f"fake-{platform}", platform, []

    async def perform(self, action: Any) -> ActionResult:
        self.calls.append(action)
        return ActionResult(ok=True, external_ids=[f"r{len(self.calls)}"])


def settings_for(tmp_path: Path, database_url: str, **extra: Any) -> Any:
    values = {"database_url": database_url, "var_dir": tmp_path / "var", "demo": False, "dry_run": True,
              "cookie_secure": False, "secret_key": SECRET_KEY, "auto_answer_threshold": 0.55}
    return load_settings(**(values | extra))


def scores(issue: str, sentiment: str, sensitivity: str, words: list[str], pii: bool = False) -> dict:
    """A triage document as the stage stores it, whose explanations quote ``words`` of the post."""
    def score(label: str) -> dict:
        return {"label": label, "score": 0.9, "model": "test", "version": "1", "probabilities": {label: 0.9},
                "explanation": [f"'{w}'" for w in words]}
    return {"sentiment": score(sentiment), "sensitivity": score(sensitivity), "issue_type": score(issue),
            "toxicity": score("not_offensive") | {"probabilities": {"offensive": 0.01, "not_offensive": 0.99}},
            "spam": score("ham") | {"probabilities": {"spam": 0.01, "ham": 0.99}},
            "pii": [{"type": "email", "start": 0, "end": 3}] if pii else [], "pii_exposed": False, "language": "en",
            "priority": 50.0, "priority_explanation": [f"+10 {words[0]}"] if words else [], "escalate": False}


@dataclass
class World:
    db: Any
    settings: Any
    connectors: dict[str, FakeConnector] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ctx = StageContext(settings=self.settings, db=self.db, connectors=self.connectors)
        self.route, self.act = RouteStage(ctx, refresh_s=0.0), ActStage(ctx, refresh_s=0.0)

    def post(self, text: str, *, author: str, name: str | None = None, user_id: str | None = None,
             platform: str = "x", at: datetime | None = None, **extra: Any) -> NormalizedMention:
        n = next(_ids)
        eid = f"{platform}-{n}"
        return NormalizedMention(
            platform=platform, external_id=eid, text=text, created_at=at or T0 + timedelta(seconds=n),
            author_id=user_id or f"id-{author.lower()}", author_handle=author, author_name=name or author,
            author_followers=10, conversation_id=extra.pop("conversation_id", eid), url=f"https://{platform}.example/{eid}",
            raw={"text": text, "user": {"screen_name": author, "name": name or author}, **extra.pop("raw", {})},
            **extra)

    async def ingest(self, nm: NormalizedMention, *, issue: str = "other", sentiment: str = "neutral",
                     sensitivity: str = "none", words: list[str] | None = None,
                     pii: bool = False) -> int:
        """Ingest a post and store its triage (labels chosen, explanations quoting its words)."""
        async with self.db.session() as s:
            [res] = await ingest_batch(s, [nm])
            sc = scores(issue, sentiment, sensitivity, words if words is not None else nm.text.split()[:2], pii)
            s.add(TriageResult(mention_id=res.mention_id, model_version="test", sentiment=sentiment,
                               sensitivity=sensitivity, escalate=sensitivity in ("security", "fraud"),
                               issue_type=issue, toxicity="not_offensive", spam="ham", pii_exposed=False,
                               priority=50.0, scores=sc))
            await s.commit()
            return res.mention_id

    async def run(self, *ids: int) -> None:
        """Route, then act, as the pipeline does."""
        envs = [Envelope(id=str(i), topic="route", key=f"m:{i}", payload={"mention_id": i}) for i in ids]
        await self.route.handle(envs)
        await self.act.handle([Envelope(id=e.id, topic="act", key=e.key, payload=e.payload) for e in envs])

    async def mention(self, mention_id: int) -> Mention:
        async with self.db.session() as s:
            return await s.get(Mention, mention_id)


async def with_demo_answers(db: Any, tmp_path: Path) -> World:
    """A world whose database holds the demo's articles and templates (replies are written from them)."""
    from community.knowledge import import_folder

    async with db.session() as s:
        await import_folder(s, DEMO / "kb", DEMO / "templates")
        await s.commit()
    return World(db, settings_for(tmp_path, db.url))


class PausedBus:
    """A bus whose dead-letter listing waits until released: an erasure asking it holds its locks on
    the person's posts (the gate on PostgreSQL, the write lock on SQLite) meanwhile."""

    def __init__(self) -> None:
        self.reached, self.release = asyncio.Event(), asyncio.Event()

    async def dead_letters(self, topic=None, limit=100):  # noqa: ANN001, ANN201
        self.reached.set()
        await self.release.wait()
        return []


async def dump(db: Any) -> dict[str, list[str]]:
    """Every row of every table as text (lower-cased): the honest place to look for a value."""
    out: dict[str, list[str]] = {}
    async with db.session() as s:
        for table in Base.metadata.sorted_tables:
            out[table.name] = [repr(tuple(r)).lower() for r in (await s.execute(select(table))).all()]
    return out


RANDOM = re.compile(r"/secure/[a-z0-9_-]+|\$argon2[^'\s,)]*")  # a link's token, a hash: random letters


def found_in(tables: dict[str, list[str]], value: str) -> list[str]:
    """The tables (and rows) where ``value`` (case-insensitive) appears, random tokens left out: a
    secure link's 43 letters hold a three-letter marker such as "zqx" about once in a thousand runs."""
    value = value.lower()
    return [f"{name}: {row[:200]}" for name, rows in tables.items() for row in rows
            if value in RANDOM.sub("", row)]


# --- dead letters -------------------------------------------------------------------------------
async def bury(bus: Any, topic: str, key: str, payload: dict) -> None:
    """Dead-letter one message the way a stage that keeps failing does (``max_deliveries`` 1)."""
    await bus.ensure_group(topic, topic)
    await bus.publish(topic, payload, key)
    [env] = await bus.read(topic, topic, "worker", 10, 0)
    assert await bus.fail(topic, topic, env, "RuntimeError: broke")


async def bury_posts(bus: Any, *posts: NormalizedMention) -> list[str]:
    """Posts dead-lettered on the ingest topic, payloads as connectors submit them; their keys."""
    keys = []
    for nm in posts:
        keys.append(ingest_key(nm))
        await bury(bus, "ingest", keys[-1], {"mention": nm.to_dict(), "t0": 1.0})
    return keys


