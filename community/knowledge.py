"""Import of knowledge-base articles (Markdown + YAML front matter) and templates (YAML)."""

from __future__ import annotations

from pathlib import Path

import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from community.templates import TemplateRenderError, check
from models import KnowledgeArticle, Template


class KnowledgeFormatError(ValueError):
    pass


def parse_article(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        raise KnowledgeFormatError(f"{path}: missing YAML front matter")
    try:
        _, front, body = text.split("---", 2)
        meta = yaml.safe_load(front) or {}
    except (ValueError, yaml.YAMLError) as exc:
        raise KnowledgeFormatError(f"{path}: bad front matter: {exc}") from exc
    for key in ("slug", "title"):
        if not meta.get(key):
            raise KnowledgeFormatError(f"{path}: front matter lacks '{key}'")
    return {"slug": str(meta["slug"]), "title": str(meta["title"]), "url": meta.get("url"),
            "tags": list(meta.get("tags") or []), "issue_types": list(meta.get("issue_types") or []),
            "body": body.strip()}


def parse_template(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise KnowledgeFormatError(f"{path}: {exc}") from exc
    variants = data.get("tone") or data.get("variants")
    if not data.get("name") or not isinstance(variants, dict) or not variants:
        raise KnowledgeFormatError(f"{path}: a template needs 'name' and 'tone' variants")
    for tone, body in variants.items():  # a broken body would otherwise surface only at reply time
        try:
            check(str(body))
        except TemplateRenderError as exc:
            raise KnowledgeFormatError(f"{path}: tone {tone!r}: {exc}") from None
    return {"name": str(data["name"]), "issue_types": list(data.get("issue_types") or []),
            "channel": str(data.get("channel") or "any"), "variants": {str(k): str(v) for k, v in variants.items()},
            "article_slug": data.get("article")}


async def import_folder(session: AsyncSession, kb_dir: Path | None, templates_dir: Path | None) -> tuple[int, int]:
    """Upsert articles (``*.md``) and templates (``*.yaml``); returns how many of each."""
    article_files = sorted(kb_dir.glob("*.md")) if kb_dir else []
    template_files = sorted(templates_dir.glob("*.y*ml")) if templates_dir else []
    articles = [parse_article(p) for p in article_files]
    templates = [parse_template(p) for p in template_files]
    for kind, key, rows, files in (("slug", "slug", articles, article_files), ("name", "name", templates, template_files)):
        seen: dict[str, Path] = {}
        for row, path in zip(rows, files):  # one would silently replace the other
            if row[key] in seen:
                raise KnowledgeFormatError(f"{path}: {kind} {row[key]!r} is also used by {seen[row[key]]}")
            seen[row[key]] = path
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
