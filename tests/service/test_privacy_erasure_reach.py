"""How far one person's erasure reaches beyond their own rows (service.erasure, service.privacy), on
SQLite and PostgreSQL: the free-text reasons of audit entries about the moderation actions on their
posts and the replies to them; other people's platform payloads naming their account (the account
replied to, @-mentioned), while those people's words stay; and, on Redis, the acknowledged stream
entries that still hold their posts."""

from __future__ import annotations

import json

from privacy_support import SECRET_KEY, dump, found_in
from sqlalchemy import select

from community import moderation
from community.decisions import review
from models import AuditEvent, Case, Mention, Reply
from models.mentions import ERASED_TEXT
from service import erasure
from service.audit import record
from service.erasure import Subject


async def reasons(db, word: str) -> list[tuple[str, str]]:
    async with db.session() as s:
        return [(e.action, e.object_type) for e in await s.scalars(
            select(AuditEvent).where(AuditEvent.reason.like(f"%{word}%")).order_by(AuditEvent.id))]


async def test_reasons_about_the_moderation_actions_on_her_posts_and_the_replies_to_her_are_erased(world):
    w = world
    mid = await w.ingest(w.post("zqx my neighbour Bob is a thief", author="MariaL", name="Maria Lopez",
                                user_id="id-marial"))
    tom = await w.ingest(w.post("tomword spam spam", author="tom_b"))
    async with w.db.session() as s:
        for post, words in ((mid, "Maria Lopez accuses Bob (zqxreview)"), (tom, "tom_b spams (tomreview)")):
            hold, _ = await moderation.report(s, await s.get(Mention, post), "alice", "please look")
            await review(s, hold, "remove", "mod1", reason=words, settings=w.settings)
        case = Case(category="security", author_id=(await s.get(Mention, mid)).author_id, opened_by_mention_id=mid)
        s.add(case)
        await s.flush()
        for key, about in (("bot:1", {"mention_id": mid}), ("dm:1", {"case_id": case.id}),
                           ("bot:2", {"mention_id": tom})):
            r = Reply(dedup_key=key, platform="x", kind="auto_answer", text="hi", status="sent", **about)
            s.add(r)
            await s.flush()
            record(s, "bot1", "bot.reply_deleted", "reply", r.id,
                   reason=f"wrong answer ({'tomrevert' if key == 'bot:2' else 'zqxrevert'})")
        await s.commit()
    kept = await reasons(w.db, "")
    assert ("moderation.review.remove", "moderation_action") in await reasons(w.db, "zqxreview")
    assert len(await reasons(w.db, "zqxrevert")) == 2

    counts = await erasure.erase(w.db, Subject(platform="x", handle="MariaL"), actor="dpo", reason="art 17",
                                 secret=SECRET_KEY)
    assert await reasons(w.db, "zqx") == [] and found_in(await dump(w.db), "zqx") == []
    assert counts["audit_reasons"] >= 4
    assert ("moderation.review.remove", "moderation_action") in await reasons(w.db, "tomreview")  # Tom's stay
    assert await reasons(w.db, "tomrevert") == [("bot.reply_deleted", "reply")]
    assert [k for k in await reasons(w.db, "") if k[0] != "privacy.erased"] == kept  # the entries stay
    assert len(await reasons(w.db, ERASED_TEXT)) >= 4


async def test_others_posts_in_her_threads_or_naming_her_account_lose_the_payload_keys_that_name_it(world):
    w = world
    q = w.post("zqx how do I turn on crossfade", author="MariaL", name="Maria Lopez", user_id="id-marial-d",
               platform="discourse")
    await w.ingest(q)
    await w.ingest(w.post("tomanswer settings > playback", author="tom_b", platform="discourse",
                          in_reply_to=q.external_id, conversation_id=q.external_id,
                          raw={"reply_to_user": {"username": "MariaL", "name": "Maria Lopez",
                                                 "avatar_template": "/user_avatar/forum/marial/{size}/1.png"},
                               "accepted_answer": True}))
    t = w.post("zqx my order is late", author="MariaL", name="Maria Lopez", user_id="id-marial-x")
    await w.ingest(t)
    await w.ingest(w.post("@MariaL same here tomsame", author="tom_b", in_reply_to=t.external_id,
                          conversation_id=t.external_id,
                          raw={"in_reply_to_user_id": "id-marial-x",
                               "entities": {"mentions": [{"username": "MariaL", "id": "id-marial-x"}]}}))
    elsewhere = await w.ingest(w.post("tomelse as @MariaL said", author="tom_b",  # another thread naming her
                                      raw={"entities": {"mentions": [{"username": "MariaL", "id": "id-marial-x"}],
                                                        "hashtags": [{"tag": "crossfade"}]}}))
    untouched = await w.ingest(w.post("tomsam thanks @sam", author="tom_b",
                                      raw={"entities": {"mentions": [{"username": "sam", "id": "id-sam"}]}}))

    for platform in ("discourse", "x"):
        counts = await erasure.erase(w.db, Subject(platform=platform, handle="MariaL"), actor="dpo",
                                     reason="art 17", secret=SECRET_KEY)
        assert counts["others_payloads"] == (1 if platform == "discourse" else 2)
    tables = await dump(w.db)
    for value in ("maria lopez", "id-marial", "user_avatar/forum/marial", "zqx"):
        assert found_in(tables, value) == [], value
    async with w.db.session() as s:
        posts = {m.text.split()[0]: m for m in await s.scalars(select(Mention).where(Mention.deleted.is_(False)))}
    assert posts["tomanswer"].raw["accepted_answer"] is True  # what is read after ingest stays
    assert posts["tomanswer"].raw["user"] == {"screen_name": "tom_b", "name": "tom_b"}  # Tom's own account
    assert posts["tomelse"].raw["entities"] == {"hashtags": [{"tag": "crossfade"}]}
    assert posts["@MariaL"].text == "@MariaL same here tomsame"  # his words are his
    assert posts["tomsam"].raw["entities"]["mentions"] == [{"username": "sam", "id": "id-sam"}]  # not about her
    assert {elsewhere, untouched} <= {m.id for m in posts.values()}


async def test_with_redis_an_erasure_trims_the_acknowledged_stream_entries_that_hold_her_posts(world, redis_url,
                                                                                             bus_prefix):
    from privacy_support import delete_redis_keys

    from service.bus.redis_streams import RedisStreamsBus
    from service.pipeline import ingest_key

    w = world
    post = w.post("zqxstream my card 4242", author="MariaL", name="Maria Lopez", user_id="id-marial")
    await w.ingest(post)
    bus = RedisStreamsBus(redis_url, prefix=bus_prefix)
    await bus.start()
    try:
        await bus.ensure_group("ingest", "ingest")
        await bus.publish("ingest", {"mention": post.to_dict()}, ingest_key(post))
        [env] = await bus.read("ingest", "ingest", "worker", 10, 0)
        await bus.ack("ingest", "ingest", [env.id])  # handled: kept on the stream until a worker's next trim
        assert await bus.client.xlen(bus.stream("ingest")) == 1
        await erasure.erase(w.db, Subject(platform="x", handle="MariaL"), actor="dpo", reason="art 17",
                            secret=SECRET_KEY, bus=bus)
        assert await bus.client.xlen(bus.stream("ingest")) == 0
        entries = await bus.client.xrange(bus.stream("ingest"))
        assert "zqxstream" not in json.dumps([[str(k), {str(a): str(b) for a, b in v.items()}] for k, v in entries])
    finally:
        await bus.close()
        delete_redis_keys(redis_url, bus_prefix)
