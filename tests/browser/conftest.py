"""A real server (embedded runtime: SQLite, in-process bus, the real triage) and Debian's Chromium.

Skips with a reason when /usr/bin/chromium is absent (fails under SOCIALCARE_REQUIRE_SERVICES=1).
Screenshots go to test-artifacts/browser/ (git-ignored) for a human to look at after a run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest_asyncio
from aiohttp import web

from tests.conftest import ROOT, service_missing

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
USERS = {"alice": ("agent", "alice password 1"), "bob": ("agent", "bob password 22"), "mod": ("moderator", "moderator pass 3"),
         "mia": ("marketing", "marketing pass 4"), "root": ("admin", "admin password 5")}


@dataclass
class Server:
    runtime: object
    base: str
    app: object = None

    def runtime_app_routes(self):
        return list(self.app.router.routes())


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server(tmp_path_factory):
    if not CHROMIUM.exists():
        service_missing("Chromium", f"{CHROMIUM} is missing (apt-get install -y chromium)")
    from console.app import create_app
    from console.auth import create_user
    from models import Template
    from service.runtime import Runtime
    from service.settings import load_settings
    from triage import build_triager
    from triage.protocol import TriageInput

    tmp = tmp_path_factory.mktemp("browser")
    settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp / 'sc.db'}", bus="inprocess",
                             var_dir=tmp / "var", demo=False, dry_run=True, bus_block_ms=50, cookie_secure=False)
    triager = await asyncio.to_thread(build_triager, settings)
    await triager.score_batch([TriageInput(text="warm up the models")])
    rt = await Runtime.open(settings, triager=triager, with_connectors=False)
    async with rt.db.session() as s:
        for name, (role, password) in USERS.items():
            await create_user(s, name, password, role)
        s.add(Template(name="bug_ack", issue_types=["bug_report"], variants={
            "friendly": "Thanks {{ author_name }}, we can reproduce the crash and a fix is on its way."}))
        await s.commit()
    await rt.start()
    app = create_app(rt)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield Server(rt, f"http://127.0.0.1:{port}", app)
    await runner.cleanup()
    await rt.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser(server):
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        await b.close()


async def signed_in(browser, server, user: str):
    context = await browser.new_context(base_url=server.base)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    await page.goto("/login?next=/queue")
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", USERS[user][1])
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    return context, page


def shot(name: str) -> str:
    return str(ARTIFACTS / f"{name}.png")
