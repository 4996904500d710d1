"""The Discourse webhook when the bus goes away: a 503 with Retry-After before Discourse's own
timeout, and the event's redelivery (a new delivery, its own ``X-Discourse-Event-Id``, the same body
and signature) accepted and stored once."""

from __future__ import annotations

import asyncio
import socket
import time

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from listener.discourse import webhook
from listener.ingest import ingest_batch
from models import Mention
from service.bus.redis_streams import RedisStreamsBus
from service.pipeline import submit
from service.settings import load_settings

from .fakes.discourse import post, topic, webhook_request

SECRET = "wh-secret-for-tests"
FORUM = "https://forum.acme.test"


async def serve(publish, tmp_path, **settings) -> TestClient:
    app = web.Application()
    app.router.add_routes(webhook.routes(load_settings(discourse_url=FORUM, discourse_webhook_secret=SECRET,
                                                       discourse_api_username="acme_support",
                                                       var_dir=tmp_path / "var", **settings), publish))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


def delivery(headers: dict[str, str], event_id: int) -> dict[str, str]:
    """Discourse's retry: a new WebHookEvent (its id in the header), the same body and signature."""
    return {**headers, "X-Discourse-Event-Id": str(event_id)}


class Bus:
    """Publishes what it is given once ``mode`` is "up"; "down" raises as a bus that went away,
    "hang" takes the batch (it reached Redis) and never answers (the reply was lost)."""

    def __init__(self, mode: str = "up") -> None:
        self.mode, self.batches, self.calls = mode, [], 0

    async def __call__(self, batch) -> None:
        self.calls += 1
        if self.mode == "down":
            raise ConnectionError("the bus went away")
        self.batches.append(list(batch))
        if self.mode == "hang":
            await asyncio.Event().wait()


async def test_a_bus_failure_answers_503_with_retry_after_and_the_redelivery_is_accepted(tmp_path):
    bus = Bus("down")
    client = await serve(bus, tmp_path)
    try:
        raw, headers = webhook_request("post_created", {"post": post(301, topic_id=41)}, SECRET)
        first = await client.post(webhook.PATH, data=raw, headers=delivery(headers, 500))
        assert first.status == 503 and first.headers["Retry-After"] == "30", await first.text()
        assert "retry later" in (await first.json())["error"] and bus.batches == []
        bus.mode = "up"
        again = await client.post(webhook.PATH, data=raw, headers=delivery(headers, 501))
        assert again.status == 202, await again.text()
        assert (await again.json())["external_id"] == "41/1"
    finally:
        await client.close()
    assert [[m.external_id for m in b] for b in bus.batches] == [["41/1"]]


async def test_a_bus_that_hangs_is_answered_503_within_the_bound_and_the_redelivery_stored_once(db, tmp_path):
    """The post reached the bus but its answer never came: 503 after the bound, not the bus's 30 s;
    Discourse's retry is accepted too, and ingest keeps one post of the two copies."""
    bus = Bus("hang")
    client = await serve(bus, tmp_path, webhook_publish_timeout_seconds=0.3)
    try:
        raw, headers = webhook_request("post_created", {"post": post(302, topic_id=42)}, SECRET)
        started = time.monotonic()
        first = await asyncio.wait_for(client.post(webhook.PATH, data=raw, headers=delivery(headers, 600)), 8)
        assert first.status == 503 and first.headers["Retry-After"] == "30", await first.text()
        assert time.monotonic() - started < 5
        bus.mode = "up"
        again = await client.post(webhook.PATH, data=raw, headers=delivery(headers, 601))
        assert again.status == 202, await again.text()
    finally:
        await client.close()
    assert [[m.external_id for m in b] for b in bus.batches] == [["42/1"], ["42/1"]]
    outcomes = []
    for batch in bus.batches:  # each copy as the pipeline would ingest it, in order
        async with db.session() as s:
            outcomes += [r.outcome for r in await ingest_batch(s, batch)]
            await s.commit()
    assert outcomes == ["new", "duplicate"]
    async with db.session() as s:
        assert list(await s.scalars(select(Mention.external_id))) == ["42/1"]


async def test_a_topic_event_is_bounded_alike(tmp_path):
    bus = Bus("hang")
    client = await serve(bus, tmp_path, webhook_publish_timeout_seconds=0.3)
    try:
        raw, headers = webhook_request("topic_destroyed", {"topic": topic(43, deleted_at="2026-11-20T10:00:00Z")},
                                       SECRET)
        started = time.monotonic()
        resp = await asyncio.wait_for(client.post(webhook.PATH, data=raw, headers=headers), 8)
        assert resp.status == 503 and resp.headers["Retry-After"] == "30" and time.monotonic() - started < 5
    finally:
        await client.close()


async def test_redis_away_is_a_503_before_discourse_gives_up_not_after_the_bus_retries(tmp_path):
    """The real Redis bus retries for ``retry_seconds`` (30 s); the webhook answers within its bound."""
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = RedisStreamsBus(f"redis://127.0.0.1:{port}/0", retry_seconds=30.0)
    back = Bus("up")
    target = {"publish": lambda batch: submit(down, batch)}
    client = await serve(lambda batch: target["publish"](batch), tmp_path, webhook_publish_timeout_seconds=0.5)
    try:
        raw, headers = webhook_request("post_edited", {"post": post(304, topic_id=44, raw="edited")}, SECRET)
        started = time.monotonic()
        resp = await asyncio.wait_for(client.post(webhook.PATH, data=raw, headers=delivery(headers, 700)), 8)
        assert resp.status == 503 and resp.headers["Retry-After"] == "30"
        assert time.monotonic() - started < 5
        target["publish"] = back  # Redis is back; Discourse retries
        assert (await client.post(webhook.PATH, data=raw, headers=delivery(headers, 701))).status == 202
    finally:
        await client.close()
        await down.close()
    assert [[(m.external_id, m.text.endswith("edited")) for m in b] for b in back.batches] == [[("44/1", True)]]

