"""Dead letters of a post whose content was removed, found by post (service.bus.redis_deadletters):
a content removal reads its posts' letters only, not the whole stream, finds those buried before
the index existed, and keeps the ordering with a burial; the index names live letters only (a
retry, a discard, a purge and a rewrite take theirs out) and never their words. A letter rewritten
under a new id is still reached by its old one: a discard or a retry of it acts on the rewritten
letter. The index on a real Redis; the old ids on both backends."""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import UTC, datetime

import pytest
from bus_helpers import delete_keys

from listener.protocol import NormalizedMention
from models.mentions import DELETED_TEXT
from service import deadletters
from service.bus.codec import Message, encode_dead_letter
from service.bus.memory import InProcessBus
from service.bus.redis_deadletters import MOVED_S
from service.bus.redis_streams import RedisStreamsBus
from service.pipeline import ingest_key

T0 = datetime(2026, 12, 1, 8, tzinfo=UTC)


def tweet(eid: str, handle: str = "tom", *, event: str = "upsert", remove_content: bool = False) -> dict:
    nm = NormalizedMention(platform="x", external_id=eid, text=f"zqxwords of {eid}", created_at=T0,
                           author_id=f"id-{handle}", author_handle=handle, url=f"https://x.com/{handle}/status/{eid}",
                           event=event, remove_content=remove_content, raw={"id": eid, "text": f"zqxwords of {eid}"})
    return {"mention": nm.to_dict(), "t0": 1.0}


async def bury(bus, *eids: str, handle: str = "tom") -> None:
    """Dead-letter an ingest message of each post, as a failing ingest stage does (one attempt)."""
    await bus.ensure_group("ingest", "ingest")
    await bus.publish_many("ingest", [(ingest_key(NormalizedMention(platform="x", external_id=e, text="",
                                                                    created_at=T0)), tweet(e, handle)) for e in eids])
    for env in await bus.read("ingest", "ingest", "worker", len(eids), 0):
        assert await bus.fail("ingest", "ingest", env, f"ValueError: zqxwords in {env.key}")


def words(letter) -> bool:
    return "zqxwords" in json.dumps(letter.payload) + letter.reason


@pytest.fixture
async def redis_bus(redis_url, bus_prefix):
    bus = RedisStreamsBus(redis_url, prefix=bus_prefix, max_deliveries=1)
    await bus.start()
    yield bus
    await bus.close()
    delete_keys(redis_url, bus_prefix)


@pytest.fixture
async def bus(make_bus):
    return await make_bus(1)


@pytest.fixture
def decoded(monkeypatch):
    """How many dead-letter entries were decoded (read), by any module of the bus."""
    seen = Counter()
    for name, module in list(sys.modules.items()):
        real = getattr(module, "decode_dead_letter", None)
        if name.startswith("service.bus") and real is not None:
            def counting(entry_id, raw, real=real):
                seen["letters"] += 1
                return real(entry_id, raw)
            monkeypatch.setattr(module, "decode_dead_letter", counting)
    return seen


async def index(bus: RedisStreamsBus) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The index as stored: entry id -> post, and post -> entry ids."""
    post_of = await bus.client.hgetall(f"{bus.dead_stream}:post-of")
    by_post = await bus.client.hgetall(f"{bus.dead_stream}:by-post")
    return ({k.decode(): v.decode() for k, v in post_of.items()},
            {k.decode(): sorted(v.decode().split()) for k, v in by_post.items()})


async def stream_index(bus: RedisStreamsBus) -> tuple[dict[str, str], dict[str, list[str]]]:
    """What the index must be: every letter in the stream, by its post (none: "")."""
    post_of = {}
    for d in await bus.dead_letters(None, 10**9):
        m = d.payload.get("mention")
        post_of[d.id] = json.dumps([m["platform"], m["external_id"]]) if isinstance(m, dict) else ""
    by_post: dict[str, list[str]] = {}
    for dead_id, post in post_of.items():
        if post:
            by_post.setdefault(post, []).append(dead_id)
    return post_of, {k: sorted(v) for k, v in by_post.items()}


async def test_a_content_removal_reads_its_posts_letters_only(redis_bus, decoded):
    await bury(redis_bus, *(f"other-{i}" for i in range(300)))
    await bury(redis_bus, "gone", "gone")  # two letters of the post (a new post and its edit, say)
    decoded.clear()
    assert await redis_bus.remove_content({("x", "gone")}) == 2
    assert decoded["letters"] <= 2  # the two letters, not the 302 of the stream
    decoded.clear()
    assert await redis_bus.remove_content({("x", "never-dead-lettered")}) == 0
    assert decoded["letters"] == 0
    letters = await redis_bus.dead_letters(None, 1000)
    assert [d.payload["mention"]["text"] for d in letters if not words(d)] == [DELETED_TEXT, DELETED_TEXT]
    assert sum(map(words, letters)) == 300


async def test_letters_buried_before_the_index_are_found_then_the_index_is_read(redis_bus, decoded):
    """An older release wrote letters without the index: the first removal finds them (it indexes
    the stream once); the next ones read the index only."""
    for eid in ["old-1", "gone", "old-2"]:
        msg = Message(f"x:{eid}", tweet(eid), 1, 1.0)
        await redis_bus.client.xadd(redis_bus.dead_stream, encode_dead_letter(
            "ingest", "ingest", "1-1", "ValueError: zqxwords", msg))
    await bury(redis_bus, "new")  # with the index
    assert await redis_bus.remove_content({("x", "gone")}) == 1
    decoded.clear()
    assert await redis_bus.remove_content({("x", "old-2")}) == 1
    assert decoded["letters"] == 1
    assert [d.payload["mention"]["external_id"] for d in await redis_bus.dead_letters() if words(d)] == ["old-1", "new"]


async def test_the_index_holds_the_live_letters_only_and_no_words(redis_bus, decoded):
    await bury(redis_bus, "a", "a", "b", "c", "d", "e")
    await redis_bus.ensure_group("triage", "triage")  # a later stage's letter: no post
    await redis_bus.publish("triage", {"mention_id": 7}, "m:7")
    [env] = await redis_bus.read("triage", "triage", "w", 1, 0)
    await redis_bus.fail("triage", "triage", env, "boom")
    assert await index(redis_bus) == await stream_index(redis_bus)

    ids = {d.payload.get("mention", {}).get("external_id"): d.id for d in await redis_bus.dead_letters()}
    assert await redis_bus.retry_dead_letter(ids["b"])
    assert await redis_bus.delete_dead_letters([ids["c"]]) == 1  # a discard, an erasure, the purge
    assert await redis_bus.remove_content({("x", "a"), ("x", "d")}) == 3  # rewritten: new ids
    post_of, by_post = await index(redis_bus)
    assert (post_of, by_post) == await stream_index(redis_bus)
    assert sorted(by_post) == [json.dumps(["x", p]) for p in ("a", "d", "e")] and len(post_of) == 5
    assert "zqx" not in json.dumps([post_of, by_post]) and "tom" not in json.dumps([post_of, by_post])

    left = [d.id for d in await redis_bus.dead_letters()]
    await redis_bus.client.xdel(redis_bus.dead_stream, left[0])  # deleted by hand: no script kept the index
    await redis_bus.remove_content({("x", "zzz")})
    assert await index(redis_bus) == await stream_index(redis_bus)  # its entry went with the next look
    assert await redis_bus.delete_dead_letters(left[1:]) == 4
    assert await index(redis_bus) == ({}, {})


async def test_a_letter_buried_while_a_removal_reads_the_index_is_rewritten_by_one_of_them(
        redis_bus, redis_url, monkeypatch):
    """Both messages were published before the removal. The removal has remembered the post and not
    yet read the index when another worker buries one: the burial sees the removal and writes it
    without the words (the module's ordering); the other, buried just before, the index shows to
    the removal."""
    other = RedisStreamsBus(redis_url, prefix=redis_bus.prefix, max_deliveries=1)  # another worker's client
    await other.ensure_group("ingest", "ingest")
    await other.publish_many("ingest", [("x:before", tweet("before")), ("x:during", tweet("during"))])
    first, second = await other.read("ingest", "ingest", "worker", 10, 0)
    await other.fail("ingest", "ingest", first, "ValueError: zqxwords")
    real, burials = redis_bus._call, []

    async def burial_after_remembering(what, fn):
        done = await real(what, fn)
        if what == "remove content" and not burials:  # the post remembered, its letters not read yet
            burials.append(await other.fail("ingest", "ingest", second, "ValueError: zqxwords"))
        return done

    monkeypatch.setattr(redis_bus, "_call", burial_after_remembering)
    try:
        assert await redis_bus.remove_content({("x", "before"), ("x", "during")}) == 1  # "during" rewrote itself
        assert burials == [True]
    finally:
        await other.close()
    letters = await redis_bus.dead_letters()
    assert sorted(d.payload["mention"]["external_id"] for d in letters) == ["before", "during"]
    assert not any(map(words, letters))


async def rewritten(bus) -> tuple[str, str]:
    """A letter, and its id once the post's content was removed (a new one on Redis)."""
    await bury(bus, "gone", handle="maria")
    await bury(bus, "kept", handle="ann")
    [old] = [d.id for d in await bus.dead_letters() if d.payload["mention"]["external_id"] == "gone"]
    await bus.publish("ingest", tweet("gone", "maria", event="delete", remove_content=True), "x:gone:delete")
    [new] = [d.id for d in await bus.dead_letters() if d.payload["mention"]["external_id"] == "gone"]
    assert (old == new) == isinstance(bus, InProcessBus)
    return old, new


async def test_a_discard_by_the_id_listed_before_a_rewrite_removes_the_rewritten_letter(bus):
    old, _ = await rewritten(bus)
    outcome = await deadletters.discard(bus, [old])
    assert (outcome.done, outcome.missing) == ([old], [])
    assert [d.payload["mention"]["author_handle"] for d in await bus.dead_letters()] == ["ann"]
    assert (await deadletters.discard(bus, [old])).missing == [old]  # once only


async def test_a_retry_by_the_id_listed_before_a_rewrite_retries_the_rewritten_letter(bus):
    old, _ = await rewritten(bus)
    [_deletion] = await bus.read("ingest", "ingest", "worker", 10, 0)  # the deletion published
    assert (await deadletters.retry(bus, [old])).done == [old]
    [back] = await bus.read("ingest", "ingest", "worker", 10, 0)
    assert (back.payload["mention"]["event"], back.payload["mention"]["text"]) == ("delete", DELETED_TEXT)
    assert [d.payload["mention"]["author_handle"] for d in await bus.dead_letters()] == ["ann"]


async def test_a_deletion_by_old_and_new_id_counts_the_letter_once_and_the_old_id_fades(bus):
    old, new = await rewritten(bus)
    assert await bus.delete_dead_letters([old, new]) == 1
    if isinstance(bus, RedisStreamsBus):  # ids only, and for a while
        moved = f"{bus.dead_stream}:moved:{old}"
        assert (await bus.client.get(moved)).decode() == new and 0 < await bus.client.ttl(moved) <= MOVED_S


async def test_a_letter_is_rewritten_once_so_its_old_id_reaches_it_in_one_step(bus):
    """A second removal of the post (its deletion delivered twice, a restore then a new removal)
    finds no words left and rewrites nothing: the successor keeps its id, and the id listed before
    the first removal still reaches it (the one step the delete script and a retry follow)."""
    old, new = await rewritten(bus)
    assert await bus.remove_content({("x", "gone")}) == 0
    await bus.publish("ingest", tweet("gone", "maria", event="restore"), "x:gone:restore")
    assert await bus.remove_content({("x", "gone")}) == 0
    assert [d.id for d in await bus.dead_letters() if d.payload["mention"]["external_id"] == "gone"] == [new]
    assert await bus.delete_dead_letters([old]) == 1
    assert [d.payload["mention"]["author_handle"] for d in await bus.dead_letters()] == ["ann"]
