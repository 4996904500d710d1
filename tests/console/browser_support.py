"""A console served on a real port for Debian's Chromium, without the triage models (the tests write
their rows with :func:`tests.console.conftest.add_mention`): import ``served`` as a fixture."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from aiohttp import web

from tests.browser.conftest import CHROMIUM
from tests.conftest import service_missing
from tests.console.conftest import PASSWORDS, ROLES, NoTriage


@dataclass
class Served:
    runtime: object
    base: str
    app: web.Application


@pytest.fixture
async def served(tmp_path):
    if not CHROMIUM.exists():
        service_missing("Chromium", f"{CHROMIUM} is missing (apt-get install -y chromium)")
    from console.app import create_app
    from console.auth import create_user
    from service.runtime import Runtime
    from service.settings import load_settings

    settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'sc.db'}", bus="inprocess",
                             var_dir=tmp_path / "var", demo=False, dry_run=True, bus_block_ms=50, cookie_secure=False)
    rt = await Runtime.open(settings, stages=[], with_connectors=False, triager=NoTriage())
    async with rt.db.session() as s:
        for name, role in ROLES.items():
            await create_user(s, name, PASSWORDS[name], role)
        await s.commit()
    app = create_app(rt)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield Served(rt, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", app)
    await runner.cleanup()
    await rt.close()
