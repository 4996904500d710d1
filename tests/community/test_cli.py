"""The community commands: import a knowledge-base folder, check a rules file, manage incidents."""

from __future__ import annotations

import asyncio

from click.testing import CliRunner
from sqlalchemy import func, select

from models import Incident, IncidentMention, KnowledgeArticle, Reply
from models.db import Database
from service.cli import main
from tests.community.conftest import DEMO


def invoke(tmp_path, *args):
    env = {"SOCIALCARE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}", "SOCIALCARE_VAR_DIR": str(tmp_path),
           "SOCIALCARE_DEMO": "false", "SOCIALCARE_DRY_RUN": "true"}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_kb_import_upserts_articles_and_templates_and_refuses_a_broken_folder(tmp_path):
    r = invoke(tmp_path, "kb", "import", str(DEMO / "kb"), "--templates", str(DEMO / "templates"))
    assert r.exit_code == 0 and "articles" in r.output

    async def count() -> int:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
        async with db.session() as s:
            n = await s.scalar(select(func.count()).select_from(KnowledgeArticle))
        await db.close()
        return n

    n = asyncio.run(count())
    assert n == len(list((DEMO / "kb").glob("*.md")))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.md").write_text("no front matter here")
    r = invoke(tmp_path, "kb", "import", str(broken))
    assert r.exit_code == 1 and "front matter" in r.output and "nothing imported" in r.output


def test_rules_check_lists_valid_rules_and_names_the_line_of_a_bad_one(tmp_path):
    r = invoke(tmp_path, "rules", "check", str(DEMO / "moderation_rules.yaml"))
    assert r.exit_code == 0 and "rules OK" in r.output
    bad = tmp_path / "rules.yaml"
    bad.write_text("- name: x\n  keywords: [a]\n  action: explode\n")
    r = invoke(tmp_path, "rules", "check", str(bad))
    assert r.exit_code == 1 and "rules.yaml:3:" in r.output and "action must be one of" in r.output


RULE_WITH_TEMPLATE = "- name: card-leak\n  pii: [card_number]\n  action: remove\n  message_template: {}\n"


def test_rules_check_without_a_database_checks_the_built_in_notices_and_warns_without_creating_one(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULE_WITH_TEMPLATE.format("no_such_template"))
    r = invoke(tmp_path, "rules", "check", str(rules))
    assert r.exit_code == 0, r.output
    assert "built-in notices (pii_removed_notice, rule_held_notice, rule_removed_notice) only" in r.output
    assert "no database at" in r.output
    assert f"{rules}:1: rule 'card-leak': message_template 'no_such_template' is not a template" in r.stderr
    assert not (tmp_path / "cli.db").exists()  # checking a file creates no database
    rules.write_text(RULE_WITH_TEMPLATE.format("pii_removed_notice"))  # a built-in notice
    r = invoke(tmp_path, "rules", "check", str(rules))
    assert r.exit_code == 0 and "warning" not in r.output


def test_rules_check_refuses_a_message_template_the_database_does_not_hold(tmp_path):
    """Before, ``message_template: no_such_template`` passed and the author was told nothing."""
    assert invoke(tmp_path, "kb", "import", str(DEMO / "kb"), "--templates", str(DEMO / "templates")).exit_code == 0
    rules = tmp_path / "rules.yaml"
    rules.write_text("- name: fine\n  keywords: [x]\n  action: hold\n" + RULE_WITH_TEMPLATE.format("no_such_template"))
    r = invoke(tmp_path, "rules", "check", str(rules))
    assert r.exit_code == 1 and "template(s) in the database sqlite+aiosqlite:///" in r.output
    assert f"{rules}:4: rule 'card-leak': message_template 'no_such_template' is not a template" in r.output
    rules.write_text(RULE_WITH_TEMPLATE.format("thanks"))  # a template of the knowledge base
    r = invoke(tmp_path, "rules", "check", str(rules))
    assert r.exit_code == 0 and "rules OK" in r.output


def test_rules_check_says_what_a_rule_name_must_look_like(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("- name: Not Kebab\n  keywords: [x]\n  action: hold\n")
    r = invoke(tmp_path, "rules", "check", str(rules))
    assert r.exit_code == 1 and "rules.yaml:1:" in r.output
    assert "every rule needs a name" not in r.output
    assert "'Not Kebab' is not a valid name" in r.output and "no spaces" in r.output and "'not-kebab'" in r.output


def test_kb_import_refuses_a_broken_template_and_two_files_with_one_slug(tmp_path):
    """Either would otherwise be found later: a template that fails at reply time, an article that
    silently replaced another."""
    kb, templates = tmp_path / "kb", tmp_path / "templates"
    kb.mkdir()
    templates.mkdir()
    (templates / "t.yaml").write_text("name: greet\ntone:\n  friendly: 'Hi {{ author_name '\n")
    r = invoke(tmp_path, "kb", "import", str(kb), "--templates", str(templates))
    assert r.exit_code == 1 and "t.yaml" in r.output and "friendly" in r.output
    front = "---\nslug: reset\ntitle: {title}\n---\nbody\n"
    (kb / "a.md").write_text(front.format(title="A"))
    (kb / "b.md").write_text(front.format(title="B"))
    r = invoke(tmp_path, "kb", "import", str(kb))
    assert r.exit_code == 1 and "b.md" in r.output and "'reset' is also used by" in r.output


def test_rules_check_refuses_a_file_without_rules(tmp_path):
    empty = tmp_path / "rules.yaml"
    empty.write_text("[]\n")
    r = invoke(tmp_path, "rules", "check", str(empty))
    assert r.exit_code == 1 and "holds no rules" in r.output


def test_incidents_status_and_close_reach_everyone_affected(tmp_path):
    from tests.community.conftest import World, community_settings

    async def setup() -> int:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
        await db.upgrade()
        w = World(db, community_settings(tmp_path), {})
        ms = [await w.mention(f"down? {i}", author=f"u{i}", issue="outage") for i in range(2)]
        async with db.session() as s:
            inc = Incident(dedup_key="k", issue_type="outage", channel="x", title="t", opened_at=ms[0].created_at)
            s.add(inc)
            await s.flush()
            s.add_all([IncidentMention(incident_id=inc.id, mention_id=m.id) for m in ms])
            await s.commit()
        await db.close()
        return inc.id

    iid = asyncio.run(setup())
    r = invoke(tmp_path, "incidents", "list")
    assert r.exit_code == 0 and f"#{iid}" in r.output and "2 mentions" in r.output
    r = invoke(tmp_path, "incidents", "status", str(iid), "Engineers are on it.")
    assert r.exit_code == 0 and "2 author(s)" in r.output
    r = invoke(tmp_path, "incidents", "close", str(iid))
    assert r.exit_code == 0 and "closed" in r.output
    assert invoke(tmp_path, "incidents", "close", str(iid)).exit_code == 1

    async def replies() -> list[str]:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
        async with db.session() as s:
            rows = list(await s.scalars(select(Reply.status)))
        await db.close()
        return rows

    assert sorted(asyncio.run(replies())) == ["dry_run"] * 4
