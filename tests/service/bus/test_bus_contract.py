"""The bus contract (service.bus.base), specified once and run against both backends."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import pytest
from bus_helpers import CLAIM_IDLE_MS, MAX_DELIVERIES

from service.bus.codec import CodecError

T, G = "triage", "triage"


async def drain(bus, topic=T, group=G, consumer="c1", count=100):
    """Everything the group has for this consumer right now, without acking."""
    out = []
    while batch := await bus.read(topic, group, consumer, count, 0):
        out += batch
    return out


async def test_messages_arrive_in_publish_order_with_their_payloads(bus):
    await bus.ensure_group(T, G)
    await bus.publish(T, {"n": 0}, "k0")
    await bus.publish_many(T, [(f"k{i}", {"n": i, "text": f"mention {i}"}) for i in range(1, 30)])
    got = await drain(bus, count=7)
    assert [e.key for e in got] == [f"k{i}" for i in range(30)]
    assert [e.payload["n"] for e in got] == list(range(30))
    assert all(e.topic == T and e.attempts == 1 for e in got)
    assert len({e.id for e in got}) == 30


async def test_publish_returns_the_ids_the_consumer_sees(bus):
    await bus.ensure_group(T, G)
    ids = await bus.publish_many(T, [("a", {}), ("b", {})]) + [await bus.publish(T, {}, "c")]
    assert [e.id for e in await drain(bus)] == ids


async def test_every_group_sees_every_message(bus):
    for group in ("route", "audit"):
        await bus.ensure_group(T, group)
    await bus.publish_many(T, [(f"k{i}", {"n": i}) for i in range(5)])
    for group in ("route", "audit"):
        assert [e.key for e in await drain(bus, group=group)] == [f"k{i}" for i in range(5)]


async def test_consumers_of_one_group_share_its_messages(bus):
    await bus.ensure_group(T, G)
    await bus.publish_many(T, [(f"k{i}", {}) for i in range(10)])
    first = await bus.read(T, G, "c1", 4, 0)
    rest = await drain(bus, consumer="c2")
    assert [e.key for e in first] == [f"k{i}" for i in range(4)]
    assert [e.key for e in rest] == [f"k{i}" for i in range(4, 10)]
    assert await drain(bus, consumer="c1") == []


async def test_a_group_created_after_publishing_reads_from_the_topic_start(bus):
    await bus.publish_many(T, [("early-1", {}), ("early-2", {})])
    await bus.ensure_group(T, "late")
    await bus.ensure_group(T, "late")  # idempotent: does not reset the group
    assert [e.key for e in await drain(bus, group="late")] == ["early-1", "early-2"]
    await bus.ensure_group(T, "late")
    assert await drain(bus, group="late") == []


async def test_pending_counts_deliveries_until_acked(bus):
    await bus.ensure_group(T, G)
    await bus.publish_many(T, [(f"k{i}", {}) for i in range(5)])
    got = await drain(bus)
    assert await bus.pending(T, G) == 5
    await bus.ack(T, G, [e.id for e in got[:3]])
    assert await bus.pending(T, G) == 2
    await bus.ack(T, G, [got[0].id])  # acking twice is harmless
    assert await bus.pending(T, G) == 2
    await bus.ack(T, G, [e.id for e in got[3:]])
    assert await bus.pending(T, G) == 0
    assert await bus.pending(T, "never-created") == 0


async def test_lag_counts_messages_not_yet_delivered_to_the_group(bus):
    assert await bus.lag("empty", G) == 0
    await bus.ensure_group(T, G)
    await bus.publish_many(T, [(f"k{i}", {}) for i in range(10)])
    assert await bus.lag(T, G) == 10
    await bus.read(T, G, "c1", 4, 0)
    assert (await bus.lag(T, G), await bus.pending(T, G)) == (6, 4)
    await drain(bus)
    assert await bus.lag(T, G) == 0


async def test_a_failed_message_is_delivered_again_with_one_more_attempt(bus):
    await bus.ensure_group(T, G)
    await bus.publish(T, {"text": "hello"}, "m1")
    [first] = await drain(bus)
    assert await bus.fail(T, G, first, "ValueError: boom") is False
    [again] = await drain(bus, consumer="c2")
    assert (again.key, again.payload, again.attempts) == ("m1", {"text": "hello"}, 2)
    assert await bus.pending(T, G) == 1  # the retry, not the failed delivery
    await bus.ack(T, G, [again.id])
    assert await bus.pending(T, G) == 0 and await bus.dead_letters() == []


async def test_after_max_deliveries_the_message_becomes_a_dead_letter_with_its_reason(bus):
    await bus.ensure_group(T, G)
    await bus.publish(T, {"text": "poison"}, "p1")
    outcomes = []
    for attempt in range(1, MAX_DELIVERIES + 1):
        [env] = await drain(bus)
        assert env.attempts == attempt
        outcomes.append(await bus.fail(T, G, env, f"KeyError: attempt {attempt}"))
    assert outcomes == [False] * (MAX_DELIVERIES - 1) + [True]
    assert await drain(bus) == []
    assert (await bus.pending(T, G), await bus.lag(T, G)) == (0, 0)
    [dead] = await bus.dead_letters()
    assert (dead.topic, dead.key, dead.payload) == (T, "p1", {"text": "poison"})
    assert dead.attempts == MAX_DELIVERIES and dead.reason == f"KeyError: attempt {MAX_DELIVERIES}"
    assert datetime.fromisoformat(dead.failed_at).utcoffset().total_seconds() == 0


async def test_a_poison_message_never_blocks_the_messages_behind_it(bus):
    await bus.ensure_group(T, G)
    await bus.publish_many(T, [("poison", {})] + [(f"ok{i}", {}) for i in range(5)])
    seen = []
    while batch := await bus.read(T, G, "c1", 1, 0):  # the worst case: one message per read
        [env] = batch
        seen.append((env.key, env.attempts))
        if env.key == "poison":
            await bus.fail(T, G, env, "always fails")
        else:
            await bus.ack(T, G, [env.id])
    assert seen.index(("poison", 2)) > max(seen.index((f"ok{i}", 1)) for i in range(5))
    assert [k for k, _ in seen].count("poison") == MAX_DELIVERIES
    assert [d.key for d in await bus.dead_letters()] == ["poison"]


async def test_a_crashed_consumers_deliveries_are_claimed_by_another_after_the_idle_time(open_bus):
    crashed, survivor = await open_bus(), await open_bus()
    await crashed.ensure_group(T, G)
    await crashed.publish_many(T, [(f"k{i}", {"i": i}) for i in range(5)])
    lost = await crashed.read(T, G, "crashed", 3, 0)  # then it dies: never acks
    own = await drain(survivor, consumer="survivor")
    assert [e.key for e in own] == ["k3", "k4"]  # the crashed consumer's are not idle long enough yet
    await survivor.ack(T, G, [e.id for e in own])
    await asyncio.sleep(CLAIM_IDLE_MS / 1000 + 0.15)
    batches = [await survivor.read(T, G, "survivor", 10, 0) for _ in range(3)]  # one at a time, at once
    assert [len(b) for b in batches] == [1, 1, 1]
    claimed = [e for b in batches for e in b]
    assert [(e.key, e.payload["i"], e.attempts) for e in claimed] == [("k0", 0, 2), ("k1", 1, 2), ("k2", 2, 2)]
    assert [e.id for e in claimed] == [e.id for e in lost]
    assert await survivor.read(T, G, "survivor", 10, 0) == []  # claimed once, not again at once
    await survivor.ack(T, G, [e.id for e in claimed])
    assert await survivor.pending(T, G) == 0


async def test_a_message_that_kills_every_consumer_ends_as_a_dead_letter(bus):
    await bus.ensure_group(T, G)
    await bus.publish_many(T, [("killer", {})])
    attempts = []
    deadline = time.monotonic() + 10
    while not await bus.dead_letters() and time.monotonic() < deadline:
        attempts += [e.attempts for e in await bus.read(T, G, f"c{len(attempts)}", 1, 0)]  # read, "crash"
        await asyncio.sleep(CLAIM_IDLE_MS / 1000 / 2)
    assert attempts == list(range(1, MAX_DELIVERIES + 1))
    [dead] = await bus.dead_letters()
    assert dead.key == "killer" and dead.attempts == MAX_DELIVERIES + 1 and "without an ack" in dead.reason
    assert await bus.pending(T, G) == 0


async def test_a_retried_dead_letter_returns_to_its_topic_with_fresh_attempts(bus):
    await bus.ensure_group(T, G)
    await bus.publish(T, {"text": "x"}, "p1")
    for _ in range(MAX_DELIVERIES):
        [env] = await drain(bus)
        await bus.fail(T, G, env, "bug")
    [dead] = await bus.dead_letters()
    assert await bus.retry_dead_letter(dead.id) is True
    assert await bus.dead_letters() == []
    [env] = await drain(bus)
    assert (env.key, env.payload, env.attempts) == ("p1", {"text": "x"}, 1)
    assert await bus.retry_dead_letter(dead.id) is False
    assert await bus.retry_dead_letter("no-such-id") is False
    assert await bus.retry_dead_letter("999-0") is False


async def test_a_retried_dead_letter_goes_back_to_the_failing_group_only(bus):
    for group in ("g1", "g2"):
        await bus.ensure_group(T, group)
    await bus.publish(T, {}, "p1")
    assert [e.key for e in await drain(bus, group="g2")] == ["p1"]  # g2 handles it fine
    for _ in range(MAX_DELIVERIES):
        [env] = await drain(bus, group="g1")
        await bus.fail(T, "g1", env, "g1 cannot")
    [dead] = await bus.dead_letters()
    assert await bus.retry_dead_letter(dead.id)
    assert [(e.key, e.attempts) for e in await drain(bus, group="g1")] == [("p1", 1)]
    assert await drain(bus, group="g2") == []


async def test_concurrent_retries_of_one_dead_letter_republish_it_once(open_bus):
    a, b = await open_bus(), await open_bus()
    await a.ensure_group(T, G)
    await a.publish(T, {}, "p1")
    for _ in range(MAX_DELIVERIES):
        [env] = await drain(a)
        await a.fail(T, G, env, "bug")
    [dead] = await a.dead_letters()
    results = await asyncio.gather(a.retry_dead_letter(dead.id), b.retry_dead_letter(dead.id))
    assert sorted(results) == [False, True]
    assert [e.key for e in await drain(a)] == ["p1"]


async def test_dead_letters_are_listed_oldest_first_per_topic_and_limited(bus):
    for topic, key in [("act", "a1"), (T, "t1"), ("act", "a2"), ("act", "a3")]:
        await bus.ensure_group(topic, topic)
        await bus.publish(topic, {}, key)
        for _ in range(MAX_DELIVERIES):
            [env] = await drain(bus, topic=topic, group=topic)
            await bus.fail(topic, topic, env, f"failed {key}")
    assert [d.key for d in await bus.dead_letters()] == ["a1", "t1", "a2", "a3"]
    assert [d.key for d in await bus.dead_letters("act")] == ["a1", "a2", "a3"]
    assert [d.key for d in await bus.dead_letters("act", limit=2)] == ["a1", "a2"]
    assert await bus.dead_letters("ingest") == []


async def test_deleted_dead_letters_are_gone_for_good_and_only_they(open_bus):
    a, b = await open_bus(), await open_bus()
    await a.ensure_group(T, G)
    for key in ("d1", "d2", "d3"):
        await a.publish(T, {"text": f"secret {key}"}, key)
    for _ in range(MAX_DELIVERIES):
        for env in await drain(a):
            await a.fail(T, G, env, "bug")
    d1, d2, d3 = await a.dead_letters()
    assert await a.delete_dead_letters([]) == 0
    assert await a.delete_dead_letters([d1.id, d3.id, d1.id, "no-such-id", "999-0"]) == 2  # unknown ids skipped
    assert [d.key for d in await b.dead_letters()] == ["d2"]  # every handle sees it
    assert await b.delete_dead_letters([d1.id]) == 0 and await b.retry_dead_letter(d3.id) is False
    assert await drain(a) == []  # removed, not retried
    results = await asyncio.gather(a.delete_dead_letters([d2.id]), b.delete_dead_letters([d2.id]))
    assert sorted(results) == [0, 1] and await a.dead_letters() == []


async def test_a_blocking_read_wakes_up_as_soon_as_a_message_is_published(open_bus):
    reader, writer = await open_bus(), await open_bus()
    await reader.ensure_group(T, G)
    started = time.monotonic()
    task = asyncio.create_task(reader.read(T, G, "c1", 10, 5_000))
    await asyncio.sleep(0.2)
    await writer.publish(T, {}, "wake")
    got = await asyncio.wait_for(task, 5)
    assert [e.key for e in got] == ["wake"]
    assert time.monotonic() - started < 1.0


async def test_a_blocking_read_times_out_empty_and_a_zero_block_does_not_wait(bus):
    await bus.ensure_group(T, G)
    started = time.monotonic()
    assert await bus.read(T, G, "c1", 10, 300) == []
    assert 0.25 <= time.monotonic() - started < 2.0
    started = time.monotonic()
    assert await bus.read(T, G, "c1", 10, 0) == []
    assert time.monotonic() - started < 0.2


@pytest.mark.parametrize("text", ["\ud800 lone surrogates \ud800\udfff", "nul\x00bell\x07esc\x1b[31m", "ünïcödé 🎉 مرحبا",
                                  "x" * 1_500_000])
async def test_any_text_survives_the_trip(bus, text):
    await bus.ensure_group(T, G)
    await bus.publish(T, {"text": text, "nested": [{"t": text[:50]}]}, text[:100])
    [env] = await drain(bus)
    assert env.key == text[:100] and env.payload == {"text": text, "nested": [{"t": text[:50]}]}
    for _ in range(MAX_DELIVERIES - 1):  # and through failures into the dead-letter stream
        await bus.fail(T, G, env, f"reason with {text[:20]}")
        [env] = await drain(bus)
    await bus.fail(T, G, env, "last")
    [dead] = await bus.dead_letters()
    assert (dead.key, dead.payload["text"]) == (text[:100], text)


async def test_a_payload_that_is_not_json_is_refused_and_nothing_is_published(bus):
    await bus.ensure_group(T, G)
    with pytest.raises(CodecError, match="datetime"):
        await bus.publish_many(T, [("ok", {"n": 1}), ("bad", {"at": datetime(2026, 1, 1)})])
    with pytest.raises(CodecError):
        await bus.publish(T, ["not", "a", "dict"], "k")  # type: ignore[arg-type]
    assert await bus.lag(T, G) == 0


async def test_a_consumer_mutating_its_payload_affects_no_other_delivery(bus):
    for group in ("g1", "g2"):
        await bus.ensure_group(T, group)
    await bus.publish(T, {"tags": ["a"]}, "k")
    [env] = await drain(bus, group="g1")
    env.payload["tags"].append("mutated")
    await bus.fail(T, "g1", env, "retry me")
    assert [e.payload for e in await drain(bus, group="g1")] == [{"tags": ["a"]}]
    assert [e.payload for e in await drain(bus, group="g2")] == [{"tags": ["a"]}]


async def test_a_flat_payload_is_each_deliverys_own_copy_of_what_was_published(bus):
    for group in ("g1", "g2"):
        await bus.ensure_group(T, group)
    payload = {"mention_id": 7, "t0": 1.5, "outcome": "ignore", "sent": True, "none": None}
    await bus.publish(T, payload, "k")
    payload["mention_id"] = 8  # the publisher's dict changes after publishing: the message does not
    [env] = await drain(bus, group="g1")
    env.payload["mention_id"] = 9
    await bus.fail(T, "g1", env, "retry me")
    expected = {"mention_id": 7, "t0": 1.5, "outcome": "ignore", "sent": True, "none": None}
    assert [e.payload for e in await drain(bus, group="g1")] == [expected]
    assert [e.payload for e in await drain(bus, group="g2")] == [expected]


async def test_a_payload_json_would_change_arrives_as_json_gives_it_back(bus):
    await bus.ensure_group(T, G)
    await bus.publish(T, {"pair": (1, 2), 3: "three"}, "k")  # a tuple, a key that is not a string
    assert [e.payload for e in await drain(bus)] == [{"pair": [1, 2], "3": "three"}]


async def test_ping_answers(bus):
    assert await bus.ping() is True
