"""Migration 0015: identities linked before with a platform user id are keyed by it from now on, so a
stranger taking the handle they were linked by finds nothing."""

from __future__ import annotations

from sqlalchemy import text

from models.db import Database

ROWS = [  # (id, platform, handle_key, platform_user_id, customer)
    (1, "x", "jane", "111", 1),  # verified before: keyed by the handle, with the account's id
    (2, "x", "maria", None, 2),  # imported: a handle and nothing else, kept
    (3, "x", "old_name", "222", 1),  # the same account verified under two names: the newer stays
    (4, "x", "new_name", "222", 1),
    (5, "x", "dup", "333", 1),  # the account's id link exists already: it wins
    (6, "x", "id:333", "333", 3),
    (7, "reddit", "jane", "111", 1),  # another platform's account
]


async def test_identities_with_a_user_id_are_rekeyed_by_it(any_database_url):
    db = Database(any_database_url)
    try:
        await db.upgrade("0014")
        async with db.engine.begin() as conn:
            for n in (1, 2, 3):
                await conn.execute(text("INSERT INTO customers (id, name, attributes, created_at) "
                                        "VALUES (:n, :name, '{}', CURRENT_TIMESTAMP)"),
                                   {"n": n, "name": f"c{n}"})
            for i, platform, key, uid, customer in ROWS:
                await conn.execute(text(
                    "INSERT INTO social_identities (id, customer_id, platform, platform_user_id, handle, handle_key, "
                    "source, created_at) VALUES (:i, :c, :p, :u, :k, :k, 'verification', CURRENT_TIMESTAMP)"),
                    {"i": i, "c": customer, "p": platform, "u": uid, "k": key})
        await db.upgrade("0015")
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT id, platform, handle_key, customer_id FROM social_identities "
                                            "ORDER BY id"))).all()
    finally:
        await db.close()
    assert [tuple(r) for r in rows] == [(1, "x", "id:111", 1), (2, "x", "maria", 2), (4, "x", "id:222", 1),
                                        (6, "x", "id:333", 3), (7, "reddit", "id:111", 1)]
