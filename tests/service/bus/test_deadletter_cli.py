"""`socialcare deadletter list|retry|discard` against a real Redis bus (the in-process bus lives inside
the running service, so a separate CLI process cannot see it); retries, discards and listings that
show payloads are audited in the database (a temporary SQLite one, and PostgreSQL where it says so);
a secure link a customer quoted never shows, however encoded."""

from __future__ import annotations

import asyncio
import json
import logging
import re

import pytest
from bus_helpers import delete_keys
from click.testing import CliRunner
from sqlalchemy import select

from models import AuditEvent
from models.db import Database
from service.bus.redis_streams import RedisStreamsBus
from service.cli import main

SECRET_TEXT = "call me on +44 7700 900123, card 4111 1111 1111 1111"


@pytest.fixture
def redis_bus_env(redis_url, bus_prefix, tmp_path):
    yield {"SOCIALCARE_BUS": "redis", "SOCIALCARE_REDIS_URL": redis_url, "SOCIALCARE_BUS_PREFIX": bus_prefix,
           "SOCIALCARE_BUS_MAX_DELIVERIES": "2", "SOCIALCARE_VAR_DIR": str(tmp_path / "var"),
           "SOCIALCARE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}", "SOCIALCARE_CONFIG": None}
    delete_keys(redis_url, bus_prefix)


def bus_of(env) -> RedisStreamsBus:
    return RedisStreamsBus(env["SOCIALCARE_REDIS_URL"], prefix=env["SOCIALCARE_BUS_PREFIX"], max_deliveries=2)


def make_dead_letters(env, items: list[tuple[str, str, dict]], reason: str | None = None) -> list[str]:
    """Dead-letter each (topic, key, payload) through the bus, the way a failing stage would."""

    async def go() -> list[str]:
        bus = bus_of(env)
        try:
            for topic, key, payload in items:
                await bus.ensure_group(topic, topic)
                await bus.publish(topic, payload, key)
                while not await bus.fail(topic, topic, (await bus.read(topic, topic, "c", 1, 0))[0],
                                         reason or f"RuntimeError: {key} broke\x1b[2J"):
                    pass
            return [d.id for d in await bus.dead_letters(limit=1000)]
        finally:
            await bus.close()

    return asyncio.run(go())


def state(env, topic: str) -> tuple[list[str], list[tuple[str, int]]]:
    """(dead-letter keys, (key, attempts) now deliverable on topic)."""

    async def go():
        bus = bus_of(env)
        try:
            dead = [d.key for d in await bus.dead_letters(limit=1000)]
            ready = [(e.key, e.attempts) for e in await bus.read(topic, topic, "check", 100, 0)]
            return dead, ready
        finally:
            await bus.close()

    return asyncio.run(go())


def run(env, *args):
    return CliRunner().invoke(main, ["deadletter", *args], env=env, catch_exceptions=False)


def test_list_shows_a_table_without_payloads(redis_bus_env):
    ids = make_dead_letters(redis_bus_env, [("triage", "x:1", {"text": SECRET_TEXT}), ("act", "x:2", {"n": 1})])
    result = run(redis_bus_env, "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["ID", "ENTRY_ID", "TOPIC", "KEY", "ATTEMPTS", "FAILED_AT", "REASON"]
    cells = [line.split() for line in lines[1:]]
    assert [[c[0], *c[2:5]] for c in cells] == [[ids[0], "triage", "x:1", "2"], [ids[1], "act", "x:2", "2"]]
    assert all(re.fullmatch(r"\d+-\d+", c[1]) for c in cells)  # the entry on the stage's own stream
    assert "RuntimeError: x:1 broke\\x1b[2J" in lines[1]  # control characters escaped, not sent to the terminal
    assert "7700 900123" not in result.output and "4111 1111" not in result.output  # (stream ids are ms timestamps: digits alone may match)


def test_list_as_json_lines_filtered_by_topic_and_limited(redis_bus_env):
    make_dead_letters(redis_bus_env, [("act", "a1", {"text": SECRET_TEXT}), ("triage", "t1", {}), ("act", "a2", {})])
    rows = [json.loads(line) for line in run(redis_bus_env, "list", "--json", "--topic", "act").output.splitlines()]
    assert [(r["topic"], r["key"], r["attempts"]) for r in rows] == [("act", "a1", 2), ("act", "a2", 2)]
    assert set(rows[0]) == {"id", "entry_id", "topic", "key", "attempts", "reason", "failed_at"}
    limited = run(redis_bus_env, "list", "--json", "--limit", "1").stdout.splitlines()  # "… 2 more" on stderr
    assert [json.loads(line)["key"] for line in limited] == ["a1"]


def test_list_says_how_many_more_there_are_beyond_the_limit(redis_bus_env):
    make_dead_letters(redis_bus_env, [("act", f"a{i}", {}) for i in range(4)] + [("triage", "t1", {})])
    table = run(redis_bus_env, "list", "--limit", "2").output.splitlines()
    assert len(table) == 4 and table[-1].startswith("… and 3 more (of 5)") and "--limit" in table[-1]
    assert "more" not in run(redis_bus_env, "list").output
    result = CliRunner().invoke(main, ["deadletter", "list", "--json", "--topic", "act", "--limit", "3"],
                                env=redis_bus_env, catch_exceptions=False)
    assert [json.loads(line)["key"] for line in result.stdout.splitlines()] == ["a0", "a1", "a2"]
    assert "… and 1 more (of 4 on topic act)" in result.stderr


def test_the_worker_log_and_the_listing_name_the_same_stream_entry(redis_bus_env, caplog):
    """What an operator reads in the worker's log (JSON field ``entry_id``) finds its dead letter."""
    from service.bus.base import Envelope
    from service.workers import StageWorker

    class Broken:
        name = "act"

        async def handle(self, batch: list[Envelope]):
            raise RuntimeError("broken")

    async def go():
        bus = bus_of(redis_bus_env)
        try:
            await bus.ensure_group("act", "act")
            await bus.publish("act", {"mention_id": 7}, "m:7")
            worker = StageWorker(bus, Broken(), batch_size=10, block_ms=50)
            for _ in range(5):
                await worker.run_once()
                if await bus.dead_letters():
                    break
        finally:
            await bus.close()

    with caplog.at_level(logging.ERROR, logger="socialcare.worker"):
        asyncio.run(go())
    [last] = [r for r in caplog.records if getattr(r, "dead_letter", False)]
    [row] = [json.loads(line) for line in run(redis_bus_env, "list", "--json").output.splitlines()]
    assert (last.entry_id, last.message_key, last.attempt, last.stage) == (row["entry_id"], "m:7", 2, "act")


def test_show_payload_is_an_explicit_opt_in(redis_bus_env):
    make_dead_letters(redis_bus_env, [("triage", "x:1", {"text": SECRET_TEXT})])
    [line] = run(redis_bus_env, "list", "--json", "--show-payload").output.splitlines()
    assert json.loads(line)["payload"] == {"text": SECRET_TEXT}
    assert SECRET_TEXT in run(redis_bus_env, "list", "--show-payload").output


def test_retry_by_id_puts_the_message_back_and_reports_unknown_ids(redis_bus_env):
    ids = make_dead_letters(redis_bus_env, [("triage", "t1", {}), ("triage", "t2", {})])
    result = run(redis_bus_env, "retry", ids[1])
    assert result.exit_code == 0 and "retried 1" in result.output
    assert state(redis_bus_env, "triage") == (["t1"], [("t2", 1)])
    result = run(redis_bus_env, "retry", ids[1], "12-0")
    assert result.exit_code == 1 and "no such dead letter" in result.output and "retried 0" in result.output


def test_retry_all_of_one_topic(redis_bus_env):
    make_dead_letters(redis_bus_env, [("act", "a1", {}), ("triage", "t1", {}), ("act", "a2", {})])
    result = run(redis_bus_env, "retry", "--all", "--topic", "act")
    assert result.exit_code == 0 and "retried 2" in result.output
    assert state(redis_bus_env, "act") == (["t1"], [("a1", 1), ("a2", 1)])
    assert run(redis_bus_env, "retry", "--all").exit_code == 0
    assert state(redis_bus_env, "triage") == ([], [("t1", 1)])


@pytest.mark.parametrize("args,says", [([], "give the dead-letter IDs"), (["--all", "1-0"], "not both"),
                                       (["--topic", "act", "1-0"], "only applies with --all")])
def test_retry_wants_ids_or_all(redis_bus_env, args, says):
    result = run(redis_bus_env, "retry", *args)
    assert result.exit_code == 2 and "Usage" in result.output and says in result.output


def test_an_id_given_twice_is_retried_once_and_not_reported_missing(redis_bus_env):
    ids = make_dead_letters(redis_bus_env, [("triage", "t1", {})])
    result = run(redis_bus_env, "retry", ids[0], ids[0])
    assert result.exit_code == 0 and "retried 1" in result.output and "no such" not in result.output


def test_the_in_process_bus_is_refused_with_an_explanation(tmp_path):
    result = run({"SOCIALCARE_BUS": "inprocess", "SOCIALCARE_VAR_DIR": str(tmp_path)}, "list")
    assert result.exit_code == 1 and "SOCIALCARE_BUS=redis" in result.output


def test_every_command_has_help():
    for args in (["--help"], ["list", "--help"], ["retry", "--help"], ["discard", "--help"]):
        result = CliRunner().invoke(main, ["deadletter", *args])
        assert result.exit_code == 0 and "dead letter" in result.output.lower()
    for command, action in (("retry", "deadletter.retried"), ("discard", "deadletter.discarded"),
                            ("list", "deadletter.payload_viewed")):
        says = " ".join(CliRunner().invoke(main, ["deadletter", command, "--help"]).output.split())
        assert "--actor" in says and "cli:<your OS user name>" in says and action in says  # audited, by whom
    assert "--yes" in CliRunner().invoke(main, ["deadletter", "discard", "--help"]).output


# --- discard, and the audit of retries and discards ---


def audit_rows(env) -> list[AuditEvent]:
    async def go():
        db = Database(env["SOCIALCARE_DATABASE_URL"])
        try:
            await db.upgrade()  # a command that did nothing may not have created the tables
            async with db.session() as session:
                return list((await session.scalars(select(AuditEvent).order_by(AuditEvent.id))).all())
        finally:
            await db.close()

    return asyncio.run(go())


def dead_keys(env) -> list[str]:
    async def go():
        bus = bus_of(env)
        try:
            return [d.key for d in await bus.dead_letters(limit=1000)]
        finally:
            await bus.close()

    return asyncio.run(go())


def test_discard_removes_exactly_the_named_dead_letters(redis_bus_env):
    ids = make_dead_letters(redis_bus_env, [("triage", "t1", {}), ("act", "a1", {}), ("triage", "t2", {})])
    result = run(redis_bus_env, "discard", ids[0], ids[2], "--yes")
    assert result.exit_code == 0, result.output
    assert "discarded 2 dead letter(s)" in result.output
    assert dead_keys(redis_bus_env) == ["a1"]
    assert state(redis_bus_env, "triage") == (["a1"], [])  # gone for good, not put back on their topic


def test_discard_all_of_one_topic_leaves_the_others(redis_bus_env):
    make_dead_letters(redis_bus_env, [("act", "a1", {}), ("triage", "t1", {}), ("act", "a2", {})])
    result = run(redis_bus_env, "discard", "--all", "--topic", "act", "--yes")
    assert result.exit_code == 0 and "discarded 2" in result.output
    assert dead_keys(redis_bus_env) == ["t1"]
    assert state(redis_bus_env, "act") == (["t1"], [])


def test_discard_of_an_unknown_id_exits_1_and_says_so(redis_bus_env):
    ids = make_dead_letters(redis_bus_env, [("triage", "t1", {}), ("triage", "t2", {})])
    result = run(redis_bus_env, "discard", ids[0], "12-0", "--yes")
    assert result.exit_code == 1
    assert "12-0: no such dead letter" in result.output and "discarded 1 dead letter(s)" in result.output
    assert dead_keys(redis_bus_env) == ["t2"]


@pytest.mark.parametrize("args,says", [([], "give the dead-letter IDs to discard"), (["--all", "1-0"], "not both"),
                                       (["--topic", "act", "1-0"], "only applies with --all")])
def test_discard_wants_ids_or_all(redis_bus_env, args, says):
    result = run(redis_bus_env, "discard", "--yes", *args)
    assert result.exit_code == 2 and "Usage" in result.output and says in result.output


def test_discard_asks_first_and_n_changes_nothing(redis_bus_env):
    ids = make_dead_letters(redis_bus_env, [("triage", "t1", {"text": SECRET_TEXT}), ("act", "a1", {})])
    result = CliRunner().invoke(main, ["deadletter", "discard", "--all"], env=redis_bus_env, input="n\n")
    assert result.exit_code == 1 and "Aborted" in result.output
    assert "Discard 2 dead letter(s)" in result.output and ids[0] in result.output and ids[1] in result.output
    assert "7700 900123" not in result.output  # what it names, it names without the payload
    assert dead_keys(redis_bus_env) == ["t1", "a1"]
    assert audit_rows(redis_bus_env) == []
    result = CliRunner().invoke(main, ["deadletter", "discard", ids[1]], env=redis_bus_env, input="y\n")
    assert result.exit_code == 0 and "discarded 1" in result.output
    assert dead_keys(redis_bus_env) == ["t1"]


def test_discard_all_removes_only_what_the_confirmation_named(redis_bus_env, monkeypatch):
    """A dead letter that fails while the operator reads the prompt is not discarded unseen."""
    from service.cli import deadletter_cmd

    make_dead_letters(redis_bus_env, [("act", "a1", {})])
    confirm = deadletter_cmd._confirm_discard

    def late_failure(shown, topic):
        confirm(shown, topic)
        make_dead_letters(redis_bus_env, [("act", "a2", {})])

    monkeypatch.setattr(deadletter_cmd, "_confirm_discard", late_failure)
    result = CliRunner().invoke(main, ["deadletter", "discard", "--all"], env=redis_bus_env, input="y\n")
    assert result.exit_code == 0 and "discarded 1" in result.output
    assert dead_keys(redis_bus_env) == ["a2"]


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_retries_and_discards_are_audited_with_the_actor_and_ids_only(redis_bus_env, database, request):
    env = redis_bus_env
    if database == "postgres":
        env = env | {"SOCIALCARE_DATABASE_URL": request.getfixturevalue("postgres_url")}
    ids = make_dead_letters(env, [("triage", "t1", {"text": SECRET_TEXT}), ("act", "a1", {"text": SECRET_TEXT}),
                                  ("act", "a2", {"text": SECRET_TEXT})])
    assert run(env, "retry", ids[0], "--actor", "cli:oncall-ana").exit_code == 0
    assert run(env, "discard", ids[1], "12-0", "--yes", "--actor", "cli:oncall-ana").exit_code == 1
    assert run(env, "discard", "--all", "--topic", "act", "--yes", "--actor", "cli:oncall-ben").exit_code == 0
    rows = audit_rows(env)
    assert [(r.actor, r.action, r.object_type) for r in rows] == [
        ("cli:oncall-ana", "deadletter.retried", "deadletter"), ("cli:oncall-ana", "deadletter.discarded", "deadletter"),
        ("cli:oncall-ben", "deadletter.discarded", "deadletter")]
    assert rows[0].object_id == ids[0] and rows[0].details["ids"] == [ids[0]] and rows[0].details["count"] == 1
    assert rows[1].details["ids"] == [ids[1]] and rows[1].details["missing"] == ["12-0"]
    assert rows[2].details["ids"] == [ids[2]] and rows[2].details["topic"] == "act"
    everything = json.dumps([[r.actor, r.action, r.object_id, r.reason, r.details] for r in rows])
    assert "7700 900123" not in everything and "4111 1111" not in everything and "broke" not in everything  # no payload, no reason


def test_the_actor_is_the_os_user_unless_given(redis_bus_env):
    ids = make_dead_letters(redis_bus_env, [("triage", "t1", {}), ("triage", "t2", {})])
    as_user = redis_bus_env | {"LOGNAME": "opsmaria", "USER": "opsmaria"}
    assert run(as_user, "retry", ids[0]).exit_code == 0
    assert run(as_user, "discard", ids[1], "--yes").exit_code == 0
    assert [r.actor for r in audit_rows(redis_bus_env)] == ["cli:opsmaria", "cli:opsmaria"]
    result = run(redis_bus_env, "retry", "--all", "--actor", " ")
    assert result.exit_code == 2 and "--actor" in result.output


def test_nothing_is_done_when_the_audit_log_does_not_answer(redis_bus_env):
    ids = make_dead_letters(redis_bus_env, [("triage", "t1", {}), ("act", "a1", {})])
    down = redis_bus_env | {"SOCIALCARE_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/none"}
    for args in (["retry", ids[0]], ["discard", ids[1], "--yes"]):
        result = run(down, *args)
        assert result.exit_code == 1 and "the database does not answer: nothing was done" in result.output
    assert dead_keys(redis_bus_env) == ["t1", "a1"]


@pytest.mark.parametrize("args", [["list"], ["retry", "1-0"], ["discard", "1-0"], ["discard", "--all", "--yes"]])
def test_every_command_refuses_the_in_process_bus(tmp_path, args):
    result = run({"SOCIALCARE_BUS": "inprocess", "SOCIALCARE_VAR_DIR": str(tmp_path)}, *args)
    assert result.exit_code == 1 and "SOCIALCARE_BUS=redis" in result.output


# --- payloads shown: secure links masked, the listing audited ---

TOKEN = "GzycuqYjFZPD7Al3RrbQtYQ83YLjDlKSOJZ10j7xWYU"  # quoted back as a share button, tracker, shortener wrote it
ENCODED, LOWER = f"https%3A%2F%2Fcare.example.com%2Fsecure%2F{TOKEN}", f"care.example.com%2fsecure%2f{TOKEN}"
TWICE = f"https%253A%252F%252Fcare.example.com%252Fsecure%252F{TOKEN}"


def test_a_secure_link_quoted_url_encoded_is_masked_in_the_payloads_shown(redis_bus_env):
    payload = {"text": f"link fails {ENCODED} {SECRET_TEXT}",
               "raw": {"entities": [{"expanded_url": f"https://t.example/r?u={TWICE}"}], "note": LOWER}}
    make_dead_letters(redis_bus_env, [("ingest", "x:1", payload)], reason=f"ValueError: bad {ENCODED}")
    [row] = [json.loads(line) for line in run(redis_bus_env, "list", "--json", "--show-payload").output.splitlines()]
    assert row["payload"] == {"text": f"link fails [secure link] {SECRET_TEXT}",  # the rest as stored
                              "raw": {"entities": [{"expanded_url": "[secure link]"}], "note": "[secure link]"}}
    assert row["reason"] == "ValueError: bad [secure link]"
    table = run(redis_bus_env, "list", "--show-payload").output
    assert TOKEN not in table and "[secure link]" in table and SECRET_TEXT in table


def test_the_discard_prompt_masks_a_secure_link_in_a_reason_as_the_listing_does(redis_bus_env):
    make_dead_letters(redis_bus_env, [("ingest", "x:1", {})], reason=f"ValueError: bad /secure/{TOKEN}")
    result = CliRunner().invoke(main, ["deadletter", "discard", "--all"], env=redis_bus_env, input="n\n")
    assert result.exit_code == 1 and "Discard 1 dead letter(s)" in result.output
    assert TOKEN[:12] not in result.output and "ValueError: bad [secure link]" in result.output


def payloads_viewed(env) -> list[AuditEvent]:
    return [r for r in audit_rows(env) if r.action == "deadletter.payload_viewed"]


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_listing_that_shows_payloads_is_audited_with_the_actor_topic_count_and_ids_only(
        redis_bus_env, database, request):
    env = redis_bus_env
    if database == "postgres":
        env = env | {"SOCIALCARE_DATABASE_URL": request.getfixturevalue("postgres_url")}
    ids = make_dead_letters(env, [("act", "a1", {"text": SECRET_TEXT}), ("triage", "t1", {"text": SECRET_TEXT}),
                                  ("act", "a2", {"text": SECRET_TEXT}), ("act", "a3", {})])
    assert run(env, "list").exit_code == 0 and run(env, "list", "--json").exit_code == 0
    assert payloads_viewed(env) == []  # rows without payloads: nothing personal shown, nothing audited
    shown_to_ana = ["list", "--show-payload", "--topic", "act", "--limit", "2", "--actor", "cli:oncall-ana"]
    assert run(env, *shown_to_ana).exit_code == 0
    assert run(env, "list", "--json", "--show-payload", "--actor", "cli:oncall-ben").exit_code == 0
    assert run(env, "list", "--show-payload", "--topic", "nothing-here").exit_code == 0  # none shown: no entry
    ana, ben = payloads_viewed(env)
    assert (ana.actor, ana.object_type, ana.object_id) == ("cli:oncall-ana", "deadletter", None)
    assert ana.details == {"topic": "act", "topics": {"act": 2}, "count": 2, "ids": [ids[0], ids[2]]}  # as shown
    assert ben.actor == "cli:oncall-ben"
    assert ben.details == {"topic": None, "topics": {"act": 3, "triage": 1}, "count": 4, "ids": ids}
    everything = json.dumps([[r.actor, r.object_id, r.reason, r.details] for r in (ana, ben)])
    assert "7700 900123" not in everything and "4111 1111" not in everything and "broke" not in everything  # no payload, no reason


def test_one_payload_shown_names_it_and_the_actor_is_the_os_user_unless_given(redis_bus_env):
    [dead_id] = make_dead_letters(redis_bus_env, [("triage", "t1", {"text": SECRET_TEXT})])
    as_user = redis_bus_env | {"LOGNAME": "opsmaria", "USER": "opsmaria"}
    assert run(as_user, "list", "--show-payload").exit_code == 0
    [event] = payloads_viewed(redis_bus_env)
    assert (event.actor, event.object_id, event.details["ids"]) == ("cli:opsmaria", dead_id, [dead_id])


def test_the_persons_export_names_the_listing_that_showed_their_dead_letter(redis_bus_env):
    """Who saw their data is part of the right of access: one listing entry names many dead letters."""
    from datetime import UTC, datetime

    from listener.protocol import NormalizedMention

    posts = [{"mention": NormalizedMention(platform="x", external_id=handle, text="hi", author_handle=handle,
                                           created_at=datetime(2026, 12, 1, tzinfo=UTC)).to_dict()}
             for handle in ("ghost", "tom_b")]
    ghost, toms = make_dead_letters(redis_bus_env, [("ingest", f"x:{i}", p) for i, p in enumerate(posts)])
    assert run(redis_bus_env, "list", "--show-payload", "--actor", "cli:oncall-ana").exit_code == 0
    result = CliRunner().invoke(main, ["privacy", "export", "--platform", "x", "--handle", "ghost", "--reason", "r"],
                                env=redis_bus_env, catch_exceptions=False)
    [viewed] = [e for e in json.loads(result.stdout)["audit_events"] if e["action"] == "deadletter.payload_viewed"]
    assert viewed["actor"] == "cli:oncall-ana" and viewed["details"] == {"ids": [ghost], "count": 1}  # not tom's


def test_no_payload_is_shown_when_the_audit_log_does_not_answer(redis_bus_env):
    make_dead_letters(redis_bus_env, [("triage", "t1", {"text": SECRET_TEXT})])
    down = redis_bus_env | {"SOCIALCARE_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/none"}
    result = run(down, "list", "--show-payload")
    assert result.exit_code == 1 and "the database does not answer: no payload was shown" in result.output
    assert "7700" not in result.output and "t1" not in result.output
    listed = run(down, "list")  # without payloads the listing needs no audit log
    assert listed.exit_code == 0 and "t1" in listed.output
