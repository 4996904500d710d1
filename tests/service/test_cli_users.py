"""`socialcare users add|list|token` against a temporary SQLite database (click's CliRunner).

What matters: the password is stored only as an argon2 hash that verifies, the role is the one
asked for, a token is printed once and stored only as its hash with its scopes, and mistakes
(duplicate name, short password, unknown role, scope or user) fail with a message, not a traceback.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from console.auth import token_hash, verify_password
from models import ApiToken, AuditEvent, User
from service.cli import main


@pytest.fixture
def cli(tmp_path):
    db_file = tmp_path / "users.db"
    env = {"SOCIALCARE_DATABASE_URL": f"sqlite+aiosqlite:///{db_file}", "SOCIALCARE_VAR_DIR": str(tmp_path / "var"),
           "SOCIALCARE_CONFIG": None, "SOCIALCARE_LOG_JSON": "false"}
    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        return runner.invoke(main, list(args), env=env, input=input, catch_exceptions=False)

    run.db_file = db_file
    return run


def rows(db_file, model, *where):
    from models.db import Database
    from service.settings import load_settings

    async def go():
        db = Database.from_settings(load_settings(database_url=f"sqlite+aiosqlite:///{db_file}"))
        try:
            async with db.session() as s:
                return list(await s.scalars(select(model).where(*where)))
        finally:
            await db.close()

    return asyncio.run(go())


def write(db_file, statement) -> None:
    from models.db import Database
    from service.settings import load_settings

    async def go():
        db = Database.from_settings(load_settings(database_url=f"sqlite+aiosqlite:///{db_file}"))
        try:
            async with db.session() as s:
                await s.execute(statement)
                await s.commit()
        finally:
            await db.close()

    asyncio.run(go())


def test_users_add_stores_an_argon2_hash_and_the_role(cli):
    r = cli("users", "add", "zed", "--role", "moderator", "--email", "zed@example.invalid",
            "--password", "zed password 1")
    assert r.exit_code == 0, r.output
    assert re.fullmatch(r"user zed \(moderator\) created with id \d+\n", r.stdout)
    (user,) = rows(cli.db_file, User, User.username == "zed")
    assert user.role == "moderator" and user.active and user.email == "zed@example.invalid"
    assert user.password_hash.startswith("$argon2") and "zed password 1" not in user.password_hash
    assert verify_password(user.password_hash, "zed password 1") and not verify_password(user.password_hash, "nope")
    assert [e.actor for e in rows(cli.db_file, AuditEvent, AuditEvent.action == "user.created")] == ["cli"]
    listed = cli("users", "list")
    assert listed.exit_code == 0 and f"{user.id}\tzed\tmoderator\tactive" in listed.stdout


def test_users_add_prompts_for_the_password_without_echoing_it(cli):
    r = cli("users", "add", "amy", "--role", "agent", input="amy password 9\namy password 9\n")
    assert r.exit_code == 0, r.output
    assert "amy password 9" not in r.output
    (user,) = rows(cli.db_file, User, User.username == "amy")
    assert verify_password(user.password_hash, "amy password 9")


@pytest.mark.parametrize("args,code,message", [
    (("--role", "agent", "--password", "short"), 1, "at least 10 characters"),
    (("--role", "boss", "--password", "long enough 1"), 2, "Invalid value for '--role'"),
])
def test_users_add_refuses_bad_input_with_a_message(cli, args, code, message):
    r = cli("users", "add", "bad", *args)
    assert r.exit_code == code and message in r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize("name,extra,message", [
    ("", (), "user name"),
    ("   ", (), "user name"),
    ("two\nlines", (), "user name"),  # would split a row of `users list`
    ("x" * 5000, (), "user name"),
    ("ok_name", ("--email", "notanemail"), "e-mail"),
    ("spaces", ("--password", " " * 12), "at least 10 characters"),
])
def test_users_add_refuses_names_addresses_and_passwords_that_are_not_ones(cli, name, extra, message):
    args = ("--password", "long enough 1", *extra) if "--password" not in extra else extra
    r = cli("users", "add", name, "--role", "agent", *args)
    assert r.exit_code == 1 and message in r.output, r.output
    assert rows(cli.db_file, User) == []


def test_a_name_differing_only_in_case_is_the_same_user(cli):
    assert cli("users", "add", "alice", "--role", "agent", "--password", "long enough 1").exit_code == 0
    r = cli("users", "add", "ALICE", "--role", "admin", "--password", "long enough 1")
    assert r.exit_code == 1 and "exists" in r.output
    if cli.db_file.exists():  # a bad role is refused before the database is opened
        assert rows(cli.db_file, User, User.username == "bad") == []


def test_users_add_refuses_a_duplicate_name(cli):
    assert cli("users", "add", "zed", "--role", "agent", "--password", "zed password 1").exit_code == 0
    r = cli("users", "add", "zed", "--role", "admin", "--password", "zed password 2")
    assert r.exit_code == 1 and "user 'zed' exists" in r.output
    (user,) = rows(cli.db_file, User, User.username == "zed")
    assert user.role == "agent"  # unchanged


def test_users_token_prints_the_token_once_and_stores_only_its_hash(cli):
    assert cli("users", "add", "botowner", "--role", "agent", "--password", "bot owner pw 1").exit_code == 0
    r = cli("users", "token", "botowner", "--name", "replybot", "--scope", "mentions:read", "--scope", "replies:write")
    assert r.exit_code == 0, r.output
    token = r.stdout.strip()
    assert re.fullmatch(r"sc_[A-Za-z0-9_-]{40,}", token)
    (row,) = rows(cli.db_file, ApiToken)
    assert row.token_hash == token_hash(token) and row.scopes == ["mentions:read", "replies:write"]
    assert row.name == "replybot" and row.revoked_at is None
    assert token.encode() not in cli.db_file.read_bytes()  # the plain value is nowhere in the database
    (event,) = rows(cli.db_file, AuditEvent, AuditEvent.action == "token.created")
    assert event.details["scopes"] == ["mentions:read", "replies:write"] and token not in str(event.details)
    again = cli("users", "token", "botowner", "--name", "replybot", "--scope", "mentions:read")
    assert again.stdout.strip() != token  # every call is a new token


def test_users_token_refuses_an_unknown_user_or_scope(cli):
    r = cli("users", "token", "ghost", "--name", "x", "--scope", "mentions:read")
    assert r.exit_code == 1 and "no user 'ghost'" in r.output
    assert cli("users", "add", "botowner", "--role", "agent", "--password", "bot owner pw 1").exit_code == 0
    r = cli("users", "token", "botowner", "--name", "x", "--scope", "mention:read")  # a typo
    assert r.exit_code == 2 and "Invalid value for '--scope'" in r.output
    assert rows(cli.db_file, ApiToken) == []


def add(cli, name: str, role: str) -> None:
    r = cli("users", "add", name, "--role", role, "--password", f"{name} password 1")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("role,scope", [("agent", "webhooks"), ("agent", "digest:read"), ("marketing", "ingest"),
                                        ("moderator", "replies:write")])
def test_users_token_refuses_a_scope_the_role_can_never_use(cli, role, scope):
    """Such a token would only ever earn 403s ("role agent may not do this"): refused at creation."""
    add(cli, "someone", role)
    r = cli("users", "token", "someone", "--name", "bot", "--scope", "mentions:read", "--scope", scope)
    assert r.exit_code == 1 and f"role {role} can never use scope {scope}" in r.output, r.output
    assert "admin" in r.output and "Traceback" not in r.output
    assert rows(cli.db_file, ApiToken) == []


def test_users_token_allows_what_the_role_can_use_and_an_admin_anything(cli):
    add(cli, "mia", "marketing")
    add(cli, "root", "admin")
    assert cli("users", "token", "mia", "--name", "digest-bot", "--scope", "digest:read", "--scope", "*").exit_code == 0
    assert cli("users", "token", "root", "--name", "ops", "--scope", "webhooks", "--scope", "ingest").exit_code == 0
    assert len(rows(cli.db_file, ApiToken)) == 2


def test_users_tokens_lists_names_scopes_and_state_never_the_token(cli):
    add(cli, "botowner", "agent")
    token = cli("users", "token", "botowner", "--name", "replybot", "--scope", "replies:write").stdout.strip()
    cli("users", "token", "botowner", "--name", "reader", "--scope", "mentions:read")
    r = cli("users", "tokens", "botowner")
    assert r.exit_code == 0, r.output
    lines = [line.split("\t") for line in r.stdout.splitlines()]
    assert [(c[1], c[2], c[4]) for c in lines] == [("reader", "mentions:read", "active"),
                                                     ("replybot", "replies:write", "active")]
    assert token not in r.output and token_hash(token) not in r.output
    assert cli("users", "tokens", "ghost").exit_code == 1


def test_users_tokens_shows_when_each_token_was_last_used_or_never(cli):
    from datetime import UTC, datetime

    from sqlalchemy import update

    add(cli, "botowner", "agent")
    cli("users", "token", "botowner", "--name", "replybot", "--scope", "replies:write")
    cli("users", "token", "botowner", "--name", "reader", "--scope", "mentions:read")
    assert [line.split("\t")[5] for line in cli("users", "tokens", "botowner").stdout.splitlines()] == ["never", "never"]
    write(cli.db_file, update(ApiToken).where(ApiToken.name == "reader").values(
        last_used_at=datetime(2026, 12, 1, 9, 30, 12, tzinfo=UTC)))
    lines = [line.split("\t") for line in cli("users", "tokens", "botowner").stdout.splitlines()]
    assert [(c[1], c[5]) for c in lines] == [("reader", "2026-12-01 09:30"), ("replybot", "never")]


def test_users_revoke_ends_a_token_by_name_and_is_audited(cli):
    add(cli, "botowner", "agent")
    cli("users", "token", "botowner", "--name", "replybot", "--scope", "replies:write")
    cli("users", "token", "botowner", "--name", "reader", "--scope", "mentions:read")
    r = cli("users", "revoke", "botowner", "replybot")
    assert r.exit_code == 0 and "revoked 1 token(s)" in r.output, r.output
    state = {t.name: t.revoked_at is not None for t in rows(cli.db_file, ApiToken)}
    assert state == {"replybot": True, "reader": False}
    (event,) = rows(cli.db_file, AuditEvent, AuditEvent.action == "token.revoked")
    assert event.actor == "cli" and event.details["name"] == "replybot"
    again = cli("users", "revoke", "botowner", "replybot")
    assert again.exit_code == 1 and "no active token named 'replybot'" in again.output
    assert "revoked" in cli("users", "tokens", "botowner").stdout


def test_users_role_changes_a_role_audited_but_never_demotes_the_last_admin(cli):
    add(cli, "root", "admin")
    add(cli, "amy", "agent")
    r = cli("users", "role", "amy", "moderator")
    assert r.exit_code == 0 and "amy is now moderator" in r.output
    assert [u.role for u in rows(cli.db_file, User, User.username == "amy")] == ["moderator"]
    (event,) = rows(cli.db_file, AuditEvent, AuditEvent.action == "user.role_changed")
    assert (event.details["old"], event.details["new"]) == ("agent", "moderator")
    last = cli("users", "role", "root", "agent")
    assert last.exit_code == 1 and "last active admin" in last.output
    assert [u.role for u in rows(cli.db_file, User, User.username == "root")] == ["admin"]
    assert cli("users", "role", "amy", "admin").exit_code == 0
    assert cli("users", "role", "root", "agent").exit_code == 0  # another admin now exists
    assert cli("users", "role", "amy", "boss").exit_code == 2
