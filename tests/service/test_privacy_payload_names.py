"""An erasure looks for the person's accounts in other people's platform payloads as whole values
(service.erasure, service.privacy_payloads.names_account), on SQLite and PostgreSQL: a short user
id or handle that is only part of another value (a post id, an offset, a longer handle, a word of a
profile) leaves the post's payload as it was; where the payload does name the account (as a value,
a number under an id's key, a path segment or an @-mention) the keys that name accounts go."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from privacy_support import SECRET_KEY, T0
from sqlalchemy import event, func, insert, select

from models import Mention
from models.db import Database
from service import erasure
from service.erasure import Subject
from service.privacy_payloads import OTHER_ACCOUNTS, account_filter, names_account

NAMING = {  # each names Bob (user id "111", handle "bob") where payloads name accounts
    "tomnum": {"in_reply_to_user_id": 111},
    "tomstr": {"in_reply_to_user_id": "111"},
    "tomat": {"entities": {"mentions": [{"username": "@BOB", "start": 0, "end": 4}]}},
    "tomavatar": {"reply_to_user": {"username": "someone",
                                    "avatar_template": "/user_avatar/forum/bob/{size}/1.png"}},
    "tomkeyed": {"includes": {"users": {"111": {"name": "B."}}}},
}
NOT_NAMING = {  # "111" and "bob" only as parts of other values, or outside the keys that name accounts
    "tomids": {"id": "91112", "conversation_id": "1110", "in_reply_to_user_id": "51110",
               "public_metrics": {"like_count": 111}},
    "tomlonger": {"entities": {"mentions": [{"username": "bobby", "id": "1112", "start": 0, "end": 6}]}},
    "tomoffset": {"entities": {"mentions": [{"username": "sam", "id": "id-sam", "start": 111, "end": 115}]}},
    "tomprofile": {"includes": {"users": [{"username": "bobcat", "description": "I have 111 cats, see /bob.example"}]}},
    "tomtext": {"quoted": "@bob said 111", "in_reply_to_screen_name": "tom"},
}


@pytest.mark.parametrize(("raw", "named"), [(raw, True) for raw in NAMING.values()]
                         + [(raw, False) for raw in NOT_NAMING.values()])
def test_names_account_matches_whole_values_only(raw, named):
    assert names_account(raw, {"bob"}, {"111"}) is named


async def test_a_short_id_or_handle_inside_other_values_leaves_others_payloads_alone(world):
    w = world
    await w.ingest(w.post("zqx my order is late", author="bob", name="Bob B", user_id="111"))
    posts = {}
    for word, raw in (NAMING | NOT_NAMING).items():
        posts[word] = await w.ingest(w.post(f"{word} order 111 for bob", author="tom_b", raw=raw))

    counts = await erasure.erase(w.db, Subject(platform="x", user_id="111"), actor="dpo", reason="art 17",
                                 secret=SECRET_KEY)
    assert counts["posts"] == 1
    assert counts["others_payloads"] == len(NAMING)
    async with w.db.session() as s:
        raws = {m.text.split()[0]: m.raw for m in await s.scalars(select(Mention).where(Mention.id.in_(posts.values())))}
    for word, raw in NOT_NAMING.items():  # as ingested: untouched
        assert {k: v for k, v in raws[word].items() if k not in ("text", "user")} == raw, word
    for word, raw in NAMING.items():  # the keys naming accounts gone, the rest (his own account) kept
        rest = str({k: v for k, v in raws[word].items() if k != "text"}).lower()  # his words are his
        assert "111" not in rest and "bob" not in rest, word
        assert raws[word]["user"] == {"screen_name": "tom_b", "name": "tom_b"}


# --- the database's filter and the scan (service.privacy_payloads.account_filter, service.erasure._naming) --
EDGES = {  # named by Python: the database's filter keeps each as a candidate
    "padded": ({"bob"}, {"111"}, {"mentions": [" \u3000@Bob\t"]}),
    "padded_id": ({"bob"}, {"111"}, {"in_reply_to_user_id": " 111\n"}),
    "at_at": ({"bob"}, {"111"}, {"mentions": ["@@bob"]}),
    "newline": ({"bob"}, {"111"}, {"mentions": ["hi\n@bob\nand 111"]}),
    "keyed": ({"bob"}, {"111"}, {"includes": {"users": {"BOB": {"n": 1}}}}),
    "deep": ({"bob"}, {"111"}, {"a": [{"b": {"mentioned_users": [{"x": [{"username": "bob"}]}]}}]}),
    "id_list": ({"bob"}, {"111"}, {"participants": {"user_ids": [5, 111]}}),
    "query": ({"bob"}, {"111"}, {"reply_to_user": {"url": "https://forum.example/u?name=BOB&x=1"}}),
    "accented": ({"émile"}, set(), {"mentions": ["@ÉMILE"]}),
    "accented_path": ({"émile"}, set(), {"mentions": [{"avatar": "/u/Émile/{size}/1.png"}]}),
    "like_chars": ({"b_o%b"}, set(), {"mentions": ["@B_O%B"]}),
    "glob_chars": ({"a*b[c?"}, set(), {"users": ["a*b[c?"]}),
    "quote": ({'o"neil'}, set(), {"mentions": [{"username": 'O"Neil'}]}),
    "huge_id": (set(), {"123456789012345678901234"}, {"participants": {"ids": [123456789012345678901234]}}),
}
NOT_CANDIDATES = {  # not named, and not even read back from the database
    "tomids": ({"bob"}, {"111"}, NOT_NAMING["tomids"]),
    "tomlonger": ({"bob"}, {"111"}, NOT_NAMING["tomlonger"]),
    "tomtext": ({"bob"}, {"111"}, NOT_NAMING["tomtext"]),
    "like_chars_other": ({"b_o%b"}, set(), {"mentions": ["@bxo%b", "@b_oxb"]}),
    "accented_longer": ({"émile"}, set(), {"mentions": ["@ÉMILEs", "émile_b"]}),
}


async def _add(db, raws: dict[str, dict], platform: str = "discourse") -> dict[str, int]:
    async with db.session() as s:
        ids = {}
        for name, raw in raws.items():
            s.add(m := Mention(platform=platform, external_id=name, text=name, created_at=T0, content_hash="h", raw=raw))
            await s.flush()
            ids[name] = m.id
        await s.commit()
    return ids


async def _candidates(db, handles, ids) -> set[int]:
    async with db.session() as s:
        return set(await s.scalars(select(Mention.id).where(
            account_filter(s.bind.dialect.name, Mention.raw, handles, ids))))


async def test_the_database_keeps_every_payload_python_names_and_skips_parts_of_values(db):
    cases = EDGES | NOT_CANDIDATES | {f"naming_{k}": ({"bob"}, {"111"}, raw) for k, raw in NAMING.items()}
    if db.dialect == "sqlite":  # not strict JSON (PostgreSQL's jsonb refuses it): a candidate all the same
        cases["nan"] = ({"bob"}, {"111"}, {"mentions": ["@bob"], "score": float("nan")})
    posts = await _add(db, {name: raw for name, (_, _, raw) in cases.items()})
    for name, (handles, ids, raw) in cases.items():
        named = names_account(raw, handles, ids)
        assert named is (name not in NOT_CANDIDATES), name
        picked = posts[name] in await _candidates(db, handles, ids)
        assert picked is named, name
        async with db.session() as s:
            found = await erasure._naming(s, {("discourse", "handle", h) for h in handles}
                                          | {("discourse", "id", i) for i in ids})
        assert (posts[name] in found) is named, name


def _random_payload(rnd: random.Random, depth: int = 0) -> Any:
    """A payload of account keys and others, nested, holding "bob" and "111" in many shapes."""
    pieces = ["bob", "BoB", "@bob", "@@Bob", " bob\t", "\n", "@bob\n", "\u3000bob", "/bob", "=bob", "bob_", "bob-",
              "bob.x", "bob.", "xbob", "bobby", "111", " 111 ", "1111", "@111", "/111/", "111_2", "u?id=111&", "é",
              "/bob/{size}/"]
    keys = [*sorted(OTHER_ACCOUNTS), "id", "user_id", "ids", "name", "text", "start", "url"]
    roll = rnd.random()
    if depth < 4 and roll < 0.35:
        return {rnd.choice(keys + pieces): _random_payload(rnd, depth + 1) for _ in range(rnd.randint(1, 3))}
    if depth < 4 and roll < 0.5:
        return [_random_payload(rnd, depth + 1) for _ in range(rnd.randint(1, 3))]
    if roll < 0.65:
        return rnd.choice([111, 1111, 7, 111.0, True])
    return "".join(rnd.choice(pieces + ["a", " ", "x/"]) for _ in range(rnd.randint(1, 3)))


async def test_the_database_keeps_every_payload_python_names_in_random_payloads(db):
    rnd = random.Random(17)
    raws = {str(i): {rnd.choice(sorted(OTHER_ACCOUNTS) + ["data"]): _random_payload(rnd)} for i in range(400)}
    posts = await _add(db, raws, platform="random")
    picked = await _candidates(db, {"bob"}, {"111"})
    named = {posts[k] for k, raw in raws.items() if names_account(raw, {"bob"}, {"111"})}
    assert len(named) > 100 and named <= picked, sorted(named - picked)
    assert len(picked) < len(named) * 1.5  # and a few more, not every payload holding "bob" or "111"
    async with db.session() as s:
        assert set(await erasure._naming(s, {("random", "handle", "bob"), ("random", "id", "111")})) == named


def _payload(i: int) -> dict:
    """A Discourse reply whose text holds "7" all over (the coarse LIKE passes every one); one in 25
    replies to user 7, the others to users whose ids and avatar paths hold "7" as a part."""
    uid = 6 if i % 25 == 0 else 70 + i % 900
    return {"id": 700 + i, "user_id": uid, "username": f"user{uid}", "cooked": "<p>7 of 17 at 07:17</p>",
            "avatar_template": f"/user_avatar/forum/user{uid}/{{size}}/{uid}_2.png",
            "reply_to_user": {"username": f"user{uid + 1}", "id": uid + 1,
                              "avatar_template": f"/user_avatar/forum/user{uid + 1}/{{size}}/{uid + 1}_2.png"}}


async def _add_replies(db, start: int, n: int) -> None:
    """``n`` Discourse replies, with an X post naming user 7 after every fourth (another platform's)."""
    async with db.session() as s:
        rows = []
        for i in range(start, start + n):
            rows.append({"platform": "discourse", "external_id": str(i), "text": "t", "created_at": T0,
                         "content_hash": "h", "raw": _payload(i)})
            if i % 4 == 0:
                rows.append({"platform": "x", "external_id": str(i), "text": "t", "created_at": T0,
                             "content_hash": "h", "raw": {"in_reply_to_user_id": "7"}})
        await s.execute(insert(Mention), rows)
        await s.commit()


async def _scan(db, monkeypatch) -> tuple[list[int], int, list]:
    """``_naming`` for Discourse user 7: the posts found, the payloads Python checked, the statements
    that read payloads (with their parameters)."""
    checked, statements, matcher = [0], [], erasure.account_matcher

    def counting(handles, ids):
        names = matcher(handles, ids)

        def check(raw):
            checked[0] += 1
            return names(raw)
        return check

    def record(conn, cursor, statement, parameters, context, executemany):
        if "mentions.raw" in statement.split("FROM", 1)[0]:
            statements.append((statement, parameters))

    monkeypatch.setattr(erasure, "account_matcher", counting)
    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with db.session() as s:
            found = await erasure._naming(s, {("discourse", "id", "7")})
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
    return found, checked[0], statements


async def test_the_search_reads_each_payload_once_by_primary_key_ranges(db, monkeypatch):
    """Each statement reads one range of ids along the primary key (no sort, never the platform's
    index), the ranges are as many as the ids spanned call for, and Python checks only candidates:
    paging ``id > last ORDER BY id LIMIT n`` over the filter read every payload once per page."""
    monkeypatch.setattr(erasure, "SCAN_IDS", 40)
    await _add_replies(db, 0, 300)
    async with db.session() as s:
        low, high = (await s.execute(select(func.min(Mention.id), func.max(Mention.id)).where(
            Mention.platform == "discourse"))).one()
    found, checked, statements = await _scan(db, monkeypatch)
    assert len(found) == 12 and checked == len(found)  # every 25th of 300; no X post
    windows = [tuple(parameters[:2]) for _, parameters in statements]  # WHERE id > ? AND id <= ? AND ...
    assert windows == [(start, start + 40) for start in range(low - 1, high, 40)]  # each id in one window
    async with db.engine.connect() as conn:
        for statement, parameters in statements:
            if db.dialect == "sqlite":
                plan = " / ".join(r[-1] for r in await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}",
                                                                            parameters))
                assert plan.startswith("SEARCH mentions USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"), plan
                assert "TEMP B-TREE" not in plan, plan
            else:  # a table this small is read whole when the planner may: ask it for its best index path
                await conn.exec_driver_sql("SET enable_seqscan = off")
                plan = (await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)).scalar()
                text = json.dumps(plan)
                assert '"Index Name": "pk_mentions"' in text and '"Sort"' not in text, text
                assert "uq_mentions_platform_external_id" not in text, text


async def test_the_search_grows_with_the_posts_not_their_square(sqlite_url, monkeypatch):
    """SQLite's work (its virtual machine's steps) for four times the posts is about four times."""
    monkeypatch.setattr(erasure, "SCAN_IDS", 25)
    database = Database(sqlite_url)
    await database.upgrade()
    steps = []
    try:
        for start, n in ((0, 100), (100, 300)):
            await _add_replies(database, start, n)
            async with database.session() as s:
                raw = await (await s.connection()).get_raw_connection()
                count = [0]

                def tick(count=count):
                    count[0] += 1
                    return 0

                await raw.driver_connection.set_progress_handler(tick, 100)
                try:
                    found = await erasure._naming(s, {("discourse", "id", "7")})
                finally:
                    await raw.driver_connection.set_progress_handler(None, 100)
            assert len(found) == (start + n) // 25
            steps.append(count[0])
    finally:
        await database.close()
    assert 3 < steps[1] / steps[0] < 6, steps
