"""The ingest API answers 503 within ``webhook_publish_timeout_seconds`` when the bus does not take its
posts (not after the bus's 30 s of retries), and the background loops that meet Redis or the database
away (live events, the bus's retries, the digest scheduler) log one line per back-off, not one a try."""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from console import events
from console.app import create_app
from models import Mention
from service import outages
from service.runtime import Runtime
from service.settings import load_settings
from service.stages.base import StageContext
from service.stages.ingest import IngestStage
from service.workers import StageWorker
from tests.console.conftest import NoTriage
from tests.tcp_proxy import TcpProxy

LOCAL = {"Authorization": "Bearer local-ingest-token", "Content-Type": "application/x-ndjson"}
LINE = b'{"platform": "x", "external_id": "hang-1", "text": "charged twice", "created_at": "2026-11-20T08:00:00Z"}'
BOUND = 0.3


@pytest.fixture(autouse=True)
def fresh_outage_log(monkeypatch):
    """Each test meets its outages first: an earlier test's back-off does not hide its line."""
    monkeypatch.setattr(outages, "OUTAGES", outages.OutageLog())


def lines_of(caplog, logger: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger]


async def test_ingest_answers_503_within_the_bound_and_the_retry_records_nothing_twice(tmp_path, sqlite_url, caplog):
    from console.webhooks_out import SENDER

    settings = load_settings(database_url=sqlite_url, bus="inprocess", var_dir=tmp_path / "var", demo=False,
                             dry_run=True, bus_block_ms=50, cookie_secure=False,
                             webhook_publish_timeout_seconds=BOUND)
    rt = await Runtime.open(settings, stages=[], with_connectors=False, triager=NoTriage())
    rt.ingest_token = "local-ingest-token"
    await rt.bus.ensure_group("ingest", "ingest")
    real, calls = rt.bus.publish_many, []

    async def publish_then_hang(*args, **kwargs):  # the worst case: the posts went out, the answer never came
        calls.append(args)
        result = await real(*args, **kwargs)
        if len(calls) == 1:
            await asyncio.Event().wait()
        return result

    rt.bus.publish_many = publish_then_hang
    caplog.set_level(logging.INFO, logger="socialcare")
    try:
        async with TestClient(TestServer(create_app(rt))) as client:
            await client.server.app[SENDER].stop()
            started = time.monotonic()
            r = await asyncio.wait_for(client.post("/api/v1/ingest", data=LINE, headers=LOCAL), BOUND + 5)
            elapsed = time.monotonic() - started
            assert r.status == 503 and elapsed < BOUND + 2, (r.status, elapsed)
            assert r.headers["Retry-After"] == str(outages.RETRY_AFTER_S)
            assert r.content_type == "application/json" and (await r.json())["error"]["status"] == 503
            r = await client.post("/api/v1/ingest", data=LINE, headers=LOCAL)  # the client's retry
            assert r.status == 202 and (await r.json()) == {"accepted": 1}
        assert len(calls) == 2 and await rt.bus.lag("ingest", "ingest") == 2  # both copies on the bus
        worker = StageWorker(rt.bus, IngestStage(StageContext(settings=settings, db=rt.db)), batch_size=50,
                             block_ms=10)
        while await worker.run_once():
            pass
        async with rt.db.session() as s:
            assert await s.scalar(select(func.count()).select_from(Mention)
                                  .where(Mention.external_id == "hang-1")) == 1
        web_lines = lines_of(caplog, "socialcare.web")
        assert len(web_lines) == 1 and web_lines[0].levelno == logging.WARNING
        assert not (web_lines[0].exc_info or web_lines[0].exc_text)
        assert "POST /api/v1/ingest" in web_lines[0].getMessage()
    finally:
        await rt.close()


async def test_live_events_log_one_line_while_redis_refuses_then_resume(redis_url, bus_prefix, monkeypatch, caplog):
    from tests.redis_keys import delete_redis_keys

    monkeypatch.setattr(events, "READ_RETRY_S", 0.02, raising=False)
    proxy, url = await TcpProxy.before(redis_url)
    await proxy.set("down")
    hub = events.RedisEventHub(url, f"{bus_prefix}:console-events")
    reads = []
    real_xread = hub.client.xread

    async def counted_xread(*args, **kwargs):
        reads.append(1)
        return await real_xread(*args, **kwargs)

    hub.client.xread = counted_xread
    caplog.set_level(logging.INFO, logger="socialcare")
    try:
        await hub.start()
        deadline = time.monotonic() + 10
        while len(reads) < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for _ in range(20):  # the console's own events, not published meanwhile
            hub("mention.updated", [1])
        await asyncio.sleep(0.1)
        assert len(reads) >= 4
        logged = lines_of(caplog, "socialcare.events")
        assert len(logged) == 1, [r.getMessage() for r in logged]
        assert logged[0].levelno == logging.WARNING and not (logged[0].exc_info or logged[0].exc_text)
        assert "Redis is unavailable" in logged[0].getMessage()

        await proxy.set("up")
        async with hub.subscribe() as queue:
            got = None
            deadline = time.monotonic() + 10
            while got is None and time.monotonic() < deadline:
                hub("mention.updated", [7])
                try:
                    got = await asyncio.wait_for(queue.get(), timeout=0.5)
                except TimeoutError:
                    pass
            assert got is not None and got["ids"] == [7]
    finally:
        await hub.close()
        await proxy.close()
        delete_redis_keys(redis_url, bus_prefix)


async def test_the_bus_logs_one_line_over_its_retries_not_one_a_try(redis_url, bus_prefix, caplog):
    from service.bus.base import BusUnavailable
    from service.bus.redis_streams import RedisStreamsBus

    proxy, url = await TcpProxy.before(redis_url)
    await proxy.set("down")
    bus = RedisStreamsBus(url, prefix=bus_prefix, retry_seconds=1.0)  # 5 to 6 retries before it gives up
    caplog.set_level(logging.INFO, logger="socialcare")
    try:
        with pytest.raises(BusUnavailable):
            await bus.publish("ingest", {"x": 1}, "k1")
        logged = lines_of(caplog, "socialcare.bus")
        assert len(logged) == 1 and logged[0].levelno == logging.WARNING, [r.getMessage() for r in logged]
        assert "Redis is unavailable" in logged[0].getMessage()
    finally:
        await bus.close()
        await proxy.close()


async def test_the_digest_scheduler_logs_one_line_without_a_traceback_while_the_database_is_away(caplog):
    import sqlite3

    from sqlalchemy import exc as sa

    from console import digest_schedule
    from console.keys import RUNTIME

    passes = []

    class LockedDb:
        def session(self):
            passes.append(1)
            raise sa.OperationalError("SELECT digest_schedules", {}, sqlite3.OperationalError("database is locked"))

    app = web.Application()
    app[RUNTIME] = SimpleNamespace(db=LockedDb(), settings=SimpleNamespace())
    digest_schedule.install(app, interval_s=0.01)
    caplog.set_level(logging.INFO, logger="socialcare")
    for start in app.on_startup:
        await start(app)
    try:
        deadline = time.monotonic() + 10
        while len(passes) < 10 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        for stop in app.on_shutdown:
            await stop(app)
    assert len(passes) >= 10
    logged = lines_of(caplog, "socialcare.digest")
    assert len(logged) == 1 and not (logged[0].exc_info or logged[0].exc_text), [r.getMessage() for r in logged]
    assert "the database is unavailable" in logged[0].getMessage()
