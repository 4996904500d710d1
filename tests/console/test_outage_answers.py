"""While PostgreSQL or Redis is away, each client is told so in its own form: 503 with Retry-After in
JSON for a bot, in the console's page for an agent, in the secure channel's page for a customer; the
probes answer (/healthz 200, /readyz 503) whatever cookie they carry; the log has one WARNING line
per back-off and no traceback, however many requests met the outage. A frozen database host (a
black hole, no reset) fails requests and readiness in seconds instead of hanging them. The outages
are played by a TCP proxy of the test's own (tests/tcp_proxy.py) in front of the shared servers."""

from __future__ import annotations

import logging
import time

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

import models.db
from console.app import create_app
from console.auth import create_user
from service import outages
from service.runtime import Runtime
from service.settings import load_settings
from tests.console.conftest import NoTriage, bot_token, login
from tests.tcp_proxy import TcpProxy

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
A_LINK = "/secure/" + "A" * 43  # the shape of a customer's secure link (none is needed: the database is away)
PASSWORDS = {"alice": "alice password 1", "root": "admin password 5"}


@pytest.fixture(autouse=True)
def fresh_outage_log(monkeypatch):
    """Each test meets its outages first: the back-off of an earlier test's does not hide its line."""
    monkeypatch.setattr(outages, "OUTAGES", outages.OutageLog())


async def _console(settings):
    rt = await Runtime.open(settings, stages=[], with_connectors=False, triager=NoTriage())
    async with rt.db.session() as s:
        await create_user(s, "alice", PASSWORDS["alice"], "agent")
        await create_user(s, "root", PASSWORDS["root"], "admin")
        await s.commit()
    return rt


@pytest.fixture
async def pg_console(tmp_path, postgres_url):
    """The console on PostgreSQL reached through a proxy the test controls: (client, runtime, proxy)."""
    from console.webhooks_out import SENDER

    proxy, url = await TcpProxy.before(postgres_url)
    settings = load_settings(database_url=url, bus="inprocess", var_dir=tmp_path / "var", demo=False,
                             dry_run=True, bus_block_ms=50, cookie_secure=False)
    rt = await _console(settings)
    try:
        async with TestClient(TestServer(create_app(rt))) as client:
            await client.server.app[SENDER].stop()
            yield client, rt, proxy
    finally:
        await proxy.set("up")
        await rt.close()
        await proxy.close()


def _outage_lines(caplog, logger: str = "socialcare.web") -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger and "unavailable" in r.getMessage()]


async def test_while_postgresql_refuses_each_client_gets_503_with_retry_after_in_its_own_form(pg_console, caplog):
    client, rt, proxy = pg_console
    token = await bot_token(rt, "alice", ["mentions:read"])
    await login(client, "alice")  # the agent's browser: a session cookie from now on
    caplog.set_level(logging.INFO, logger="socialcare")
    await proxy.set("down")

    r = await client.get("/api/v1/mentions", headers={"Authorization": f"Bearer {token}"})  # a bot
    assert r.status == 503 and r.headers["Retry-After"] == str(outages.RETRY_AFTER_S)
    assert (await r.json())["error"] == {"status": 503, "message": "The database is unavailable right now; "
                                                                   "try again in a few seconds."}
    r = await client.get("/queue", headers=HTML)  # the agent
    page = await r.text()
    assert r.status == 503 and r.content_type == "text/html" and r.headers["Retry-After"]
    assert "<h1>503 Service Unavailable</h1>" in page and "The database is unavailable" in page
    async with aiohttp.ClientSession() as customer:  # the customer's own browser, opening a secure link
        async with customer.get(client.make_url(A_LINK), headers=HTML) as r:
            page = await r.text()
            assert r.status == 503 and r.content_type == "text/html" and r.headers["Retry-After"]
            assert "We&#39;ll be right back" in page or "We'll be right back" in page
            assert "<nav>" not in page and r.headers["Cache-Control"] == "no-store"
    r = await client.post("/secure/code", headers=HTML, data={"code": "123456"})  # a customer's form
    assert r.status == 503 and r.content_type == "text/html" and "Secure support" in await r.text()

    r = await client.get("/readyz")  # the probes, with the agent's cookie: no sign-in is looked up
    assert r.status == 503 and (await r.json()) == {"ready": False, "checks": {"database": False, "bus": True}}
    r = await client.get("/healthz")
    assert r.status == 200 and (await r.json()) == {"status": "ok"}

    web = _outage_lines(caplog)
    assert len(web) == 1 and web[0].levelno == logging.WARNING, [r.getMessage() for r in web]
    assert "the database is unavailable" in web[0].getMessage() and "GET /api/v1/mentions" in web[0].getMessage()
    covered = ("socialcare.web", "socialcare.webhooks", "socialcare.dispatch")  # requests, sender, pacer
    assert not any(r.exc_info or r.exc_text for r in caplog.records if r.name in covered)
    assert not any("unhandled error" in r.getMessage() for r in caplog.records)

    await proxy.set("up")  # back: the pool's dead connections are replaced, nothing stays broken
    r = await client.get("/api/v1/mentions", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200, await r.text()
    assert (await client.get("/readyz")).status == 200


async def test_while_the_postgresql_host_is_frozen_requests_and_readiness_fail_in_seconds(
        tmp_path, postgres_url, monkeypatch, caplog):
    """A black hole: no refusal, no reset. Without timeouts a request (and /readyz) waits for the
    kernel to give up on the connection, many minutes; here they are answered within the bounds
    models.db sets (shortened for the test: the same code reads them)."""
    from console.webhooks_out import SENDER

    monkeypatch.setattr(models.db, "PG_COMMAND_TIMEOUT_S", 2.0, raising=False)
    monkeypatch.setattr(models.db, "PG_CONNECT_TIMEOUT_S", 1.0, raising=False)
    ping_bound = getattr(models.db, "PING_TIMEOUT_S", 3.0)
    patience = aiohttp.ClientTimeout(total=30)  # without the bounds: a timeout here, not a hung test
    proxy, url = await TcpProxy.before(postgres_url)
    settings = load_settings(database_url=url, bus="inprocess", var_dir=tmp_path / "var", demo=False,
                             dry_run=True, bus_block_ms=50, cookie_secure=False)
    rt = await _console(settings)
    try:
        token = await bot_token(rt, "alice", ["mentions:read"])
        async with TestClient(TestServer(create_app(rt))) as client:
            await client.server.app[SENDER].stop()
            headers = {"Authorization": f"Bearer {token}"}
            assert (await client.get("/api/v1/mentions", headers=headers)).status == 200  # a pooled connection
            await proxy.set("hang")
            started = time.monotonic()
            r = await client.get("/readyz", timeout=patience)
            assert r.status == 503 and (await r.json())["checks"]["database"] is False
            assert time.monotonic() - started < ping_bound + 2
            started = time.monotonic()
            r = await client.get("/api/v1/mentions", headers=headers, timeout=patience)
            assert r.status == 503 and r.headers["Retry-After"], await r.text()
            assert time.monotonic() - started < 2.0 + 1.0 + 5  # one statement's bound, one connect's, slack
            assert (await client.get("/healthz")).status == 200
            await proxy.set("up")
            r = await client.get("/api/v1/mentions", headers=headers)
            assert r.status == 200, await r.text()
            assert (await client.get("/readyz")).status == 200
    finally:
        await proxy.set("up")
        await rt.close()
        await proxy.close()


async def test_while_redis_is_away_ingest_is_refused_503_with_retry_after(tmp_path, sqlite_url, redis_url, bus_prefix,
                                                                          caplog):
    """The web process's bus gives up after its retry window (shortened here; 30 s by default) and
    the bot is told to come back, in JSON, instead of a 500."""
    from console.webhooks_out import SENDER
    from tests.redis_keys import delete_redis_keys

    proxy, url = await TcpProxy.before(redis_url)
    settings = load_settings(database_url=sqlite_url, bus="redis", redis_url=url, bus_prefix=bus_prefix,
                             var_dir=tmp_path / "var", demo=False, dry_run=True, bus_block_ms=50,
                             cookie_secure=False)
    rt = await _console(settings)
    try:
        rt.bus.retry_seconds = 0.5
        token = await bot_token(rt, "root", ["ingest"])
        async with TestClient(TestServer(create_app(rt))) as client:
            await client.server.app[SENDER].stop()
            caplog.set_level(logging.INFO, logger="socialcare")
            await proxy.set("down")
            line = ('{"platform": "webhook", "external_id": "r1", "text": "hello", '
                    '"created_at": "2026-01-01T00:00:00Z"}')
            for _ in range(3):
                r = await client.post("/api/v1/ingest", data=line, headers={"Authorization": f"Bearer {token}",
                                                                            "Content-Type": "application/x-ndjson"})
                assert r.status == 503 and r.headers["Retry-After"] == str(outages.RETRY_AFTER_S)
                assert "Redis" in (await r.json())["error"]["message"]
            assert len(_outage_lines(caplog)) == 1
            assert not any("unhandled error" in r.getMessage() for r in caplog.records)
            r = await client.get("/readyz")
            assert r.status == 503 and (await r.json())["checks"] == {"database": True, "bus": False}
            await proxy.set("up")
            r = await client.post("/api/v1/ingest", data=line, headers={"Authorization": f"Bearer {token}",
                                                                        "Content-Type": "application/x-ndjson"})
            assert r.status == 202, await r.text()
    finally:
        await proxy.set("up")
        await rt.close()
        await proxy.close()
        delete_redis_keys(redis_url, bus_prefix)


async def test_a_token_use_not_recorded_for_an_outage_is_one_line_without_a_traceback(caplog):
    """A bot's request in flight when the connection is cut: the stamp of its token's use fails first."""
    import sqlite3
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from sqlalchemy import exc as sa

    from console.auth import note_token_use

    class CutSession:
        async def execute(self, *args, **kwargs):
            raise sa.DBAPIError("UPDATE api_tokens ...", {}, sqlite3.OperationalError("database is locked"))

        async def rollback(self) -> None:
            pass

    caplog.set_level(logging.INFO, logger="socialcare")
    for _ in range(5):
        await note_token_use(CutSession(), SimpleNamespace(id=7, last_used_at=None), datetime.now(UTC))
    lines = [r for r in caplog.records if r.name == "socialcare.web"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING and not lines[0].exc_info, lines
    assert "recording the use of API token 7" in lines[0].getMessage()
