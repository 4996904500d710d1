"""The console's connector page and ``GET /api/v1/connectors``: a 401 shows, with its reason."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestServer

from listener.cursors import MemoryCursorStore
from listener.runner import run_connector
from listener.status import RedisStatusBoard, snapshot
from listener.x.connector import XConnector
from service.settings import load_settings
from tests.console.conftest import bot_token, login

from .fakes.x_api import FakeX, tweet


@pytest.fixture
async def fakes():
    out = []
    for _ in range(2):
        x = FakeX(tweets=[tweet(i) for i in range(3)])
        server = TestServer(x.app(), host="127.0.0.1")
        await server.start_server()
        x.base, x.server = str(server.make_url("")).rstrip("/"), server
        out.append(x)
    yield out
    for x in out:
        await x.server.close()


def revoked_and_running(fakes) -> tuple[XConnector, XConnector]:
    """Two X connectors: one whose key X refuses (401), one polling fine as "x-brand-two"."""
    revoked_fake, good_fake = fakes
    revoked_fake.fail_next = [(401, {})]
    revoked = XConnector(load_settings(x_api_base=revoked_fake.base, x_bearer_token="revoked", x_user_id="99"))
    good = XConnector(load_settings(x_api_base=good_fake.base, x_bearer_token="ok", x_user_id="77"),
                      poll_seconds=0.05)
    good.name = "x-brand-two"
    return revoked, good


async def run_until_settled(connectors):
    """Run the connectors through the real runner: the revoked one stops, the other polls once."""
    stop, store = asyncio.Event(), MemoryCursorStore()

    async def publish(batch):
        pass

    tasks = [asyncio.create_task(run_connector(c, publish, store, stop, backoff_base=0.01)) for c in connectors]
    await asyncio.wait_for(tasks[0], 10)
    for _ in range(200):
        if connectors[1].status and connectors[1].status.last_poll_at:
            break
        await asyncio.sleep(0.02)
    return stop, tasks


async def test_a_connector_stopped_by_a_401_shows_its_error_on_the_page_and_in_the_api(app_client, runtime, fakes):
    revoked, good = revoked_and_running(fakes)
    runtime.connectors, runtime.listening = [revoked, good], True
    stop, tasks = await run_until_settled([revoked, good])
    try:
        await login(app_client, "alice")
        r = await app_client.get("/api/v1/connectors")
        assert r.status == 200
        rows = {c["name"]: c for c in (await r.json())["connectors"]}
        bad, ok = rows["x"], rows["x-brand-two"]
        assert bad["state"] == "stopped" and bad["stopped_by_error"] and "401" in bad["last_error"]
        assert bad["platform"] == "x" and bad["listens_to"] == "mentions of user 99" and bad["last_poll_at"] is None
        assert ok["state"] == "running" and ok["last_error"] is None and ok["mentions_seen"] == 3
        assert ok["last_poll_at"].endswith("Z") and ok["listens_to"] == "mentions of user 77"
        page = await (await app_client.get("/connectors")).text()
        assert 'data-connector="x" data-state="stopped"' in page and 'data-state="running"' in page
        assert "x stopped:" in page and "X refused the credentials (401)" in page
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def test_roles_and_bot_tokens(app_client, runtime):
    runtime.connectors = []
    assert (await app_client.get("/api/v1/connectors")).status == 401
    r = await app_client.get("/connectors", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"].startswith("/login")
    await login(app_client, "mia")  # marketing: not theirs
    assert (await app_client.get("/api/v1/connectors")).status == 403
    assert (await app_client.get("/connectors", allow_redirects=False)).status == 403
    for user in ("mod", "root"):
        await login(app_client, user)
        assert (await app_client.get("/connectors")).status == 200
    app_client.session.cookie_jar.clear()
    without = await bot_token(runtime, "alice", ["mentions:read"])
    assert (await app_client.get("/api/v1/connectors", headers={"Authorization": f"Bearer {without}"})).status == 403
    scoped = await bot_token(runtime, "alice", ["connectors:read"])
    r = await app_client.get("/api/v1/connectors", headers={"Authorization": f"Bearer {scoped}"})
    assert r.status == 200 and (await r.json()) == {"connectors": []}


async def test_a_web_process_shows_what_the_listener_process_reported_through_redis(
        app_client, runtime, fakes, redis_url, bus_prefix):
    """Production: `listen` polls and reports; `web` builds the same connectors for actions only."""
    revoked_fake, good_fake = fakes
    revoked_fake.fail_next = [(403, {})]
    settings = {"x_bearer_token": "t", "x_user_id": "99"}
    polled = [XConnector(load_settings(x_api_base=revoked_fake.base, **settings)),
              XConnector(load_settings(x_api_base=good_fake.base, **settings), poll_seconds=0.05)]
    polled[1].name = "x-brand-two"
    stop, tasks = await run_until_settled(polled)
    listener_board = RedisStatusBoard(redis_url, bus_prefix)
    web_board = RedisStatusBoard(redis_url, bus_prefix, stale_after=30)
    try:
        await listener_board.write([snapshot(c, polled_here=True) for c in polled])
        web_side = [XConnector(load_settings(x_api_base=revoked_fake.base, **settings))]  # not polled here
        runtime.connectors, runtime.listening, runtime.status_board = web_side, False, web_board
        await login(app_client, "alice")
        rows = {c["name"]: c for c in (await (await app_client.get("/api/v1/connectors")).json())["connectors"]}
        assert rows["x"]["state"] == "stopped" and "403" in rows["x"]["last_error"]
        assert rows["x"]["reported_by"] == "listener process" and rows["x"]["stale"] is False
        assert rows["x-brand-two"]["state"] == "running"  # reported, though not configured in this process
        web_board.stale_after = -1  # as if the listener had not reported for a long while
        rows = {c["name"]: c for c in (await (await app_client.get("/api/v1/connectors")).json())["connectors"]}
        assert rows["x"]["stale"] is True
        await web_board.client.delete(web_board.key)
        (row,) = (await (await app_client.get("/api/v1/connectors")).json())["connectors"]
        assert row["state"] == "unknown" and "no report" in row["last_error"]
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        runtime.status_board = None
        await listener_board.close()
        await web_board.close()
        for c in polled:
            await c.close()


async def test_connector_states_become_prometheus_gauges_for_alerting(app_client, runtime, fakes):
    """A scrape of `/metrics` carries each connector's state, so an alert fires on a revoked key at night."""
    revoked, good = revoked_and_running(fakes)
    runtime.connectors, runtime.listening = [revoked, good], True
    stop, tasks = await run_until_settled([revoked, good])
    try:
        token = await bot_token(runtime, "root", ["metrics"])
        r = await app_client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert r.status == 200
        text = await r.text()
        assert 'socialcare_connector_up{connector="x",platform="x"} 0.0' in text
        assert 'socialcare_connector_state{connector="x",platform="x",state="stopped"} 1.0' in text
        assert 'socialcare_connector_up{connector="x-brand-two",platform="x"} 1.0' in text
        assert 'socialcare_connector_mentions_seen{connector="x-brand-two",platform="x"} 3.0' in text
        assert runtime.metrics.registry.get_sample_value("socialcare_connector_last_poll_timestamp_seconds",
                                                         {"connector": "x-brand-two", "platform": "x"}) > 1.7e9
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for c in (revoked, good):
            await c.close()
