"""Dead letters under erasure and retention (service.privacy_bus), on the in-process bus and a real
Redis: an ingest letter keeps the whole post, so the person's go with them (matched by handle, user
id or post), as do later stages' letters about their posts; everyone else's stay; a dry run only
counts; the purge removes the letters that failed before its cutoff. Both remove a letter rewritten
(its post's content removed) after they chose it, though Redis gave it a new id."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest
from privacy_support import SECRET_KEY, T0, bury, bury_posts
from sqlalchemy import select

from listener.protocol import NormalizedMention
from models import AuditEvent
from models.base import utcnow
from service import retention
from service.erasure import Subject, UnknownSubject, erase
from service.pipeline import submit


@pytest.fixture
async def bus(make_bus):
    """A started bus that dead-letters a message on its first failure."""
    return await make_bus(max_deliveries=1)


async def erased_event(db) -> AuditEvent:
    async with db.session() as s:
        return (await s.scalars(select(AuditEvent).where(AuditEvent.action == "privacy.erased")
                                .order_by(AuditEvent.id))).first()


async def test_erasure_removes_the_persons_dead_letters_and_no_one_elses(world, bus):
    w = world
    stored = w.post("zqxstored charged twice", author="MariaL", name="Maria Lopez", user_id="id-marial")
    mid = await w.ingest(stored)
    tom = w.post("tomword hello", author="tom_b")
    tom_mid = await w.ingest(tom)
    never_stored = w.post("zqxnever I live at 1 Main St", author="@MARIAL", name="Maria Lopez", user_id="id-marial")
    renamed = w.post("zqxrenamed new handle, same account", author="maria_new", name="Maria L", user_id="id-marial")
    deleted = NormalizedMention(platform="x", external_id=stored.external_id, text="", created_at=T0, event="delete")
    other_platform = w.post("zqxdiscourse", author="MariaL", user_id="id-marial", platform="discourse")
    keys = await bury_posts(bus, never_stored, renamed, deleted, tom, other_platform)
    await bury(bus, "triage", f"m:{mid}", {"mention_id": mid, "t0": 1.0})
    await bury(bus, "act", f"m:{tom_mid}", {"mention_id": tom_mid, "outcome": "ignore", "t0": 1.0})
    before = await bus.dead_letters(limit=100)
    assert len(before) == 7

    planned = await erase(w.db, Subject(platform="x", handle="MariaL"), actor="dpo", reason="r", dry_run=True,
                          secret=SECRET_KEY, bus=bus)
    assert planned["dead_letters"] == 4 and await bus.dead_letters(limit=100) == before  # only counted

    counts = await erase(w.db, Subject(platform="x", handle="MariaL"), actor="dpo", reason="r", secret=SECRET_KEY,
                         bus=bus)
    assert counts == planned and counts["posts"] == 1
    left = await bus.dead_letters(limit=100)
    assert sorted(d.key for d in left) == sorted([keys[3], keys[4], f"m:{tom_mid}"])  # Tom's; her Discourse account
    assert not any("zqx" in json.dumps(d.payload) and d.payload["mention"]["platform"] == "x" for d in left)
    event = await erased_event(w.db)
    assert event.details["counts"]["dead_letters"] == 4 and event.details["dead_letters_checked"] is True

    again = await erase(w.db, Subject(platform="x", user_id="id-marial"), actor="dpo", reason="r", secret=SECRET_KEY,
                        bus=bus)
    assert again == Counter() and len(await bus.dead_letters(limit=100)) == 3


async def test_a_person_known_only_from_dead_letters_is_erased_there_and_recognised_after(world, bus):
    w = world
    await bury_posts(bus, w.post("zqxghost my phone is 555 0100", author="Ghost", user_id="id-ghost"),
                     w.post("tomword", author="tom_b"))
    with pytest.raises(UnknownSubject):  # without the bus, nothing on record
        await erase(w.db, Subject(platform="x", handle="ghost"), actor="dpo", reason="r", secret=SECRET_KEY)
    with pytest.raises(UnknownSubject):  # nor for someone the dead letters do not name
        await erase(w.db, Subject(platform="x", handle="nobody"), actor="dpo", reason="r", secret=SECRET_KEY, bus=bus)

    counts = await erase(w.db, Subject(platform="x", user_id="id-ghost"), actor="dpo", reason="asked by Ghost",
                         secret=SECRET_KEY, bus=bus)
    assert counts == Counter(dead_letters=1)
    assert [d.payload["mention"]["author_handle"] for d in await bus.dead_letters()] == ["tom_b"]
    event = await erased_event(w.db)
    assert event.reason == "asked by [subject]" and event.details["subject_keys"]  # the id is hashed, not named
    assert "id-ghost" not in json.dumps(event.details)
    assert await erase(w.db, Subject(platform="x", user_id="id-ghost"), actor="dpo", reason="r",
                       secret=SECRET_KEY, bus=bus) == Counter()  # erased before: nothing left, no error


async def test_the_purge_removes_the_dead_letters_that_failed_before_its_cutoff(world, bus):
    w = world
    await bury_posts(bus, w.post("zqxold", author="ann"))
    await asyncio.sleep(0.01)
    cutoff = utcnow()
    await asyncio.sleep(0.01)
    [new] = await bury_posts(bus, w.post("keptnew", author="ben"))

    planned = await retention.purge(w.db, cutoff, dry_run=True, bus=bus)
    assert planned == Counter(dead_letters=1) and len(await bus.dead_letters()) == 2
    counts = await retention.purge(w.db, cutoff, actor="cron", bus=bus)
    assert counts == planned and [d.key for d in await bus.dead_letters()] == [new]
    async with w.db.session() as s:
        event = await s.scalar(select(AuditEvent).where(AuditEvent.action == "privacy.purged"))
    assert event.details["counts"] == {"dead_letters": 1}
    assert await retention.purge(w.db, cutoff, bus=bus) == Counter()


class RewriteFirst:
    """The bus, with a post's content removed (its deletion published by a connector) just before
    the dead letters chosen are deleted: a letter of it rewritten (under a new id on Redis).
    ``moved``: the ids chosen that no longer name a letter as they were."""

    def __init__(self, bus, deletion: NormalizedMention) -> None:
        self.bus, self.deletion, self.moved = bus, deletion, []

    def __getattr__(self, name: str):
        return getattr(self.bus, name)

    async def delete_dead_letters(self, ids: list[str]) -> int:
        before = {d.id: d for d in await self.bus.dead_letters(limit=100)}
        await submit(self.bus, [self.deletion])
        after = {d.id: d for d in await self.bus.dead_letters(limit=100)}
        self.moved += [i for i in ids if after.get(i) != before.get(i)]
        return await self.bus.delete_dead_letters(ids)


def deletion_of(nm: NormalizedMention) -> NormalizedMention:
    return NormalizedMention(platform=nm.platform, external_id=nm.external_id, text="", created_at=T0,
                             author_handle=nm.author_handle, event="delete", remove_content=True)


async def test_an_erasure_removes_a_letter_rewritten_between_its_match_and_its_removal(world, bus):
    """The erasure matched the person's letter by its id; X deleted the post meanwhile, and its
    letter, rewritten without the words, keeps the author's handle (under a new id on Redis):
    the erasure removes it all the same."""
    w = world
    hers = w.post("zqxhers my card was charged twice", author="MariaL", user_id="id-marial")
    await bury_posts(bus, hers, w.post("tomword", author="tom_b"))
    racing = RewriteFirst(bus, deletion_of(hers))

    counts = await erase(w.db, Subject(platform="x", handle="MariaL"), actor="dpo", reason="r", secret=SECRET_KEY,
                         bus=racing)
    assert counts == Counter(dead_letters=1) and len(racing.moved) == 1  # the race took place
    assert [d.payload["mention"]["author_handle"] for d in await bus.dead_letters()] == ["tom_b"]


async def test_the_purge_removes_a_letter_rewritten_between_its_listing_and_its_removal(world, bus):
    w = world
    old = w.post("zqxold", author="ann")
    await bury_posts(bus, old)
    await asyncio.sleep(0.01)
    racing = RewriteFirst(bus, deletion_of(old))
    assert await retention.purge(w.db, utcnow(), actor="cron", bus=racing) == Counter(dead_letters=1)
    assert len(racing.moved) == 1
    assert await bus.dead_letters() == []
