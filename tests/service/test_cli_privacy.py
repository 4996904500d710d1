"""`socialcare privacy erase|export|purge` against a temporary SQLite database (click's CliRunner): the
summary printed, the dry run, the repeat, and mistakes ending in a message and a non-zero exit."""

from __future__ import annotations

import asyncio
import json
import stat
from datetime import timedelta

import pytest
from click.testing import CliRunner
from privacy_support import SECRET_KEY, World, bury_posts, delete_redis_keys, dump, found_in, settings_for
from pydantic import ValidationError
from sqlalchemy import select

from models import AuditEvent
from models.base import utcnow
from models.db import Database
from service.cli import main
from service.settings import load_settings


@pytest.fixture
def cli(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'privacy.db'}"

    async def populate() -> None:
        db = Database(url)
        await db.upgrade()
        w = World(db, settings_for(tmp_path, url))
        old = utcnow() - timedelta(days=40)
        await w.ingest(w.post("zqxone my login fails", author="MariaL", name="Maria Lopez", user_id="id-marial", at=old))
        await w.ingest(w.post("zqxtwo still failing", author="MariaL", name="Maria Lopez", user_id="id-marial"))
        await w.ingest(w.post("tomword hello", author="tom_b"))
        await db.close()

    asyncio.run(populate())
    env = {"SOCIALCARE_DATABASE_URL": url, "SOCIALCARE_VAR_DIR": str(tmp_path / "var"), "SOCIALCARE_CONFIG": None,
           "SOCIALCARE_LOG_JSON": "false", "SOCIALCARE_SECRET_KEY": SECRET_KEY, "SOCIALCARE_RETENTION_DAYS": None}

    def run(*args: str, **more_env: str):
        return CliRunner().invoke(main, ["privacy", *args], env=env | more_env, catch_exceptions=False)

    def tables():
        async def go():
            db = Database(url)
            try:
                return await dump(db)
            finally:
                await db.close()
        return asyncio.run(go())

    run.tables = tables
    return run


def test_erase_prints_the_counts_and_a_repeat_finds_nothing_left(cli):
    r = cli("erase", "--platform", "x", "--handle", "@mariaL", "--reason", "ticket 42", "--actor", "dpo")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("erased: ") and "posts 2" in r.output and "authors 1" in r.output
    tables = cli.tables()
    assert found_in(tables, "zqx") == [] and found_in(tables, "marial") == [] and found_in(tables, "tomword")
    again = cli("erase", "--platform", "x", "--user-id", "id-marial", "--reason", "ticket 42")
    assert (again.exit_code, again.stdout) == (0, "erased: nothing\n")
    assert "dead letters not checked: the in-process bus" in again.stderr  # out of this process's reach
    assert sum("privacy.erased" in row for row in cli.tables()["audit_events"]) == 2  # both requests recorded


def test_a_dry_run_prints_what_would_go_and_changes_nothing(cli):
    before = cli.tables()
    r = cli("erase", "--platform", "x", "--handle", "MariaL", "--reason", "ticket 42", "--dry-run")
    assert r.exit_code == 0 and r.output.startswith("dry run, would erase: ") and "posts 2" in r.output
    assert cli.tables() == before


def test_with_the_redis_bus_erase_removes_the_persons_dead_letters_and_says_how_many(cli, redis_url, bus_prefix,
                                                                                       tmp_path):
    from service.bus.redis_streams import RedisStreamsBus

    env = {"SOCIALCARE_BUS": "redis", "SOCIALCARE_REDIS_URL": redis_url, "SOCIALCARE_BUS_PREFIX": bus_prefix,
           "SOCIALCARE_BUS_MAX_DELIVERIES": "1"}

    async def on_bus(work):
        bus = RedisStreamsBus(redis_url, prefix=bus_prefix, max_deliveries=1)
        try:
            return await work(bus)
        finally:
            await bus.close()

    w = World(None, settings_for(tmp_path, "sqlite+aiosqlite://"))  # for its posts
    try:
        asyncio.run(on_bus(lambda bus: bury_posts(
            bus, w.post("zqxdead never stored", author="MariaL", user_id="id-marial"), w.post("tomdead", author="tom_b"))))
        dry = cli("erase", "--platform", "x", "--handle", "MariaL", "--reason", "ticket 42", "--dry-run", **env)
        assert dry.exit_code == 0 and "dead letters 1" in dry.stdout and dry.stderr == ""
        assert len(asyncio.run(on_bus(lambda bus: bus.dead_letters()))) == 2
        r = cli("erase", "--platform", "x", "--handle", "MariaL", "--reason", "ticket 42", **env)
        assert r.exit_code == 0 and "dead letters 1" in r.stdout and "posts 2" in r.stdout, r.output
        left = asyncio.run(on_bus(lambda bus: bus.dead_letters()))
        assert [d.payload["mention"]["author_handle"] for d in left] == ["tom_b"]
        assert "'dead_letters': 1" in next(e for e in cli.tables()["audit_events"] if "privacy.erased" in e)
    finally:
        delete_redis_keys(redis_url, bus_prefix)


def test_an_unknown_subject_exits_1_with_a_message(cli):
    r = cli("erase", "--platform", "x", "--handle", "nobody", "--reason", "ticket 42")
    assert r.exit_code == 1 and "no such subject" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("args", [
    ["--handle", "MariaL", "--reason", "r"],  # no platform
    ["--platform", "x", "--reason", "r"],  # no handle or id
    ["--platform", "x", "--handle", "a", "--user-id", "1", "--reason", "r"],
    ["--customer", "1", "--platform", "x", "--handle", "a", "--reason", "r"],
    ["--platform", "x", "--handle", "@", "--reason", "r"],
    ["--platform", "x", "--handle", "MariaL"],  # no reason
    ["--platform", "x", "--handle", "MariaL", "--reason", "  "],
])
def test_erase_refuses_an_unclear_subject_or_no_reason(cli, args):
    r = cli("erase", *args)
    assert r.exit_code == 2, r.output
    assert found_in(cli.tables(), "zqxone")


def test_purge_needs_a_period_and_defaults_to_the_setting(cli):
    r = cli("purge")
    assert r.exit_code == 2 and "--older-than" in r.output and "SOCIALCARE_RETENTION_DAYS" in r.output
    dry = cli("purge", "--older-than", "30", "--dry-run")
    assert dry.exit_code == 0 and dry.output.startswith("dry run, would purge") and "posts 1" in dry.output
    assert found_in(cli.tables(), "zqxone")
    r = cli("purge", SOCIALCARE_RETENTION_DAYS="30")
    assert r.exit_code == 0 and r.output.startswith("purged (before ") and "posts 1" in r.output
    tables = cli.tables()
    assert found_in(tables, "zqxone") == [] and found_in(tables, "zqxtwo")
    assert cli("purge", "--older-than", "0").exit_code == 2


def test_retention_days_is_none_by_default_and_at_least_one(monkeypatch):
    monkeypatch.delenv("SOCIALCARE_RETENTION_DAYS", raising=False)
    assert load_settings().retention_days is None
    monkeypatch.setenv("SOCIALCARE_RETENTION_DAYS", "90")
    assert load_settings().retention_days == 90
    with pytest.raises(ValidationError):
        load_settings(retention_days=0)


def test_the_audit_event_names_the_actor_and_counts_but_no_value(cli, tmp_path):
    cli("erase", "--platform", "x", "--handle", "MariaL", "--reason", "asked by MariaL (Maria Lopez)", "--actor", "dpo")

    async def events():
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'privacy.db'}")
        try:
            async with db.session() as s:
                return list(await s.scalars(select(AuditEvent).where(AuditEvent.action == "privacy.erased")))
        finally:
            await db.close()

    [event] = asyncio.run(events())
    assert event.actor == "dpo" and event.details["counts"]["posts"] == 2 and event.details["mode"] == "handle"
    assert event.reason == "asked by [subject] ([subject])"


# --- privacy export ------------------------------------------------------------------------------
def test_export_writes_the_persons_json_to_a_file_only_they_may_read_and_audits_it(cli, tmp_path):
    out = tmp_path / "maria.json"
    r = cli("export", "--platform", "x", "--handle", "@mariaL", "--reason", "ticket 42", "--actor", "dpo",
            "--out", str(out))
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("exported: ") and "posts 2" in r.stdout and str(out) in r.stdout
    doc = json.loads(out.read_text())
    assert doc["schema_version"] == 1 and doc["generated_at"] and doc["subject"]["handle"] == "@mariaL"
    assert sorted(p["text"] for p in doc["posts"]) == ["zqxone my login fails", "zqxtwo still failing"]
    assert "tomword" not in out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    [event] = [e for e in cli.tables()["audit_events"] if "privacy.exported" in e]
    assert "'dpo'" in event and "'posts': 2" in event and "zqx" not in event and "marial" not in event


def test_export_without_out_prints_the_json_alone_on_stdout(cli):
    r = cli("export", "--platform", "x", "--user-id", "id-marial", "--reason", "ticket 42")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert len(doc["posts"]) == 2 and doc["erased"] is False and [a["handle"] for a in doc["authors"]] == ["MariaL"]
    assert r.stderr.startswith("exported: ") and "posts 2" in r.stderr


def test_export_of_an_erased_person_shows_what_remains_and_an_unknown_one_exits_1(cli, tmp_path):
    assert cli("erase", "--platform", "x", "--handle", "MariaL", "--reason", "ticket 42").exit_code == 0
    r = cli("export", "--platform", "x", "--handle", "MariaL", "--reason", "ticket 43")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["erased"] is True and doc["posts"] == [] and "zqx" not in r.stdout
    out = tmp_path / "nobody.json"
    r = cli("export", "--platform", "x", "--handle", "nobody", "--reason", "ticket 44", "--out", str(out))
    assert r.exit_code == 1 and "no such subject" in r.output and "Traceback" not in r.output
    assert not out.exists()


@pytest.mark.parametrize("args", [
    ["--handle", "MariaL", "--reason", "r"],  # no platform
    ["--platform", "x", "--reason", "r"],  # no handle or id
    ["--customer", "1", "--platform", "x", "--handle", "a", "--reason", "r"],
    ["--platform", "x", "--handle", "MariaL"],  # no reason
    ["--platform", "x", "--handle", "MariaL", "--reason", "r"],  # --out in a folder that does not exist
])
def test_export_refuses_an_unclear_subject_no_reason_or_an_unwritable_file(cli, args, tmp_path):
    r = cli("export", *args, "--out", str(tmp_path / "missing" / "maria.json"))
    assert r.exit_code == 2, r.output
    assert not any("privacy.exported" in e for e in cli.tables()["audit_events"])


def test_export_help_names_the_right_of_access_and_the_options(cli):
    r = cli("export", "--help")
    assert r.exit_code == 0 and "right of access" in r.output
    for option in ("--platform", "--handle", "--user-id", "--customer", "--reason", "--out", "--actor"):
        assert option in r.output


def test_erase_and_purge_help_say_what_happens_to_posts_in_flight_and_what_the_purge_keeps(cli):
    r = cli("erase", "--help")
    assert r.exit_code == 0
    text = " ".join(r.output.split())
    assert "on its way to ingest is never stored" in text and "[subject]" in text and "SOCIALCARE_SECRET_KEY" in text
    text = " ".join(cli("purge", "--help").output.split())
    assert "are anonymised" in text and "Open cases" in text
