"""Helpers of the escalation tests: the SMTP sink, the console over a real database, the customer's
steps through the secure pages. (A module of its own: every test directory has a ``conftest``.)"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from service.settings import load_settings

CODE = re.compile(r"verification code is (\d{6})")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SmtpSink:
    """What the aiosmtpd server received: (recipients, parsed message) in arrival order."""

    port: int = 0
    received: list[tuple[list[str], Any]] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):
        self.received.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content, policy=policy.default)))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Any]:
        return [m for rcpt, m in self.received if address in rcpt]

    async def code_for(self, address: str, nth: int = 1, timeout: float = 10.0) -> str:
        """The code in the ``nth`` e-mail to ``address`` (waits for it to arrive)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            mails = self.to(address)
            if len(mails) >= nth:
                return CODE.search(mails[nth - 1].get_content()).group(1)
            await asyncio.sleep(0.02)
        raise AssertionError(f"no e-mail number {nth} arrived for the address")


def escalation_settings(tmp_path: Path, database_url: str, smtp_port: int, **extra: Any):
    values: dict[str, Any] = {
        "database_url": database_url, "bus": "inprocess", "var_dir": tmp_path / "var", "demo": False,
        "dry_run": True, "bus_block_ms": 50, "cookie_secure": False, "secret_key": "escalation-test-secret-0123456789",
        "smtp_host": "127.0.0.1", "smtp_port": smtp_port, "smtp_starttls": False,
        "public_base_url": "https://care.example.com", "sla_check_interval_seconds": 3600,
    }
    values.update(extra)
    return load_settings(**values)


class NoTriage:
    model_version = "none"


@dataclass
class World:
    """The console over a real database, with two customers and two agents."""

    rt: Any
    client: TestClient
    maria: int
    tom: int

    async def case(self, handle: str, text: str = "my account was hacked, someone changed my password",
                   platform: str = "x", user_id: str | None = None, category: str = "security") -> tuple[int, str]:
        """Open a case for a mention by ``handle`` and issue its link: (case id, link path)."""
        from sqlalchemy import select

        from escalation.cases import open_or_join
        from escalation.links import issue_secure_link
        from models import Author, Mention, SocialIdentity

        async with self.rt.db.session() as s:
            identity = None
            for key in ([f"id:{user_id}"] if user_id else []) + [handle.lower()]:  # as ingest looks them up
                identity = identity or await s.scalar(select(SocialIdentity).where(
                    SocialIdentity.platform == platform, SocialIdentity.handle_key == key))
            author = await s.scalar(select(Author).where(Author.platform == platform, Author.handle == handle))
            if author is None:
                author = Author(platform=platform, author_key=user_id or f"@{handle}", handle=handle,
                                platform_user_id=user_id, customer_id=identity.customer_id if identity else None)
                s.add(author)
                await s.flush()
            n = int(time.monotonic_ns())
            mention = Mention(platform=platform, external_id=str(n), author_id=author.id, text=text,
                              created_at=datetime.now(UTC), content_hash=f"h{n}")
            s.add(mention)
            await s.flush()
            case, _ = await open_or_join(s, mention, category)
            url = await issue_secure_link(s, case, self.rt.settings)
            await s.commit()
            return case.id, url.removeprefix(self.rt.settings.public_base_url)

    async def login(self, username: str, password: str = "correct horse battery") -> None:
        r = await self.client.post("/login", data={"username": username, "password": password, "next": "/cases"},
                                   allow_redirects=False)
        assert r.status == 302, await r.text()


async def open_world(settings) -> tuple[Any, TestClient, int, int]:
    from console.app import create_app
    from console.auth import create_user
    from escalation.customers import link_identity
    from models import Customer
    from service.runtime import Runtime

    rt = await Runtime.open(settings, stages=[], with_connectors=False, triager=NoTriage())
    async with rt.db.session() as s:
        await create_user(s, "alice", "correct horse battery", "agent")
        await create_user(s, "bob", "correct horse battery", "agent")
        maria = Customer(external_ref="C-1", name="Maria Lopez", email="maria.lopez@example.com",
                         phone="+1-555-0100", plan="family")
        tom = Customer(external_ref="C-2", name="Tom Reid", email="Tom.Reid@example.org", plan="free")
        s.add_all([maria, tom])
        await s.flush()
        await link_identity(s, maria.id, "x", "maria_music3")
        await s.commit()
        ids = maria.id, tom.id
    client = TestClient(TestServer(create_app(rt)))
    await client.start_server()
    return rt, client, *ids


def csrf_of(html: str) -> str:
    return CSRF.search(html).group(1)


MARIA_MAIL = "maria.lopez@example.com"
TOM_MAIL = "Tom.Reid@example.org"


async def start(client: TestClient, path: str):
    """Open the link and press "Continue": the verify page (or whatever refused it)."""
    page = await client.get(path)
    if page.status != 200:
        return page
    return await client.post(path, data={"csrf_token": csrf_of(await page.text())})


async def ask_code(client: TestClient, email: str | None = None):
    page = await client.get("/secure/verify")
    form = {"csrf_token": csrf_of(await page.text())}
    if email is not None:
        form["email"] = email
    return await client.post("/secure/code", data=form)


async def enter_code(client: TestClient, code: str):
    page = await client.get("/secure/verify")
    return await client.post("/secure/verify", data={"csrf_token": csrf_of(await page.text()), "code": code},
                             allow_redirects=False)


async def new_client(world: World) -> TestClient:
    """A second browser: its own cookie jar, the same server."""
    client = TestClient(world.client.server)
    await client.start_server()
    return client


async def next_of(ws: Any, kind: str, sender: str | None = None, timeout: float = 10.0) -> dict:
    """The next websocket event of ``kind`` (for messages: from ``sender``; each side sees its own too)."""
    while True:
        event = await asyncio.wait_for(ws.receive_json(), timeout)
        if event["type"] == kind and (sender is None or event["message"]["sender"] == sender):
            return event
