"""Which processes poll the connectors, and a graceful stop of the embedded mode that loses nothing.

Only `socialcare run` (embedded) and `socialcare listen` poll; `web` and `worker` build the same
connectors for replies and moderation actions only. In the embedded mode a connector's cursor moves
once its batch is in the in-memory bus, so stopping (SIGTERM) must drain those queues first.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from listener.cursors import CursorStore
from listener.x.recheck import since_id
from models import Mention
from models.db import Database
from service.cli import run_cmd
from service.cli.worker_cmd import serve_worker
from service.settings import load_settings
from service.stages.ingest import IngestStage

from .fakes import serve
from .fakes.x_api import FakeX, tweet


@pytest.fixture
async def fake():
    x = FakeX(tweets=[tweet(i) for i in range(40)], page_size=100)
    server = await serve(x)
    yield x
    await server.close()


def settings_for(fake, tmp_path, sqlite_url, **extra):
    return load_settings(database_url=sqlite_url, bus="inprocess", var_dir=tmp_path / "var", demo=False,
                         x_api_base=fake.base, x_bearer_token="t", x_user_id="99", cookie_secure=False,
                         bus_block_ms=20, **extra)


def mention_polls(fake) -> int:
    return sum(1 for r in fake.requests if "/mentions" in r)


async def serve_for(coro_factory, seconds: float = 0.6) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(coro_factory(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(task, 30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_web_and_worker_processes_do_not_poll_listen_does(fake, tmp_path, sqlite_url):
    s = settings_for(fake, tmp_path, sqlite_url)
    await serve_for(lambda stop: run_cmd._serve(s, stages=[], workers=0, web_port=free_port(), demo=False,
                                                stop=stop))
    await serve_for(lambda stop: serve_worker(s, ["act"], 1, stop=stop))
    assert mention_polls(fake) == 0  # both built the X connector (for actions), neither polled it
    await serve_for(lambda stop: run_cmd._serve(s, stages=[], workers=0, web_port=None, demo=False, listen=True,
                                                stop=stop))
    assert mention_polls(fake) >= 1


def test_the_commands_choose_who_polls(monkeypatch, tmp_path):
    calls = {}

    async def fake_serve(settings, **kw):
        calls[kw.get("web_port"), tuple(kw["stages"])] = kw.get("listen", False)

    monkeypatch.setattr(run_cmd, "_serve", fake_serve)
    s = load_settings(bus="redis", var_dir=tmp_path, x_bearer_token="t", x_user_id="99", port=8123)
    runner = CliRunner()
    for command, args in ((run_cmd.run, ["--no-demo"]), (run_cmd.web_cmd, []), (run_cmd.listen, [])):
        result = runner.invoke(command, args, obj=s)
        assert result.exit_code == 0, result.output
    assert calls == {(8123, ("ingest", "triage", "route", "act")): True,  # run: embedded, polls
                     (8123, ()): False,  # web: actions only
                     (None, ()): True}  # listen: polls


async def stored(db) -> list[str]:
    async with db.session() as s:
        return list(await s.scalars(select(Mention.external_id)))


async def test_stopping_the_embedded_runtime_mid_stream_then_restarting_stores_every_mention_once(
        fake, tmp_path, sqlite_url, monkeypatch):
    handle = IngestStage.handle

    async def slow_handle(self, batch):  # a slow database: ingest lags behind the connector
        await asyncio.sleep(0.05)
        return await handle(self, batch)

    monkeypatch.setattr(IngestStage, "handle", slow_handle)
    s = settings_for(fake, tmp_path, sqlite_url, bus_batch_size=4)
    probe = Database(sqlite_url)
    await probe.upgrade()
    stop = asyncio.Event()
    serving = asyncio.create_task(run_cmd._serve(s, stages=["ingest"], workers=1, web_port=None, demo=False,
                                                 listen=True, stop=stop))
    cursors = CursorStore(probe)
    for _ in range(500):
        if await cursors.get("x"):
            break
        await asyncio.sleep(0.01)
    assert since_id(await cursors.get("x")) == fake.tweets[-1]["id"]  # the whole batch is "done" for the connector ...
    before_stop = len(await stored(probe))
    stop.set()  # ... SIGTERM now, while most of it is still in the in-memory queue
    await asyncio.wait_for(serving, 30)
    assert before_stop < 40
    assert len(await stored(probe)) == 40  # drained before the process ended
    fake.tweets += [tweet(i) for i in range(40, 50)]
    stop = asyncio.Event()
    serving = asyncio.create_task(run_cmd._serve(s, stages=["ingest"], workers=1, web_port=None, demo=False,
                                                 listen=True, stop=stop))
    for _ in range(500):
        if len(await stored(probe)) >= 50:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # a few more polls: nothing comes twice
    stop.set()
    await asyncio.wait_for(serving, 30)
    ids = await stored(probe)
    async with probe.session() as session:
        assert await session.scalar(select(func.count()).select_from(Mention)) == 50
    assert sorted(ids) == sorted(t["id"] for t in fake.tweets)
    await probe.close()


async def test_the_listen_process_reports_its_connectors_for_the_web_process(fake, tmp_path, redis_url, bus_prefix):
    from listener.status import RedisStatusBoard
    from service.runtime import Runtime

    fake.fail_next = [(401, {})]
    s = load_settings(bus="redis", redis_url=redis_url, bus_prefix=bus_prefix, var_dir=tmp_path / "var",
                      database_url=f"sqlite+aiosqlite:///{tmp_path / 'listen.db'}", x_api_base=fake.base,
                      x_bearer_token="revoked", x_user_id="99")
    rt = await Runtime.open(s, stages=[], workers=0, listen=True)
    web_side = RedisStatusBoard(redis_url, bus_prefix)
    try:
        await rt.start()
        for _ in range(200):
            report = (await web_side.read()).get("x")
            if report and report["state"] == "stopped":
                break
            await asyncio.sleep(0.05)
        assert report["state"] == "stopped" and report["stopped_by_error"] and "401" in report["last_error"]
        assert report["listens_to"] == "mentions of user 99" and report["reported_at"]
    finally:
        await rt.close()
        await web_side.client.delete(web_side.key)
        await web_side.close()
