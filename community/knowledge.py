"""Import of knowledge-base articles (Markdown + YAML front matter) and templates (YAML)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from community.templates import TemplateRenderError, check
from listener.validation import text_problems
from models import KnowledgeArticle, Template


class KnowledgeFormatError(ValueError):
    """A file that cannot be imported, or (from :func:`import_folder`) every such file: ``problems``
    holds one line each, naming the file and what is wrong."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


# what the columns hold (PostgreSQL refuses longer text; SQLite would keep it and the console cut it)
_A, _T = KnowledgeArticle.__table__.c, Template.__table__.c
MAX_CHARS = {"slug": _A.slug.type.length, "title": _A.title.type.length, "url": _A.url.type.length,
             "name": _T.name.type.length, "channel": _T.channel.type.length,
             "article_slug": _T.article_slug.type.length}


def _read(path: Path) -> str:
    """The file's text: UTF-8 (a byte-order mark is dropped, as editors on Windows write one)."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KnowledgeFormatError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise KnowledgeFormatError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None


def _yaml(path: Path, text: str, what: str) -> dict:
    """``text`` as a YAML mapping (an empty document is an empty one)."""
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:  # the line in the file (front matter starts on the first line)
        mark = exc.problem_mark or exc.context_mark
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise KnowledgeFormatError(f"{path}: bad {what}{at}: {exc.problem or exc.context}") from None
    except (yaml.YAMLError, ValueError, RecursionError) as exc:  # ValueError: a date like 2026-13-45
        raise KnowledgeFormatError(f"{path}: bad {what}: {' '.join(str(exc).split())[:300]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise KnowledgeFormatError(f"{path}: the {what} must be a mapping of keys (name: value), "
                                   f"not a {type(data).__name__}")
    return data


def _text(path: Path, data: dict, key: str, *, required: bool = False) -> str | None:
    """A one-line field: a string (or a number), within its column's length."""
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise KnowledgeFormatError(f"{path}: lacks '{key}'")
        return None
    if isinstance(value, (dict, list)):
        raise KnowledgeFormatError(f"{path}: '{key}' must be text, not a {type(value).__name__}")
    value = str(value)
    if (limit := MAX_CHARS.get(key)) and len(value) > limit:
        raise KnowledgeFormatError(f"{path}: '{key}' is longer than {limit} characters")
    return value


def _names(path: Path, data: dict, key: str) -> list[str]:
    """A list of names (tags, issue types); one name alone (``tags: billing``) is a list of one."""
    value = data.get(key)
    if value is None or value == "":
        return []
    if not isinstance(value, list):
        value = [value]
    if any(isinstance(v, (dict, list)) for v in value):
        raise KnowledgeFormatError(f"{path}: '{key}' must be a name or a list of names")
    return [str(v) for v in value if v is not None and str(v) != ""]


def _storable(path: Path, row: dict) -> dict:
    """``row`` unless a database would refuse one of its strings (a NUL: PostgreSQL takes none)."""
    if problems := text_problems(row, ""):
        where, _, why = problems[0].rpartition(": ")
        raise KnowledgeFormatError(f"{path}: {where.lstrip('.') or 'text'} {why}; remove it and import again")
    return row


def parse_article(path: Path) -> dict:
    text = _read(path)
    if "\x00" in text:  # PostgreSQL stores no NUL (nor does YAML read one): refused, not silently dropped
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise KnowledgeFormatError(f"{path}: line {line} contains a NUL character; remove it and import again")
    if not text.startswith("---"):
        raise KnowledgeFormatError(f"{path}: missing YAML front matter")
    try:
        _, front, body = text.split("---", 2)
    except ValueError:
        raise KnowledgeFormatError(f"{path}: bad front matter: no closing '---'") from None
    meta = _yaml(path, front, "front matter")
    try:
        row = {"slug": _text(path, meta, "slug", required=True), "title": _text(path, meta, "title", required=True),
               "url": _text(path, meta, "url"), "tags": _names(path, meta, "tags"),
               "issue_types": _names(path, meta, "issue_types"), "body": body.strip()}
    except KnowledgeFormatError as exc:
        raise KnowledgeFormatError(str(exc).replace(f"{path}: ", f"{path}: front matter: ", 1)) from None
    return _storable(path, row)


def parse_template(path: Path) -> dict:
    data = _yaml(path, _read(path), "template")
    variants = data.get("tone") or data.get("variants")
    if not data.get("name") or not isinstance(variants, dict) or not variants:
        raise KnowledgeFormatError(f"{path}: a template needs 'name' and 'tone' variants")
    for tone, body in variants.items():  # a broken body would otherwise surface only at reply time
        if not isinstance(body, str):
            raise KnowledgeFormatError(f"{path}: tone {tone!r}: the text must be a string, "
                                       f"not a {type(body).__name__}")
        try:
            check(body)
        except TemplateRenderError as exc:
            raise KnowledgeFormatError(f"{path}: tone {tone!r}: {exc}") from None
    row = {"name": _text(path, data, "name", required=True), "issue_types": _names(path, data, "issue_types"),
           "channel": _text(path, data, "channel") or "any", "variants": {str(k): v for k, v in variants.items()},
           "article_slug": _text(path, {"article_slug": data.get("article")}, "article_slug")}
    return _storable(path, row)


def _parsed(files: list[Path], parse: Callable[[Path], dict], problems: list[str]) -> list[dict]:
    rows = []
    for path in files:
        try:
            rows.append({**parse(path), "_path": path})
        except KnowledgeFormatError as exc:
            problems.append(str(exc))
    return rows


async def import_folder(session: AsyncSession, kb_dir: Path | None, templates_dir: Path | None) -> tuple[int, int]:
    """Upsert articles (``*.md``) and templates (``*.yaml``); returns how many of each.

    All or nothing: every file is read first, and when any cannot be imported (not UTF-8, YAML
    that is not a mapping, a field of the wrong type or too long, a NUL, two files with one slug)
    :class:`KnowledgeFormatError` names each of them and nothing is written. A half-imported
    folder would leave templates pointing at articles that are missing, or older than their text."""
    article_files = sorted(kb_dir.glob("*.md")) if kb_dir else []
    template_files = sorted(templates_dir.glob("*.y*ml")) if templates_dir else []
    problems: list[str] = []
    articles = _parsed(article_files, parse_article, problems)
    templates = _parsed(template_files, parse_template, problems)
    for kind, rows in (("slug", articles), ("name", templates)):
        seen: dict[str, Path] = {}
        for row in rows:  # one would silently replace the other
            if row[kind] in seen:
                problems.append(f"{row['_path']}: {kind} {row[kind]!r} is also used by {seen[row[kind]]}")
            seen.setdefault(row[kind], row["_path"])
    if problems:
        head = problems[0] if len(problems) == 1 else f"{len(problems)} problems:\n  " + "\n  ".join(problems)
        raise KnowledgeFormatError(head, problems)
    for row in articles + templates:
        del row["_path"]
    have_a = {a.slug: a for a in await session.scalars(select(KnowledgeArticle))}
    for a in articles:
        row = have_a.get(a["slug"]) or KnowledgeArticle(slug=a["slug"])
        for k, v in a.items():
            setattr(row, k, v)
        session.add(row)
    have_t = {t.name: t for t in await session.scalars(select(Template))}
    for t in templates:
        row = have_t.get(t["name"]) or Template(name=t["name"])
        for k, v in t.items():
            setattr(row, k, v)
        if not row.article_slug:  # link the article that answers the same issue type
            row.article_slug = next((a["slug"] for a in articles if set(a["issue_types"]) & set(t["issue_types"])), None)
        session.add(row)
    await session.flush()
    return len(articles), len(templates)
