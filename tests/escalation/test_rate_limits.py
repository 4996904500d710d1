"""The per-case rate limit of the customer pages: it holds whichever addresses the requests come
from (the per-address limit cannot see a spread-out attack) and however many web processes
share the load (the counts are in the database)."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from escalation_support import NoTriage, World, csrf_of, escalation_settings, open_world, start

PER_CASE = 4
MID_WINDOW = 1_800_000_030.0  # 30 s into a minute: no window of the per-case limit ends during a test


def pinned(app) -> None:  # noqa: ANN001
    """The per-case limiter's clock held mid-window: one crossing a minute mid-test would reset its count."""
    from console.secure import ESCALATION

    app[ESCALATION].per_case.clock = lambda: MID_WINDOW


@pytest.fixture
async def limited(tmp_path, sqlite_url, smtp_sink):
    settings = escalation_settings(tmp_path, sqlite_url, smtp_sink.port, secure_rate_per_case_per_minute=PER_CASE,
                                   verify_max_attempts=50)
    rt, client, maria, tom = await open_world(settings)
    yield World(rt, client, maria, tom)
    await client.close()
    await rt.close()


async def customer_session(world: World) -> tuple[str, str]:
    """A started secure session for a case: (cookie value, CSRF token of its forms)."""
    _, path = await world.case("maria_music3")
    page = await start(world.client, path)
    assert page.status == 200
    cookie = world.client.session.cookie_jar.filter_cookies(world.client.make_url("/secure/verify"))["sc_secure"]
    return cookie.value, csrf_of(await page.text())


async def guess(base_url: str, address: str, cookie: str, csrf: str) -> tuple[int, str]:
    """One wrong code for the case, sent from ``address`` (any 127.x.y.z reaches the server)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.post(f"{base_url}/secure/verify", data={"csrf_token": csrf, "code": "000000"},
                             headers={"Cookie": f"sc_secure={cookie}"}, allow_redirects=False) as r:
            return r.status, await r.text()


async def test_many_attempts_on_one_case_from_different_addresses_are_refused(limited):
    pinned(limited.client.server.app)
    cookie, csrf = await customer_session(limited)
    base = str(limited.client.make_url("")).rstrip("/")
    results = [await guess(base, f"127.0.0.{10 + i}", cookie, csrf) for i in range(PER_CASE + 2)]
    statuses = [status for status, _ in results]
    assert statuses == [400] * PER_CASE + [429] * 2  # one request per address: far below the per-address limit
    assert "Too many requests" in results[-1][1]
    assert "Ask for a code first" in results[0][1]  # the ones let through were really handled
    from console.secure import ESCALATION

    seen = {key[1] for key in limited.client.server.app[ESCALATION].per_ip._counts}
    assert {f"127.0.0.{10 + i}" for i in range(PER_CASE + 2)} <= seen  # the server saw six addresses


async def test_the_per_case_limit_holds_across_web_processes(limited):
    from console.app import create_app
    from service.runtime import Runtime

    other = await Runtime.open(limited.rt.settings, stages=[], with_connectors=False, triager=NoTriage())
    second = TestClient(TestServer(create_app(other)))
    await second.start_server()
    pinned(limited.client.server.app), pinned(second.server.app)
    try:
        cookie, csrf = await customer_session(limited)
        bases = [str(c.make_url("")).rstrip("/") for c in (limited.client, second)]
        statuses = [(await guess(bases[i % 2], "127.0.0.1", cookie, csrf))[0] for i in range(PER_CASE + 2)]
        assert statuses == [400] * PER_CASE + [429] * 2  # each process saw three: together, six
    finally:
        await second.close()
        await other.close()


async def test_concurrent_hits_are_all_counted_and_a_new_window_starts_afresh(any_database_url):
    import asyncio

    from escalation.ratelimit import SharedRateLimiter
    from models.db import Database

    db = Database(any_database_url)
    await db.upgrade()
    now = [1_000_000.0]
    limiter = SharedRateLimiter(db, 5, 60, clock=lambda: now[0])
    try:
        allowed = await asyncio.gather(*(limiter.hit("case:1") for _ in range(12)))
        assert sum(allowed) == 5  # no hit lost to a race, none let through twice
        assert await limiter.hit("case:2")  # another case has its own count
        now[0] += 60
        assert [await limiter.hit("case:1") for _ in range(6)] == [True] * 5 + [False]
    finally:
        await db.close()
