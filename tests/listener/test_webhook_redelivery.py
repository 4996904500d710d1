"""The generic webhook when the bus or the database goes away: a 503 the sender can act on.

A post answered 503 must be accepted when its sender redelivers it unchanged (same body, timestamp
and signature), and the 503 must come before the sender's own timeout, not after the bus's retries.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from listener import webhook
from listener.ingest import ingest_batch
from listener.webhook import sign
from models import Customer, Mention
from service.bus.redis_streams import RedisStreamsBus
from service.pipeline import submit
from service.settings import load_settings

SECRET = "generic-secret"


def post(i: int = 1, **extra) -> dict:
    return {"source": "help-widget", "id": f"msg-{i}", "text": "I was charged twice for my family plan",
            "author": {"id": "u-9", "handle": "jane"}, "customer": {"id": "cus_42"}, **extra}


def signed(payload: dict) -> tuple[bytes, dict[str, str]]:
    """One delivery, as a sender keeps it to redeliver it unchanged."""
    raw, ts = json.dumps(payload).encode(), str(int(time.time()))
    return raw, {"Content-Type": "application/json", "X-Socialcare-Timestamp": ts,
                 "X-Socialcare-Signature": sign(SECRET, raw, ts)}


async def serve(publish, tmp_path, db=None, **settings) -> TestClient:
    app = web.Application()
    app.router.add_routes(webhook.routes(load_settings(webhook_secret=SECRET, var_dir=tmp_path / "var", **settings),
                                         publish, db=db))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


class FlakyBus:
    """Publishes what it is given, after refusing the first ``failures`` calls as a bus that went away."""

    def __init__(self, failures: int = 1) -> None:
        self.failures, self.published = failures, []

    async def __call__(self, batch) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the bus went away")
        self.published.extend(batch)


async def stored(db) -> list[str]:
    async with db.session() as s:
        return list(await s.scalars(select(Mention.external_id)))


async def test_a_post_answered_503_is_accepted_when_redelivered_unchanged_and_stored(db, tmp_path):
    async with db.session() as s:
        s.add(Customer(external_ref="cus_42", name="Jane Doe"))
        await s.commit()
    bus = FlakyBus(failures=1)
    client = await serve(bus, tmp_path, db=db)
    try:
        raw, headers = signed({"mentions": [post(1), post(2)]})
        first = await client.post(webhook.PATH, data=raw, headers=headers)
        assert first.status == 503 and first.headers["Retry-After"] == "30"
        assert "retry later" in (await first.json())["error"] and bus.published == []
        again = await client.post(webhook.PATH, data=raw, headers=headers)  # the sender's retry, byte for byte
        assert again.status == 202, await again.text()
        assert await again.json() == {"accepted": 2, "customers_linked": 2}
        replayed = await client.post(webhook.PATH, data=raw, headers=headers)  # accepted once: now a replay
        assert replayed.status == 401 and "replay" in (await replayed.json())["error"]
    finally:
        await client.close()
    async with db.session() as s:
        await ingest_batch(s, bus.published)
        await s.commit()
    assert sorted(await stored(db)) == ["help-widget:msg-1", "help-widget:msg-2"]


async def test_a_post_whose_customer_link_failed_is_accepted_when_redelivered(db, tmp_path, monkeypatch):
    """The database going away while the signed customer is linked: the same 503, the same retry."""
    calls = []

    async def link(database, claims, settings):
        calls.append(len(claims))
        if len(calls) == 1:
            raise OSError("connection refused")
        return 0

    monkeypatch.setattr(webhook, "link_signed_customers", link)
    bus = FlakyBus(failures=0)
    client = await serve(bus, tmp_path, db=db)
    try:
        raw, headers = signed(post(3))
        assert (await client.post(webhook.PATH, data=raw, headers=headers)).status == 503
        assert (await client.post(webhook.PATH, data=raw, headers=headers)).status == 202
    finally:
        await client.close()
    assert calls == [1, 1] and [m.external_id for m in bus.published] == ["help-widget:msg-3"]


async def test_a_bus_that_does_not_answer_gets_a_503_within_the_bounded_wait(tmp_path):
    """Redis away: its client retries for ``retry_seconds`` (30 s), longer than a sender waits; the
    webhook answers 503 after ``webhook_publish_timeout_seconds`` and the redelivery is let in."""
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = RedisStreamsBus(f"redis://127.0.0.1:{port}/0", retry_seconds=30.0)
    bus = FlakyBus(failures=0)
    target = {"publish": lambda batch: submit(down, batch)}
    client = await serve(lambda batch: target["publish"](batch), tmp_path, webhook_publish_timeout_seconds=0.5)
    try:
        raw, headers = signed(post(4))
        started = time.monotonic()
        resp = await client.post(webhook.PATH, data=raw, headers=headers)
        assert resp.status == 503 and resp.headers["Retry-After"] == "30"
        assert time.monotonic() - started < 5  # not the bus's 30 s of retries
        target["publish"] = bus  # Redis is back
        assert (await client.post(webhook.PATH, data=raw, headers=headers)).status == 202
    finally:
        await client.close()
        await down.close()
    assert [m.external_id for m in bus.published] == ["help-widget:msg-4"]


async def test_a_database_that_hangs_while_linking_the_customer_is_bounded_too(db, tmp_path, monkeypatch):
    """PostgreSQL behind a network that drops packets: the link never returns; the 503 still comes."""
    hang = asyncio.Event()

    async def link(database, claims, settings):
        await hang.wait()

    monkeypatch.setattr(webhook, "link_signed_customers", link)
    bus = FlakyBus(failures=0)
    client = await serve(bus, tmp_path, db=db, webhook_publish_timeout_seconds=0.3)
    try:
        raw, headers = signed(post(6))
        started = time.monotonic()
        resp = await client.post(webhook.PATH, data=raw, headers=headers)
        assert resp.status == 503 and resp.headers["Retry-After"] == "30" and time.monotonic() - started < 5
    finally:
        await client.close()
    assert bus.published == []  # nothing published before the customer is linked


async def test_a_copy_arriving_while_the_first_is_in_flight_gets_the_first_answer(tmp_path):
    """A sender whose own timeout is shorter than ours retries while the first copy is being
    handled: the copy waits for the first's answer and gets the same 202 (published once), not a
    401; a copy after that 202 is a replay."""
    release, published = asyncio.Event(), []

    async def slow(batch):
        await release.wait()
        published.extend(batch)

    client = await serve(slow, tmp_path)
    try:
        raw, headers = signed(post(5))
        first = asyncio.ensure_future(client.post(webhook.PATH, data=raw, headers=headers))
        await asyncio.sleep(0.2)
        copy = asyncio.ensure_future(client.post(webhook.PATH, data=raw, headers=headers))
        await asyncio.sleep(0.2)
        assert not copy.done()  # waiting for the first, not refused
        release.set()
        first, copy = await first, await copy
        assert (first.status, copy.status) == (202, 202)
        assert await copy.json() == await first.json() == {"accepted": 1, "customers_linked": 0}
        assert copy.headers["Content-Type"] == first.headers["Content-Type"]
        replayed = await client.post(webhook.PATH, data=raw, headers=headers)
        assert replayed.status == 401 and "replay" in (await replayed.json())["error"]
    finally:
        await client.close()
    assert [m.external_id for m in published] == ["help-widget:msg-5"]


async def test_a_copy_in_flight_when_the_first_ends_503_gets_503_and_its_retry_is_let_in(tmp_path):
    """The first copy then times out on the bus: the copy that waited for it answers 503 as well
    (every answer was a 5xx, so the sender keeps retrying), and the next retry is accepted."""
    hang, published = asyncio.Event(), []

    async def publish(batch):
        if not hang.is_set():
            await asyncio.Event().wait()  # the bus does not answer
        published.extend(batch)

    client = await serve(publish, tmp_path, webhook_publish_timeout_seconds=0.6)
    try:
        raw, headers = signed(post(7))
        first = asyncio.ensure_future(client.post(webhook.PATH, data=raw, headers=headers))
        await asyncio.sleep(0.2)
        copy = await client.post(webhook.PATH, data=raw, headers=headers)
        first = await first
        assert (first.status, copy.status) == (503, 503) and copy.headers["Retry-After"] == "30"
        assert await copy.json() == await first.json()
        hang.set()  # the bus is back
        assert (await client.post(webhook.PATH, data=raw, headers=headers)).status == 202
    finally:
        await client.close()
    assert [m.external_id for m in published] == ["help-widget:msg-7"]


@pytest.mark.parametrize("seconds", [0, -1])
def test_the_wait_is_a_positive_number_of_seconds(seconds):
    with pytest.raises(ValueError):
        load_settings(webhook_publish_timeout_seconds=seconds)
