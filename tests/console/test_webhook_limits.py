"""10 MB webhook bodies through the real console app (create_app, the default 1 MB limit): the
generic and the Discourse webhook answer 413 before reading the body past the limit, so nothing is
parsed and nothing is published, whether the sender announces the size or streams it chunked."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from console.app import create_app
from listener.webhook import sign
from service.runtime import Runtime
from service.settings import load_settings
from tests.listener.fakes.discourse import post, webhook_request

GENERIC, DISCOURSE = "generic-secret", "discourse-secret"
TEN_MB = 10 * 1024 * 1024


@pytest.fixture
async def app(tmp_path, sqlite_url):
    settings = load_settings(database_url=sqlite_url, bus="inprocess", var_dir=tmp_path / "var", demo=False,
                             dry_run=True, cookie_secure=False, webhook_secret=GENERIC,
                             discourse_webhook_secret=DISCOURSE, discourse_url="https://forum.acme.test")
    assert settings.webhook_max_bytes == 1_000_000  # the default limit is what is tested
    rt = await Runtime.open(settings, stages=[], with_connectors=False)
    client = TestClient(TestServer(create_app(rt), host="127.0.0.1"))
    await client.start_server()
    client.rt = rt
    yield client
    await client.close()
    await rt.close()


def generic_request(pad: int) -> tuple[str, bytes, dict[str, str]]:
    """A validly signed post: were it parsed, it would be accepted (202)."""
    body = json.dumps({"source": "help-widget", "id": f"big-{pad}", "text": "I was charged twice",
                       "created_at": "2026-11-20T08:01:02Z", "author": {"id": "u-9", "handle": "jane"},
                       "context": {"pad": "x" * pad}}).encode()
    ts = str(int(time.time()))
    return "/webhooks/inbound", body, {"Content-Type": "application/json", "X-Socialcare-Timestamp": ts,
                                       "X-Socialcare-Signature": sign(GENERIC, body, ts)}


def discourse_request(pad: int) -> tuple[str, bytes, dict[str, str]]:
    body, headers = webhook_request("post_created", {"post": post(900 + pad % 97, raw="y" * max(pad, 1))}, DISCOURSE)
    return "/webhooks/discourse", body, headers


KINDS = {"generic": generic_request, "discourse": discourse_request}


async def published(client) -> int:
    return await client.rt.bus.lag("ingest", "ingest")


@pytest.mark.parametrize("kind", KINDS)
async def test_a_small_signed_body_is_accepted_through_the_app(app, kind):
    path, body, headers = KINDS[kind](100)
    r = await app.post(path, data=body, headers=headers)
    assert r.status == 202, await r.text()
    assert await published(app) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_a_10_mb_body_gets_a_json_413_and_nothing_is_published(app, kind):
    path, body, headers = KINDS[kind](TEN_MB)
    assert len(body) > TEN_MB
    r = await app.post(path, data=body, headers=headers)
    assert r.status == 413
    assert "larger than 1000000 bytes" in (await r.json())["error"]
    assert await published(app) == 0


async def raw_request(app, path: str, headers: dict[str, str], body_parts, *, read_timeout: float = 10.0) -> bytes:
    """Send the headers and only ``body_parts`` of the body, then read the answer: a server that
    waited for the whole body (or parsed it) would never answer."""
    reader, writer = await asyncio.open_connection(app.server.host, app.server.port)
    try:
        head = [f"POST {path} HTTP/1.1", f"Host: {app.server.host}:{app.server.port}", "Connection: close",
                *(f"{k}: {v}" for k, v in headers.items()), "", ""]
        writer.write("\r\n".join(head).encode())
        for part in body_parts:
            writer.write(part)
            await writer.drain()
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), read_timeout)
    finally:
        writer.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_an_announced_10_mb_body_is_refused_before_a_byte_of_it_is_read(app, kind):
    path, body, headers = KINDS[kind](TEN_MB)
    status = await raw_request(app, path, {**headers, "Content-Length": str(len(body))}, [body[:1024]])
    assert status.startswith(b"HTTP/1.1 413"), status
    assert await published(app) == 0


@pytest.mark.parametrize("kind", KINDS)
async def test_a_chunked_10_mb_body_is_refused_once_it_passes_the_limit(app, kind):
    path, body, headers = KINDS[kind](TEN_MB)
    first = body[:1_100_000]  # just past the limit; the other 9 MB are never sent
    chunks = [b"%x\r\n%s\r\n" % (len(first[i:i + 65536]), first[i:i + 65536]) for i in range(0, len(first), 65536)]
    status = await raw_request(app, path, {**headers, "Transfer-Encoding": "chunked"}, chunks)
    assert status.startswith(b"HTTP/1.1 413"), status
    assert await published(app) == 0
