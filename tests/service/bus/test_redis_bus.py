"""Redis-only behaviour: corrupted entries, lost connections, a restarted server."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aredis
from bus_helpers import CLAIM_IDLE_MS, MAX_DELIVERIES, delete_keys

from service.bus import BusUnavailable
from service.bus.codec import CodecError, decode
from service.bus.redis_streams import RedisStreamsBus

T, G = "triage", "triage"


@pytest.fixture
async def bus(redis_url, bus_prefix):
    b = RedisStreamsBus(redis_url, prefix=bus_prefix, max_deliveries=MAX_DELIVERIES, claim_idle_ms=CLAIM_IDLE_MS)
    await b.start()
    yield b
    await b.close()
    delete_keys(redis_url, bus_prefix)


@pytest.fixture
async def admin(redis_url):
    client = aredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def kill_bus_connections(admin, bus) -> int:
    """Drop every connection of this bus's client, as a Redis restart would (only ours: the
    machine's Redis serves others too)."""
    name = f"socialcare-bus:{bus.prefix}"
    ids = [c["id"] for c in await admin.client_list() if c.get("name") == name]
    for cid in ids:
        await admin.execute_command("CLIENT", "KILL", "ID", cid)
    return len(ids)


async def test_a_corrupted_entry_becomes_an_undecodable_dead_letter_and_the_rest_flows(bus, admin):
    await bus.ensure_group(T, G)
    await bus.publish(T, {"n": 1}, "before")
    await admin.xadd(bus.stream(T), {b"k": b"\xff\xfe not utf-8", b"junk": b"\x00\x01"})
    await admin.xadd(bus.stream(T), {b"k": b'"no payload"'})
    await bus.publish(T, {"n": 2}, "after")
    got = await bus.read(T, G, "c1", 10, 0)
    assert [e.key for e in got] == ["before", "after"]
    assert await bus.pending(T, G) == 2  # the corrupted ones are acked, not stuck
    dead = await bus.dead_letters()
    assert [d.reason for d in dead] == ["undecodable", "undecodable"]
    assert [d.topic for d in dead] == [T, T] and all(d.extra["group"] == G for d in dead)
    assert "not UTF-8" in dead[0].extra["undecodable"] and "'p'" in dead[1].extra["undecodable"]
    stored = (await admin.xrange(bus.dead_stream, min=dead[0].id, max=dead[0].id))[0][1]
    assert stored[b"raw:k"] == b"\xff\xfe not utf-8" and stored[b"raw:junk"] == b"\x00\x01"  # nothing lost
    with pytest.raises(CodecError, match="cannot be retried"):
        await bus.retry_dead_letter(dead[0].id)
    assert len(await bus.dead_letters()) == 2


async def test_a_garbled_dead_letter_entry_is_still_listed(bus, admin):
    await admin.xadd(bus.dead_stream, {"topic": "act", "key": "not json", "attempts": "x"})
    [dead] = await bus.dead_letters()
    assert dead.topic == "act" and dead.attempts == 0 and "undecodable" in dead.extra


async def test_operations_survive_their_connections_being_killed(bus, admin):
    await bus.ensure_group(T, G)
    await bus.publish(T, {}, "k1")
    assert await kill_bus_connections(admin, bus) >= 1
    await bus.publish(T, {}, "k2")
    assert await kill_bus_connections(admin, bus) >= 1
    got = await bus.read(T, G, "c1", 10, 0)
    assert [e.key for e in got] == ["k1", "k2"]
    assert await kill_bus_connections(admin, bus) >= 1
    await bus.ack(T, G, [e.id for e in got])
    assert await bus.pending(T, G) == 0


async def test_a_blocking_read_whose_connection_dies_keeps_waiting_and_gets_the_message(bus, admin, redis_url):
    await bus.ensure_group(T, G)
    task = asyncio.create_task(bus.read(T, G, "c1", 10, 5_000))
    await asyncio.sleep(0.3)
    assert await kill_bus_connections(admin, bus) >= 1
    await asyncio.sleep(0.2)
    writer = RedisStreamsBus(redis_url, prefix=bus.prefix)
    await writer.publish(T, {}, "late")
    await writer.close()
    assert [e.key for e in await asyncio.wait_for(task, 10)] == ["late"]


async def test_a_restarted_redis_with_its_data_is_picked_up_again(private_redis):
    bus = RedisStreamsBus(private_redis.url, prefix="sc", max_deliveries=MAX_DELIVERIES, claim_idle_ms=CLAIM_IDLE_MS)
    try:
        await bus.ensure_group(T, G)
        await bus.publish_many(T, [(f"k{i}", {"i": i}) for i in range(4)])
        first = await bus.read(T, G, "c1", 2, 0)
        await bus.ack(T, G, [first[0].id])
        await asyncio.to_thread(private_redis.restart)
        assert await bus.pending(T, G) == 1 and await bus.lag(T, G) == 2  # state kept, client reconnected
        await bus.ack(T, G, [first[1].id])
        rest = await bus.read(T, G, "c1", 10, 0)
        assert [e.key for e in rest] == ["k2", "k3"]
        await bus.ack(T, G, [e.id for e in rest])

        await asyncio.to_thread(private_redis.stop)  # down for a while: a publish waits for it
        publishing = asyncio.create_task(bus.publish(T, {}, "during-outage"))
        await asyncio.sleep(1.0)
        assert not publishing.done()
        await asyncio.to_thread(private_redis.start)
        await asyncio.wait_for(publishing, 30)
        assert [e.key for e in await bus.read(T, G, "c1", 10, 0)] == ["during-outage"]
    finally:
        await bus.close()


async def test_a_redis_that_stays_down_raises_bus_unavailable_after_the_retry_window(private_redis):
    url = private_redis.url.replace("redis://", "redis://:s3cret-pw@")
    bus = RedisStreamsBus(url, prefix="sc", retry_seconds=1.0)
    await asyncio.to_thread(private_redis.stop)
    try:
        assert await bus.ping() is False
        for operation in (lambda: bus.publish(T, {}, "k"), lambda: bus.read(T, G, "c1", 1, 100),
                          lambda: bus.ack(T, G, ["1-0"])):
            started = time.monotonic()
            with pytest.raises(BusUnavailable, match="did not answer") as info:
                await operation()
            assert 0.9 <= time.monotonic() - started < 5
            assert "s3cret" not in str(info.value)  # the URL's password never reaches a message
    finally:
        await bus.close()


async def test_a_consumer_group_lost_with_an_emptied_redis_is_recreated_on_read(bus, admin):
    await bus.ensure_group(T, G)
    await admin.delete(bus.stream(T))  # what a restart without persistence looks like to us
    assert await bus.read(T, G, "c1", 10, 0) == []
    await bus.publish(T, {}, "k1")
    assert [e.key for e in await bus.read(T, G, "c1", 10, 0)] == ["k1"]


async def test_streams_are_named_by_prefix_and_topic_and_not_trimmed_by_reading(bus, admin):
    await bus.publish_many(T, [(f"k{i}", {}) for i in range(1200)])  # more than one pipeline chunk
    assert await admin.xlen(f"{bus.prefix}:{T}") == 1200
    await bus.ensure_group(T, G)
    got = []
    while batch := await bus.read(T, G, "c1", 500, 0):
        got += batch
        await bus.ack(T, G, [e.id for e in batch])
    assert [e.key for e in got] == [f"k{i}" for i in range(1200)]
    assert await admin.xlen(f"{bus.prefix}:{T}") == 1200


async def test_trimming_drops_only_what_every_group_acknowledged(bus, admin):
    """Entries hold whole posts: once every group has acknowledged them they go. A pending entry
    (its consumer may die and another claim it), an unread one, and a topic no group reads yet stay."""
    stream = f"{bus.prefix}:{T}"
    await bus.publish_many(T, [(f"k{i}", {"text": f"post {i}"}) for i in range(10)])
    assert await bus.trim(T) == 0 and await admin.xlen(stream) == 10  # no group yet: its first reads all
    await bus.ensure_group(T, G)
    await bus.ensure_group(T, "audit")  # a second group of the same topic, behind the first
    first = await bus.read(T, G, "c1", 6, 0)
    await bus.ack(T, G, [e.id for e in first[:2]] + [e.id for e in first[3:]])  # k2 stays pending
    other = await bus.read(T, "audit", "a1", 4, 0)
    await bus.ack(T, "audit", [e.id for e in other])
    assert await bus.trim(T) == 2  # k0, k1: acknowledged by both groups; k2 is pending in one
    assert [decode(fields).key for _, fields in await admin.xrange(stream)] == [f"k{i}" for i in range(2, 10)]
    assert (await bus.pending(T, G), await bus.lag(T, G), await bus.lag(T, "audit")) == (1, 4, 6)
    await bus.ack(T, G, [first[2].id])
    rest = await bus.read(T, "audit", "a1", 10, 0)
    await bus.ack(T, "audit", [e.id for e in rest])
    assert await bus.trim(T) == 4  # k2..k5; k6..k9 are still unread by the first group
    assert [e.key for e in await bus.read(T, G, "c1", 10, 0)] == [f"k{i}" for i in range(6, 10)]


async def test_a_stale_entries_read_counter_does_not_report_work_that_is_not_there(bus, admin):
    """Redis computes a group's lag from its entries-read counter; after a restart from the
    append-only file that counter was seen 38,196 behind with nothing left to read, which kept a
    drained pipeline looking busy forever. Lag is 0 once the group has delivered the last entry."""
    await bus.ensure_group(T, G)
    for i in range(5):
        await bus.publish(T, {"n": i}, f"k{i}")
    got = await bus.read(T, G, "c1", 10, 0)
    await bus.ack(T, G, [e.id for e in got])
    assert await bus.lag(T, G) == 0
    await admin.execute_command("XGROUP", "SETID", bus.stream(T), G, "$", "ENTRIESREAD", "0")  # the stale state
    assert int(next(g for g in await admin.xinfo_groups(bus.stream(T)) if g["name"] == G.encode())["lag"]) == 5
    assert await bus.lag(T, G) == 0
    await bus.publish(T, {"n": 5}, "k5")
    assert await bus.lag(T, G) >= 1  # real work still shows
    [last] = await bus.read(T, G, "c1", 10, 0)
    await bus.ack(T, G, [last.id])
    assert await bus.lag(T, G) == 0
