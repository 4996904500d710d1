"""`socialcare kb import` given files it cannot import: one clear line per file (its name, what is
wrong), exit status 1 and nothing imported, on SQLite and PostgreSQL alike; never a traceback, nor
a string of tags stored letter by letter."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from community.knowledge import KnowledgeFormatError, parse_article, parse_template
from models import KnowledgeArticle, Template
from models.db import Database
from service.cli import main

GOOD = "---\nslug: {slug}\ntitle: Reset your password\n---\nOpen Settings, then Password.\n"
GOOD_TEMPLATE = "name: {name}\nissue_types: [account]\ntone:\n  friendly: 'Hi {{{{ author_name }}}}!'\n"


def invoke(tmp_path: Path, url: str, *args: str):
    env = {"SOCIALCARE_DATABASE_URL": url, "SOCIALCARE_VAR_DIR": str(tmp_path / "var"),
           "SOCIALCARE_DEMO": "false", "SOCIALCARE_DRY_RUN": "true"}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)  # a traceback fails the test


async def stored(url: str) -> tuple[int, int]:
    db = Database(url)
    try:
        async with db.session() as s:
            return (await s.scalar(select(func.count()).select_from(KnowledgeArticle)),
                    await s.scalar(select(func.count()).select_from(Template)))
    finally:
        await db.close()


def folder(tmp_path: Path) -> tuple[Path, Path]:
    kb, templates = tmp_path / "kb", tmp_path / "templates"
    kb.mkdir()
    templates.mkdir()
    (kb / "good.md").write_text(GOOD.format(slug="reset"))
    (templates / "good.yaml").write_text(GOOD_TEMPLATE.format(name="greet"))
    return kb, templates


BAD_FILES = {  # file -> (content, what the error says about it)
    "latin1.md": ("---\nslug: caf\ntitle: Café\n---\nbody\n".encode("latin-1"), "not UTF-8"),
    "list.md": (b"---\n- a list\n---\nbody\n", "front matter must be a mapping"),
    "nul.md": (b"---\nslug: nul\ntitle: ok\n---\nbody with \x00 NUL\n", "line 5 contains a NUL character"),
    "escaped-nul.md": (b'---\nslug: esc\ntitle: "a \\0 b"\n---\nbody\n', "title contains a NUL character"),
    "nested-tags.md": (b"---\nslug: nt\ntitle: t\ntags: [[a]]\n---\nbody\n", "'tags' must be a name or a list"),
    "slug-map.md": (b"---\nslug: {a: 1}\ntitle: t\n---\nbody\n", "'slug' must be text"),
    "unclosed.md": (b"---\ntitle: [unclosed\n---\nbody\n", "bad front matter (line 3)"),
}
BAD_TEMPLATES = {
    "list.yaml": (b"- just\n- a list\n", "template must be a mapping"),
    "tone-list.yaml": (b"name: t\ntone:\n  friendly: [a, b]\n", "the text must be a string"),
    "nul.yaml": (b'name: n\ntone:\n  friendly: "hi \\0"\n', "variants.friendly contains a NUL character"),
    "latin1.yaml": ("name: café\ntone:\n  friendly: hi\n".encode("latin-1"), "not UTF-8"),
}


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_every_bad_file_is_named_with_its_reason_and_nothing_is_imported(tmp_path, request, database):
    url = (f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}" if database == "sqlite"
           else request.getfixturevalue("postgres_url"))
    kb, templates = folder(tmp_path)
    for name, (content, _) in BAD_FILES.items():
        (kb / name).write_bytes(content)
    for name, (content, _) in BAD_TEMPLATES.items():
        (templates / name).write_bytes(content)
    r = invoke(tmp_path, url, "kb", "import", str(kb), "--templates", str(templates))
    assert r.exit_code == 1 and "nothing imported" in r.output and "Traceback" not in r.output
    lines = r.output.splitlines()
    for name, (_, why) in {**BAD_FILES, **BAD_TEMPLATES}.items():
        assert any(name in line and why in line for line in lines), (name, why, r.output)
    assert "good.md" not in r.output and "good.yaml" not in r.output
    assert "DBAPIError" not in r.output and "AttributeError" not in r.output
    assert asyncio.run(stored(url)) == (0, 0)  # all or nothing: the good files wait for the fixed ones
    for name in [*BAD_FILES, *BAD_TEMPLATES]:
        ((kb if name.endswith(".md") else templates) / name).unlink()
    r = invoke(tmp_path, url, "kb", "import", str(kb), "--templates", str(templates))
    assert r.exit_code == 0 and asyncio.run(stored(url)) == (1, 1)


def test_one_tag_or_issue_type_alone_is_a_list_of_one(tmp_path):
    (tmp_path / "a.md").write_text("---\nslug: charge\ntitle: Charged twice\ntags: billing\n"
                                   "issue_types: billing\n---\nbody\n")
    article = parse_article(tmp_path / "a.md")
    assert article["tags"] == ["billing"] and article["issue_types"] == ["billing"]  # not ["b", "i", "l", ...]
    (tmp_path / "t.yaml").write_text("name: refund\nissue_types: billing\ntone:\n  friendly: hi\n")
    assert parse_template(tmp_path / "t.yaml")["issue_types"] == ["billing"]
    (tmp_path / "b.md").write_text("---\nslug: b\ntitle: t\ntags: [billing, 2026]\n---\nbody\n")
    assert parse_article(tmp_path / "b.md")["tags"] == ["billing", "2026"]


def test_a_byte_order_mark_and_an_empty_tag_list_are_fine(tmp_path):
    (tmp_path / "a.md").write_bytes("\ufeff".encode() + GOOD.format(slug="bom").encode())
    assert parse_article(tmp_path / "a.md")["slug"] == "bom"
    (tmp_path / "b.md").write_text("---\nslug: b\ntitle: t\ntags:\n---\nbody\n")
    assert parse_article(tmp_path / "b.md")["tags"] == []


def test_fields_longer_than_their_columns_are_refused(tmp_path):
    (tmp_path / "a.md").write_text(f"---\nslug: {'s' * 201}\ntitle: t\n---\nbody\n")
    with pytest.raises(KnowledgeFormatError, match="'slug' is longer than 200"):
        parse_article(tmp_path / "a.md")


def test_a_nul_in_an_article_is_refused_before_postgresql_sees_it(tmp_path, postgres_url):
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "e.md").write_bytes(b"---\ntitle: ok\nslug: ok\n---\nbody with \x00 NUL\n")
    r = invoke(tmp_path, postgres_url, "kb", "import", str(kb))
    assert r.exit_code == 1 and "DBAPIError" not in r.output
    assert "nothing imported" in r.output and "e.md: line 5 contains a NUL character" in r.output
