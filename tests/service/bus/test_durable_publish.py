"""Mentions put on the ingest topic are on Redis's disk before a connector saves its cursor or a
webhook answers 2xx (``WAITAOF``, Redis 7.2+ with ``appendonly yes``): a Redis crash losing its last
second of writes would otherwise lose posts no platform sends again. A Redis that cannot say so is
warned about once and not asked again; the messages go through either way."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
import redis.asyncio as redis

from listener.protocol import NormalizedMention
from service.bus.memory import InProcessBus
from service.bus.redis_streams import RedisStreamsBus
from service.pipeline import submit


async def can_confirm_disk(url: str) -> bool:
    """Does this server answer WAITAOF: version 7.2 or later, append-only file on?"""
    client = redis.Redis.from_url(url)
    try:
        version = tuple(int(x) for x in (await client.info("server"))["redis_version"].split(".")[:2])
        appendonly = (await client.config_get("appendonly")).get("appendonly") == "yes"
        return version >= (7, 2) and appendonly
    finally:
        await client.aclose()


@pytest.fixture
async def bus(redis_url, bus_prefix):
    b = RedisStreamsBus(redis_url, prefix=bus_prefix)
    await b.start()
    yield b
    await b.client.delete(*[k async for k in b.client.scan_iter(f"{bus_prefix}:*")] or ["-"])
    await b.close()


async def test_a_durable_publish_goes_through_and_asks_the_disk_only_where_redis_can_answer(bus, redis_url, caplog):
    expected = await can_confirm_disk(redis_url)
    with caplog.at_level(logging.WARNING, logger="socialcare.bus"):
        ids = await bus.publish_many("ingest", [(f"k{i}", {"i": i}) for i in range(3)], durable=True)
        again = await bus.publish_many("ingest", [("k3", {"i": 3})], durable=True)
    assert len(ids) == 3 and len(again) == 1
    assert await bus.client.xlen(bus.stream("ingest")) == 4
    assert bus._waitaof is expected
    warned = [r for r in caplog.records if "cannot confirm" in r.getMessage()]
    assert len(warned) == (0 if expected else 1)  # once, then not asked again
    assert "password" not in " ".join(r.getMessage() for r in warned)


async def test_on_a_server_with_its_append_only_file_on_the_answer_is_read(private_redis, bus_prefix, caplog):
    b = RedisStreamsBus(private_redis.url, prefix=bus_prefix)
    try:
        expected = await can_confirm_disk(private_redis.url)  # this server runs appendonly yes
        with caplog.at_level(logging.WARNING, logger="socialcare.bus"):
            await b.publish_many("ingest", [("k", {"i": 1})], durable=True)
        assert b._waitaof is expected
        assert any("cannot confirm" in r.getMessage() for r in caplog.records) is (not expected)
    finally:
        await b.close()


async def test_a_refused_write_in_a_durable_publish_still_raises(bus):
    await bus.client.set(bus.stream("ingest"), "not a stream")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        await bus.publish_many("ingest", [("k", {"i": 1})], durable=True)


async def test_mentions_are_submitted_durably():
    class Recording(InProcessBus):
        calls: list[tuple[str, bool]] = []

        async def publish_many(self, topic, items, *, durable=False):
            self.calls.append((topic, durable))
            return await super().publish_many(topic, items, durable=durable)

    b = Recording()
    await submit(b, [NormalizedMention(platform="x", external_id="1", text="hi", created_at=datetime.now(UTC))])
    assert b.calls == [("ingest", True)]
