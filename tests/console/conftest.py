"""Fixtures for the console: a real app on the embedded runtime, users of every role, and rows."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer

from console.app import create_app
from console.auth import create_api_token, create_user
from models import Author, Conversation, Mention, RouteDecision, TriageResult
from service.runtime import Runtime
from service.settings import load_settings

PASSWORDS = {"alice": "alice password 1", "bob": "bob password 22", "mod": "moderator pass 3",
             "mia": "marketing pass 4", "root": "admin password 5"}
ROLES = {"alice": "agent", "bob": "agent", "mod": "moderator", "mia": "marketing", "root": "admin"}
_seq = itertools.count(1)


class NoTriage:
    """The console tests write triage rows themselves; the runtime needs only a version."""

    model_version = "none"


@pytest.fixture
def console_settings(tmp_path, sqlite_url):
    return load_settings(database_url=sqlite_url, bus="inprocess", var_dir=tmp_path / "var", demo=False,
                         dry_run=True, bus_block_ms=50, cookie_secure=False)


@pytest.fixture
async def runtime(console_settings):
    rt = await Runtime.open(console_settings, stages=[], with_connectors=False, triager=NoTriage())
    async with rt.db.session() as s:
        for name, role in ROLES.items():
            await create_user(s, name, PASSWORDS[name], role)
        await s.commit()
    yield rt
    await rt.close()


@pytest.fixture
async def app_client(runtime):
    from console.webhooks_out import SENDER

    async with TestClient(TestServer(create_app(runtime))) as c:
        await c.server.app[SENDER].stop()  # the tests drive webhook scans and deliveries themselves
        yield c


class Browser:
    """Another browser (own cookie jar) on the same test server: a second agent."""

    def __init__(self, base: str) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True))

    def get(self, path, **kw):
        return self.session.get(path, **kw)

    def post(self, path, **kw):
        return self.session.post(path, **kw)


@pytest.fixture
async def second_browser(app_client):
    b = Browser(str(app_client.make_url("/")).rstrip("/") + "/")
    yield b
    await b.session.close()


async def login(client, username: str) -> str:
    """Sign in; returns the CSRF token the pages carry."""
    r = await client.post("/login", data={"username": username, "password": PASSWORDS[username], "next": "/queue"},
                          allow_redirects=False)
    assert r.status == 302, await r.text()
    return await csrf_of(client)


async def csrf_of(client, path: str = "/mentions") -> str:
    html = await (await client.get(path)).text()
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


async def bot_token(runtime, username: str, scopes: list[str]) -> str:
    async with runtime.db.session() as s:
        from sqlalchemy import select

        from models import User

        user = await s.scalar(select(User).where(User.username == username))
        token = await create_api_token(s, user, f"{username}-bot", scopes)
        await s.commit()
    return token


async def add_mention(runtime, text: str, *, outcome: str = "agent_queue", platform: str = "x",
                      handle: str = "carol", priority: float = 50.0, sentiment: str = "negative",
                      issue_type: str = "billing", sensitivity: str = "none", created_at: datetime | None = None,
                      conversation_id: int | None = None, customer_id: int | None = None,
                      pii: list | None = None, reason: str = "needs an agent") -> Mention:
    n = next(_seq)
    created_at = created_at or datetime.now(UTC) - timedelta(minutes=5)
    async with runtime.db.session() as s:
        from sqlalchemy import select

        author = await s.scalar(select(Author).where(Author.platform == platform, Author.author_key == f"@{handle}"))
        if author is None:
            author = Author(platform=platform, author_key=f"@{handle}", handle=handle, platform_user_id=f"u-{handle}",
                            customer_id=customer_id)
            s.add(author)
            await s.flush()
        if conversation_id is None:
            conv = Conversation(thread_key=f"{platform}:t{n}", platform=platform, created_at=created_at)
            s.add(conv)
            await s.flush()
            conversation_id = conv.id
        m = Mention(platform=platform, external_id=f"e{n}", author_id=author.id, conversation_id=conversation_id,
                    text=text, created_at=created_at, content_hash=f"h{n}", url=f"https://example.invalid/{n}")
        s.add(m)
        await s.flush()
        s.add(TriageResult(
            mention_id=m.id, model_version="test", sentiment=sentiment, sensitivity=sensitivity,
            escalate=sensitivity in ("security", "fraud"), issue_type=issue_type, toxicity="not_offensive",
            spam="ham", pii_exposed=bool(pii), priority=priority,
            scores={"sentiment": {"label": sentiment, "score": 0.91, "explanation": ["word 'refund' (+0.40)"]},
                    "issue_type": {"label": issue_type, "score": 0.8, "explanation": ["matched 'charged twice'"]},
                    "priority_explanation": ["negative sentiment +20"], "pii": pii or []}))
        s.add(RouteDecision(mention_id=m.id, outcome=outcome, reason=reason, router_version="t",
                            created_at=created_at))
        await s.commit()
        return m
