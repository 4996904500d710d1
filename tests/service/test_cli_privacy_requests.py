"""`socialcare privacy` as a DPO meets it on a request, beside test_cli_privacy (whose SQLite
database with Maria's and Tom's posts, the ``cli`` fixture, these tests share): a mistyped customer
id erases nobody and says so, the export says which dead letters it could not check and, with the
Redis bus, holds the person's, the purge counts the erasure tombstones it removes, and a handle that
changed hands is refused until the account is named by its user id."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from privacy_support import World, bury_posts, delete_redis_keys, found_in, settings_for
from sqlalchemy import update
from test_cli_privacy import cli  # noqa: F401 - the fixture

from models import ErasureTombstone
from models.base import utcnow
from models.db import Database
from models.privacy import GATE
from service.tombstones import MIN_LIFETIME


def test_erasing_an_unknown_customer_id_erases_nobody_records_nothing_and_says_so(cli):  # noqa: F811
    before = cli.tables()
    for dry in ((), ("--dry-run",)):
        r = cli("erase", "--customer", "999", "--reason", "ticket 42", *dry)
        assert r.exit_code == 1, r.output
        assert "no customer record 999" in r.output and "nobody was erased" in r.output, r.output
        assert "erased:" not in r.output and "Traceback" not in r.output
    assert cli.tables() == before  # no tombstone, no audit entry: nothing happened


def test_export_says_in_the_document_and_on_stderr_that_the_in_process_bus_was_not_checked(cli):  # noqa: F811
    r = cli("export", "--platform", "x", "--handle", "MariaL", "--reason", "ticket 42")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["dead_letters"] is None
    [note] = [n for n in doc["not_included"] if "message bus" in n["what"]]
    assert "not checked" in note["why"] and "/admin/deadletters" in note["why"]
    assert r.stderr.startswith("exported: ") and "dead letters not checked" in r.stderr


def test_export_with_the_redis_bus_holds_her_dead_letters_and_not_toms(cli, redis_url, bus_prefix, tmp_path):  # noqa: F811
    from service.bus.redis_streams import RedisStreamsBus

    env = {"SOCIALCARE_BUS": "redis", "SOCIALCARE_REDIS_URL": redis_url, "SOCIALCARE_BUS_PREFIX": bus_prefix,
           "SOCIALCARE_BUS_MAX_DELIVERIES": "1"}

    async def bury(*posts):
        bus = RedisStreamsBus(redis_url, prefix=bus_prefix, max_deliveries=1)
        try:
            await bury_posts(bus, *posts)
        finally:
            await bus.close()

    w = World(None, settings_for(tmp_path, "sqlite+aiosqlite://"))  # for its posts
    try:
        asyncio.run(bury(w.post("zqxdead never stored", author="MariaL", user_id="id-marial"),
                         w.post("tomdead", author="tom_b")))
        r = cli("export", "--platform", "x", "--handle", "MariaL", "--reason", "ticket 42", **env)
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        assert [d["payload"]["mention"]["text"] for d in doc["dead_letters"]] == ["zqxdead never stored"]
        assert "tomdead" not in r.stdout and "dead letters 1" in r.stderr and "not checked" not in r.stderr
    finally:
        delete_redis_keys(redis_url, bus_prefix)


def test_purge_removes_the_tombstones_past_their_lifetime_and_counts_them(cli, tmp_path):  # noqa: F811
    assert cli("erase", "--platform", "x", "--handle", "MariaL", "--reason", "ticket 42").exit_code == 0
    assert len(cli.tables()["erasure_tombstones"]) == 3  # her handle, her id, the gate

    async def age(by: timedelta) -> None:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'privacy.db'}")
        try:
            async with db.session() as s:
                await s.execute(update(ErasureTombstone).where(ErasureTombstone.key != GATE).values(
                    erased_at=utcnow() - by))
                await s.commit()
        finally:
            await db.close()

    asyncio.run(age(MIN_LIFETIME - timedelta(days=1)))
    r = cli("purge", "--older-than", "1", "--dry-run")
    assert r.exit_code == 0 and "tombstones" not in r.output, r.output  # younger than their lifetime: kept
    asyncio.run(age(MIN_LIFETIME + timedelta(days=1)))
    assert "tombstones" not in cli("purge", "--older-than", "60", "--dry-run").output  # nor the retention period
    dry = cli("purge", "--older-than", "1", "--dry-run")
    assert dry.exit_code == 0 and "tombstones 2" in dry.output, dry.output
    assert len(cli.tables()["erasure_tombstones"]) == 3
    r = cli("purge", "--older-than", "1")
    assert r.exit_code == 0 and "tombstones 2" in r.output, r.output
    tables = cli.tables()
    assert len(tables["erasure_tombstones"]) == 1  # the gate
    assert any("privacy.purged" in e and "'tombstones': 2" in e for e in tables["audit_events"])
    help_text = " ".join(cli("purge", "--help").output.split())
    assert "tombstones go once older than the period and than their lifetime" in help_text


def test_a_handle_another_account_took_is_refused_naming_the_user_ids_until_one_is_given(cli, tmp_path):  # noqa: F811
    async def stranger_takes_the_handle() -> None:
        url = f"sqlite+aiosqlite:///{tmp_path / 'privacy.db'}"
        db = Database(url)
        try:
            w = World(db, settings_for(tmp_path, url))
            await w.ingest(w.post("strangerword my address is 9 Elm Road", author="mariaL", user_id="id-stranger"))
        finally:
            await db.close()

    asyncio.run(stranger_takes_the_handle())
    before = cli.tables()
    for command, outcome in (("erase", "nobody was erased"), ("export", "nothing was exported")):
        r = cli(command, "--platform", "x", "--handle", "@MariaL", "--reason", "ticket 42")
        assert r.exit_code == 1, r.output
        assert "ambiguous subject" in r.output and "id-marial, id-stranger" in r.output, r.output
        assert "--user-id" in r.output and outcome in r.output and "Traceback" not in r.output
        assert "strangerword" not in r.output and "zqx" not in r.output  # no document written
    assert cli.tables() == before
    r = cli("erase", "--platform", "x", "--user-id", "id-marial", "--reason", "ticket 42")
    assert r.exit_code == 0 and "posts 2" in r.output, r.output
    tables = cli.tables()
    assert found_in(tables, "zqx") == [] and found_in({"m": tables["mentions"]}, "strangerword")
