"""`python bench/erasure_scan.py URL --posts N`: an erasure's search of other people's payloads for the
person's accounts (:func:`service.erasure._naming`), timed on N Discourse posts whose payloads name
other accounts (a reply's ``reply_to_user``, avatar paths, counts), as the review's repro built them.
The accounts looked for: a short user id ("7": part of almost every payload's text), a longer one
and a handle. Prints one JSON object: per account the posts found naming it, the seconds, the SQL
statements run and the payloads returned to Python.

URL: ``sqlite+aiosqlite:///path.db`` or a PostgreSQL server's ``postgresql+asyncpg://user@host:port/name``,
a database of the benchmark's own: with ``--rebuild``, unless it holds N posts already, the file is
deleted or database ``name`` dropped, then made again with N posts. ``--analyze no`` leaves
PostgreSQL without statistics (autovacuum off on the table), as right after a bulk load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event, func, insert, select, text

from models import Mention, json_codec
from models.db import Database

ACCOUNTS = (("id", "7"), ("id", "723"), ("handle", "user723"))


def post(i: int, rnd: random.Random) -> dict:
    """The review's payload; one post in 1000 replies to user 7, one to user 723 (user id + 1)."""
    uid = {0: 6, 500: 722}.get(i % 1000) or rnd.randint(8, 90000)
    return {"id": 100000 + i, "user_id": uid, "username": f"user{uid}", "topic_id": i // 7, "post_number": i % 7 + 1,
            "cooked": "<p>" + "lorem ipsum dolor sit amet " * 40 + "</p>", "created_at": "2026-11-20T08:17:00.000Z",
            "avatar_template": f"/user_avatar/forum/user{uid}/{{size}}/{uid}_2.png", "reads": rnd.randint(0, 900),
            "reply_to_user": {"username": f"user{uid + 1}", "id": uid + 1,
                              "avatar_template": f"/user_avatar/forum/user{uid + 1}/{{size}}/{uid + 1}_2.png"}}


async def _pg_admin(url: str, *sql: str) -> None:
    import asyncpg

    base, _ = url.replace("postgresql+asyncpg://", "postgresql://", 1).rsplit("/", 1)
    conn = await asyncpg.connect(f"{base}/postgres", timeout=5)
    try:
        for statement in sql:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _count(url: str) -> int:
    db = Database(url)
    try:
        async with db.session() as s:
            return await s.scalar(select(func.count()).select_from(Mention))
    except Exception:  # noqa: BLE001 - absent or empty: built below
        return -1
    finally:
        await db.close()


async def build(url: str, n: int, rebuild: bool) -> None:
    if (held := await _count(url)) == n:
        return
    if not rebuild:
        raise SystemExit(f"{url} holds {max(held, 0)} posts, not {n}: --rebuild deletes and builds it")
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)
    else:
        name = url.rsplit("/", 1)[1]
        await _pg_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    db = Database(url, command_timeout=math.inf)
    await db.upgrade()
    rnd, now = random.Random(1), datetime.now(UTC)
    async with db.session() as s:
        if not url.startswith("sqlite"):
            await s.execute(text("ALTER TABLE mentions SET (autovacuum_enabled = false)"))
        for start in range(0, n, 5000):
            await s.execute(insert(Mention), [{"platform": "discourse", "external_id": f"{i}", "text": "x",
                                                    "created_at": now, "content_hash": "h", "raw": post(i, rnd)}
                                              for i in range(start, min(n, start + 5000))])
        await s.commit()
    await db.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--posts", type=int, default=50_000)
    parser.add_argument("--analyze", choices=("yes", "no"), default="yes", help="PostgreSQL: ANALYZE first")
    parser.add_argument("--rebuild", action="store_true", help="delete the database and build it with --posts")
    args = parser.parse_args()
    await build(args.url, args.posts, args.rebuild)
    from service.erasure import _naming

    decoded, loads = [0], json_codec.loads

    def counting_loads(data: str | bytes) -> object:  # a payload read into Python
        decoded[0] += 1
        return loads(data)

    json_codec.loads = counting_loads  # read by Database() below
    db = Database(args.url, command_timeout=math.inf)
    sqlite = args.url.startswith("sqlite")
    if not sqlite:
        async with db.session() as s:
            if args.analyze == "yes":
                await s.execute(text("ANALYZE mentions"))
            else:  # no statistics at all, as before the first autovacuum
                await s.execute(text("DELETE FROM pg_statistic WHERE starelid = 'mentions'::regclass"))
                await s.execute(text("UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE oid = 'mentions'::regclass"))
            await s.commit()
    statements = [0]

    def count(*_a: object) -> None:
        statements[0] += 1

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    out = {"dialect": "sqlite" if sqlite else "postgresql", "posts": args.posts,
           "analyzed": None if sqlite else args.analyze == "yes", "scans": []}
    for kind, value in ACCOUNTS:
        statements[0] = decoded[0] = 0
        async with db.session() as s:
            t = time.perf_counter()
            ids = await _naming(s, {("discourse", kind, value)})
            seconds = time.perf_counter() - t
        out["scans"].append({"account": f"{kind} {value}", "named": len(ids), "seconds": round(seconds, 3),
                             "statements": statements[0], "payloads_decoded": decoded[0]})
    await db.close()
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
