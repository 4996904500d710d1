"""`socialcare privacy erase|purge` against a temporary SQLite database (click's CliRunner): the
summary printed, the dry run, the repeat, and mistakes ending in a message and a non-zero exit."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from click.testing import CliRunner
from privacy_support import SECRET_KEY, World, dump, found_in, settings_for
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
    assert (again.exit_code, again.output) == (0, "erased: nothing\n")
    assert sum("privacy.erased" in row for row in cli.tables()["audit_events"]) == 2  # both requests recorded


def test_a_dry_run_prints_what_would_go_and_changes_nothing(cli):
    before = cli.tables()
    r = cli("erase", "--platform", "x", "--handle", "MariaL", "--reason", "ticket 42", "--dry-run")
    assert r.exit_code == 0 and r.output.startswith("dry run, would erase: ") and "posts 2" in r.output
    assert cli.tables() == before


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
