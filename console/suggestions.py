"""Suggested answers for an agent: templates, knowledge articles and community answers.

Suggestions are drafts: the agent edits them before anything is sent. Templates are rendered for
the mention's platform (within its length limit) in every tone they have.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from community.answers import RESERVED
from community.templates import TemplateRenderError, escape_user_value, render
from models import Author, KnowledgeArticle, Mention, Reply, RouteDecision, Template, TriageResult

MAX_SUGGESTIONS = 8


@dataclass
class Suggestion:
    kind: str  # suggested | template | article | community
    label: str
    text: str
    ref: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def suggestions_for(session: AsyncSession, mention: Mention) -> list[Suggestion]:
    tri = await session.scalar(select(TriageResult).where(TriageResult.mention_id == mention.id))
    decision = await session.scalar(select(RouteDecision).where(RouteDecision.mention_id == mention.id))
    author = await session.get(Author, mention.author_id) if mention.author_id else None
    name = (author.display_name or author.handle) if author else None
    out: list[Suggestion] = []
    for r in await session.scalars(select(Reply).where(Reply.mention_id == mention.id, Reply.status == "suggested")):
        out.append(Suggestion("suggested", f"Bot draft ({r.template or r.kind})", r.text, r.template))
    issue = tri.issue_type if tri else None
    articles = {a.slug: a for a in await session.scalars(select(KnowledgeArticle))}
    if issue:
        templates = [t for t in await session.scalars(select(Template).order_by(Template.name))
                     if t.name not in RESERVED and issue in (t.issue_types or [])]
        templates.sort(key=lambda t: (t.channel not in (mention.platform, "any"), t.channel != mention.platform))
        for t in templates:
            article = articles.get(t.article_slug or "")
            link = article.url if article else None
            for tone, body in sorted((t.variants or {}).items()):
                try:
                    text = render(str(body), {"author_name": name or "there", "article_url": link or ""},
                                  platform=mention.platform, link=link)
                except TemplateRenderError:
                    continue  # a template needing variables only the bot has (an incident status)
                out.append(Suggestion("template", f"{t.name} · {tone}", text, t.name))
        for a in articles.values():
            if issue in (a.issue_types or []) and a.url:
                greeting = f"Hi {escape_user_value(name, mention.platform)}, " if name else "Hi, "
                out.append(Suggestion("article", a.title, f"{greeting}this should help: {a.title} {a.url}", a.slug))
    answer = (decision.details or {}).get("answer") if decision else None
    if answer and answer.get("kind") == "community" and answer.get("url"):
        out.append(Suggestion("community", "Community answer",
                              f"The community has answered this one: {answer['url']}", answer.get("ref")))
    return out[:MAX_SUGGESTIONS]
