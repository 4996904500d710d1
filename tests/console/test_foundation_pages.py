"""The console answers health checks, signs people in and lists routed mentions, escaped."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import TestClient, TestServer

from console.app import create_app
from console.auth import create_api_token, create_user
from console.keys import RUNTIME
from models import Author, Mention, RouteDecision, TriageResult
from service.runtime import Runtime


class NoTriage:
    model_version = "none"


@pytest.fixture
async def client(embedded_settings):
    rt = await Runtime.open(embedded_settings, stages=[], with_connectors=False, triager=NoTriage())
    async with rt.db.session() as s:
        await create_user(s, "alice", "correct horse battery", "agent")
        await create_user(s, "mia", "marketing password", "marketing")
        a = Author(platform="x", author_key="1", handle="mallory")
        s.add(a)
        await s.flush()
        m = Mention(platform="x", external_id="1", author_id=a.id, text="<script>alert(1)</script> card 4111 1111 1111 1111",
                    created_at=datetime(2026, 11, 20, tzinfo=UTC), content_hash="h")
        s.add(m)
        await s.flush()
        s.add(TriageResult(mention_id=m.id, model_version="t", sentiment="negative", sensitivity="fraud",
                           escalate=True, issue_type="fraud", toxicity="not_offensive", spam="ham", pii_exposed=True,
                           priority=90, scores={"pii": [{"type": "card_number", "start": 31, "end": 50}]}))
        s.add(RouteDecision(mention_id=m.id, outcome="escalate_private", reason="sensitivity is fraud",
                            router_version="t"))
        await s.commit()
    async with TestClient(TestServer(create_app(rt))) as c:
        yield c
    await rt.close()


async def login(client, username, password):
    return await client.post("/login", data={"username": username, "password": password, "next": "/mentions"},
                             allow_redirects=False)


async def test_health_and_readiness(client):
    assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
    ready = await client.get("/readyz")
    body = await ready.json()
    assert body["checks"]["database"] is True and body["checks"]["bus"] is True


async def test_the_mentions_page_needs_a_signed_in_user(client):
    r = await client.get("/mentions", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"].startswith("/login")
    api = await client.get("/api/v1/mentions")
    assert api.status == 401 and (await api.json())["error"]["status"] == 401


async def test_wrong_password_is_refused(client):
    r = await login(client, "alice", "wrong password!")
    assert r.status == 401 and "sc_session" not in r.cookies


async def test_routed_mentions_are_listed_escaped_and_redacted(client):
    r = await login(client, "alice", "correct horse battery")
    assert r.status == 302
    page = await client.get("/mentions")
    html = await page.text()
    assert page.status == 200 and "escalate_private" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "4111 1111 1111 1111" not in html
    api = await (await client.get("/api/v1/mentions?outcome=escalate_private")).json()
    assert [m["route"]["outcome"] for m in api["mentions"]] == ["escalate_private"]
    assert "4111" not in api["mentions"][0]["text"]


async def test_a_forged_session_cookie_is_ignored(client):
    client.session.cookie_jar.update_cookies({"sc_session": "eyJ1aWQiOjF9.forged.sig"})
    r = await client.get("/mentions", allow_redirects=False)
    assert r.status == 302


async def test_unknown_filter_is_a_json_400(client):
    await login(client, "alice", "correct horse battery")
    r = await client.get("/api/v1/mentions?outcome=nope")
    assert r.status == 400 and (await r.json())["error"]["message"]


async def test_metrics_need_an_admin_or_a_metrics_token(client):
    # a browser is sent to sign in; a scraper (Prometheus asks for text, not HTML) is told why, in JSON
    browser = await client.get("/metrics", allow_redirects=False, headers={"Accept": "text/html,*/*;q=0.8"})
    assert browser.status == 302 and browser.headers["Location"].startswith("/login")
    scraper = await client.get("/metrics", allow_redirects=False, headers={
        "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"})
    assert scraper.status == 401 and scraper.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await scraper.json())["error"] == {"status": 401, "message": "authentication required"}
    rt = client.server.app[RUNTIME]
    async with rt.db.session() as s:
        bot = await create_user(s, "prometheus", "scraper password", "admin")
        token = await create_api_token(s, bot, "scraper", ["metrics"])
        await s.commit()
    r = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200 and "socialcare_stage_pending" in await r.text()
    for accept in ("text/html", "text/plain"):  # a forged or expired token is refused, never sent to a form
        bad = await client.get("/metrics", headers={"Authorization": "Bearer sc_not-a-real-token", "Accept": accept},
                               allow_redirects=False)
        assert bad.status == 401 and (await bad.json())["error"]["message"] == "invalid or expired token"
    page = await client.get("/queue", headers={"Authorization": "Bearer sc_not-a-real-token"}, allow_redirects=False)
    assert page.status == 401  # a console page too: whoever sent a token is a program
