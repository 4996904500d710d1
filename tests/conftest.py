"""Shared fixtures: real PostgreSQL and Redis where the machine has them.

Tests that need a service skip with a clear reason when it is absent, unless
``SOCIALCARE_REQUIRE_SERVICES=1`` (CI), which turns that skip into a failure.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.redis_keys import delete_redis_keys

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT.parent / "shared" / "data").resolve()
POSTGRES_ADMIN_DSN = os.environ.get("SOCIALCARE_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SOCIALCARE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("SOCIALCARE_REQUIRE_SERVICES", "") not in ("", "0", "false", "no")


def service_missing(what: str, why: str) -> None:
    """Skip (developer machine) or fail (CI) when a required service is absent."""
    message = f"{what} not reachable ({why})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}; SOCIALCARE_REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
    pytest.skip(message)


def shared_data_path(relative: str) -> Path:
    """A file under ../shared/data, or a skip (a failure in CI) when it is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        service_missing("shared data", f"{path} missing")
    return path


@pytest.fixture
def shared_data():
    """``shared_data("twcs/...")`` → the path under ../shared/data (skip or CI failure if absent)."""
    return shared_data_path


def _pg_admin(sql: str) -> None:
    """Run one admin statement on its own event loop in a thread (callers may be inside a loop)."""
    import asyncpg
    from concurrent.futures import ThreadPoolExecutor

    async def go() -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, go()).result()


@pytest.fixture
def postgres_url() -> str:
    """A fresh, empty PostgreSQL database for one test (SQLAlchemy asyncpg URL); dropped after."""
    name = f"sc_test_{uuid.uuid4().hex[:12]}"
    try:
        _pg_admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # noqa: BLE001 - any connection problem means "absent"
        service_missing("PostgreSQL", f"{POSTGRES_ADMIN_DSN}: {exc}")
    base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    yield f"{base}/{name}"
    try:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception:  # noqa: BLE001 - best effort clean-up
        pass


@pytest.fixture
def redis_url() -> str:
    """The Redis URL, after checking that Redis answers."""
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:  # noqa: BLE001
        service_missing("Redis", f"{REDIS_URL}: {exc}")
    return REDIS_URL


@pytest.fixture
def bus_prefix() -> str:
    """A unique stream prefix so tests sharing one Redis never see each other's messages."""
    return f"sctest-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'socialcare.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def any_database_url(request) -> str:
    """An empty database's URL: SQLite, then PostgreSQL (a test that must hold on both)."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


@pytest.fixture
async def any_db(any_database_url: str):
    """A migrated, empty database: SQLite, then PostgreSQL."""
    from models.db import Database

    database = Database(any_database_url)
    await database.upgrade()
    yield database
    await database.close()


@pytest.fixture(params=["inprocess", "redis"])
async def make_bus(request):
    """Builds a started bus, in-process then on a real Redis, dead-lettering after the deliveries a
    test asks for and claiming a delivery idle ``claim_idle_ms`` (the bus's own default unless
    given); closed, and its Redis keys deleted, after the test. With ``shared=True`` each call is a
    handle onto one bus, as separate workers would hold: a Redis client of its own, or the one
    in-process object its tasks share (tests/service/bus/conftest.py's ``open_bus``)."""
    made, one = [], []
    if request.param == "redis":
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("bus_prefix")

    async def make(max_deliveries: int, *, claim_idle_ms: int | None = None, shared: bool = False):
        options = {"max_deliveries": max_deliveries}
        if claim_idle_ms is not None:
            options["claim_idle_ms"] = claim_idle_ms
        if request.param == "redis":
            from service.bus.redis_streams import RedisStreamsBus

            bus = RedisStreamsBus(url, prefix=prefix, **options)
        elif shared and one:
            bus = one[0]
        else:
            from service.bus.memory import InProcessBus

            bus = InProcessBus(**options)
            if shared:
                one.append(bus)
        await bus.start()
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.close()
    if request.param == "redis":
        delete_redis_keys(url, prefix)


class WebhookReceiver:
    """A bot's endpoint: answers the statuses it is told to, in order, and keeps what it got."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.got: list[tuple[dict, bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((dict(request.headers), await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def receiver():
    """A bot's webhook endpoint on a local server (``receiver.url``), answering 200 unless told."""
    rec = WebhookReceiver([])
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    server = TestServer(app)
    await server.start_server()
    rec.url = str(server.make_url("/hook"))
    yield rec
    await server.close()


@pytest.fixture
def private_redis(tmp_path: Path):
    """A Redis server of the test's own (append-only file on), so the test may restart it and see
    its data kept. Yields a controller with ``url``, ``restart()`` and ``stop()``."""
    import shutil
    import socket
    import subprocess
    import time

    binary = shutil.which("redis-server")
    if binary is None:
        service_missing("redis-server binary", "not on PATH")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    class Controller:
        url = f"redis://127.0.0.1:{port}/0"
        proc: subprocess.Popen | None = None

        def start(self) -> None:
            self.proc = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
                 "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        return
                except OSError:
                    time.sleep(0.05)
            raise RuntimeError("private redis-server did not start")

        def stop(self) -> None:
            if self.proc and self.proc.poll() is None:
                self.proc.terminate()  # SIGTERM: Redis flushes its append-only file and exits
                self.proc.wait(timeout=10)

        def restart(self) -> None:
            self.stop()
            self.start()

    ctl = Controller()
    ctl.start()
    yield ctl
    ctl.stop()


# --- pipeline settings and the real triage models (shared by service, console, escalation tests) ---

_TRIAGERS: dict[str, object] = {}


def real_triager(mode: str = "cascade"):
    """The real triage models, loaded once per test session (loading takes seconds)."""
    from service.settings import load_settings

    if mode not in _TRIAGERS:
        from triage import build_triager

        _TRIAGERS[mode] = build_triager(load_settings(triage_mode=mode))
    return _TRIAGERS[mode]


@pytest.fixture
async def triager():
    return await asyncio.to_thread(real_triager)


@pytest.fixture
def embedded_settings(tmp_path: Path, sqlite_url: str):
    from service.settings import load_settings

    return load_settings(database_url=sqlite_url, bus="inprocess", var_dir=tmp_path / "var", demo=False,
                         dry_run=True, bus_block_ms=50, cookie_secure=False)


@pytest.fixture
def services_settings(tmp_path: Path, postgres_url: str, redis_url: str, bus_prefix: str):
    from service.settings import load_settings

    settings = load_settings(database_url=postgres_url, bus="redis", redis_url=redis_url, bus_prefix=bus_prefix,
                             var_dir=tmp_path / "var", demo=False, dry_run=True, bus_block_ms=50,
                             bus_claim_idle_ms=500, cookie_secure=False)
    yield settings
    delete_redis_keys(redis_url, bus_prefix)
