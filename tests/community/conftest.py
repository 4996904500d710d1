"""Fixtures for the community tests: a migrated database with the demo knowledge base, a builder
that stores mentions with the triage scores a test wants, the route and act stages, and a fake
connector that records every action it is asked to perform."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from community.knowledge import import_folder
from listener.ingest import ingest_batch
from listener.protocol import ActionResult, NormalizedMention
from models import Mention, TriageResult
from models.db import Database
from service.bus import Envelope
from service.settings import load_settings
from service.stages.act import ActStage
from service.stages.base import StageContext
from service.stages.route import RouteStage

DEMO = Path(__file__).resolve().parents[2] / "service" / "demo"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
_ids = itertools.count(1)


class RecordingConnector:
    """Stands in for a platform: records every ``perform`` call and answers like the platform
    would (an id for a posted reply); ``fail`` makes every call fail as a refused API call."""

    def __init__(self, platform: str, fail: bool = False) -> None:
        self.name = f"fake-{platform}"
        self.platform = platform
        self.fail = fail
        self.calls: list[Any] = []

    async def perform(self, action: Any) -> ActionResult:
        self.calls.append(action)
        if self.fail:
            return ActionResult(ok=False, error="403 Forbidden")
        if action.kind in ("public_reply", "private_message"):
            return ActionResult(ok=True, external_ids=[f"r{len(self.calls)}"])
        return ActionResult(ok=True)

    def kinds(self) -> list[str]:
        return [a.kind for a in self.calls]


def scores(issue: str = "account_access", issue_p: float = 0.9, *, sentiment: str = "neutral",
           sensitivity: str = "none", toxicity: float = 0.02, spam: float = 0.01,
           pii: list[dict] | None = None) -> dict:
    """Triage output as the triage stage stores it (``TriageResult.scores``)."""
    def score(label: str, p: float, probs: dict) -> dict:
        return {"label": label, "score": p, "model": "test", "version": "1", "probabilities": probs,
                "explanation": []}
    return {
        "sentiment": score(sentiment, 0.9, {sentiment: 0.9}),
        "sensitivity": score(sensitivity, 0.9, {sensitivity: 0.9}),
        "issue_type": score(issue, issue_p, {issue: issue_p}),
        "toxicity": score("offensive" if toxicity >= 0.5 else "not_offensive", max(toxicity, 1 - toxicity),
                          {"offensive": toxicity, "not_offensive": 1 - toxicity}),
        "spam": score("spam" if spam >= 0.5 else "ham", max(spam, 1 - spam), {"spam": spam, "ham": 1 - spam}),
        "pii": pii or [],
    }


class World:
    """Stores mentions with chosen triage scores and runs the real route and act stages on them."""

    def __init__(self, db: Database, settings: Any, connectors: dict[str, RecordingConnector]) -> None:
        self.db, self.settings, self.connectors = db, settings, connectors
        self.ctx = StageContext(settings=settings, db=db, connectors=connectors)
        self.route = RouteStage(self.ctx, refresh_s=0.0)
        self.act = ActStage(self.ctx, refresh_s=0.0)

    async def mention(self, text: str, *, platform: str = "x", author: str | None = None, at: datetime | None = None,
                      is_public: bool = True, in_reply_to: str | None = None, conversation: str | None = None,
                      raw: dict | None = None, channel: str | None = None, followers: int | None = 100,
                      account_created_at: datetime | None = None, **triage: Any) -> Mention:
        n = next(_ids)
        eid = f"{platform}-{n}"
        author = author or f"user{n}"
        nm = NormalizedMention(
            platform=platform, external_id=eid, text=text, created_at=at or T0 + timedelta(seconds=n),
            author_id=f"id-{author}", author_handle=author, author_name=author.title(), author_followers=followers,
            author_created_at=account_created_at or datetime(2019, 1, 1, tzinfo=timezone.utc),
            conversation_id=conversation or in_reply_to or eid, in_reply_to=in_reply_to,
            url=f"https://{platform}.example/{eid}", is_public=is_public, channel=channel, raw=raw or {},
            kind="comment" if in_reply_to else "post")
        sc = scores(**triage)
        async with self.db.session() as s:
            [res] = await ingest_batch(s, [nm])
            s.add(TriageResult(
                mention_id=res.mention_id, model_version="test", sentiment=sc["sentiment"]["label"],
                sensitivity=sc["sensitivity"]["label"], escalate=sc["sensitivity"]["label"] in ("security", "fraud"),
                issue_type=sc["issue_type"]["label"], toxicity=sc["toxicity"]["label"], spam=sc["spam"]["label"],
                pii_exposed=bool(sc["pii"]) and is_public, scores=sc))
            await s.commit()
            return await s.get(Mention, res.mention_id)

    async def run(self, *mentions: Mention) -> None:
        """Route then act on the mentions, as one batch each (what the pipeline does)."""
        envs = [Envelope(id=str(m.id), topic="route", key=f"m:{m.id}", payload={"mention_id": m.id}) for m in mentions]
        await self.route.handle(envs)
        await self.act.handle([Envelope(id=e.id, topic="act", key=e.key, payload=e.payload) for e in envs])

    async def get(self, model: Any, **where: Any) -> list[Any]:
        async with self.db.session() as s:
            q = select(model)
            for k, v in where.items():
                q = q.where(getattr(model, k) == v)
            return list(await s.scalars(q))


@pytest.fixture
async def db(sqlite_url):
    database = Database(sqlite_url)
    await database.upgrade()
    async with database.session() as s:
        await import_folder(s, DEMO / "kb", DEMO / "templates")
        await s.commit()
    yield database
    await database.close()


def community_settings(tmp_path: Path, **overrides: Any) -> Any:
    values: dict[str, Any] = dict(var_dir=tmp_path / "var", demo=False, dry_run=False, cookie_secure=False,
                                  auto_answer_threshold=0.55, reddit_subreddits=["acme"])  # the brand's own
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def connectors() -> dict[str, RecordingConnector]:
    return {p: RecordingConnector(p) for p in ("x", "reddit", "discourse")}


@pytest.fixture
def make_world(db, connectors, tmp_path):
    def make(**overrides: Any) -> World:
        return World(db, community_settings(tmp_path, **overrides), connectors)
    return make


@pytest.fixture
def world(make_world) -> World:
    return make_world()
