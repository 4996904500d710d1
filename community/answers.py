"""Answer candidates for a mention: templates, articles and accepted community answers.

Two paths. The cheap one, used on every mention, picks the template written for the mention's
issue type (preferring the mention's channel). Retrieval (:mod:`community.retrieval`) runs only
when the cheap path is inconclusive — no template for the type, an unsure issue type, or a
question on a community channel — and then for the whole batch in one encoder call.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from community.retrieval import Candidate, Document, Retriever
from models import CommunityAnswer, KnowledgeArticle, Template

# templates the bot sends for a situation, never as an answer to a question
RESERVED = frozenset({"secure_link_notice", "secure_link_dm", "secure_dm_request_notice", "pii_removed_notice",
                      "outage_status", "outage_fixed"})
ARTICLE_EXCERPT = 600

__all__ = ["AnswerIndex", "Candidate", "RESERVED"]


class AnswerIndex:
    """Templates, articles and community answers in memory, refreshed from the database."""

    def __init__(self, retriever: Retriever | None = None) -> None:
        self.templates: list[Template] = []
        self.articles: dict[str, KnowledgeArticle] = {}
        self.community: dict[str, CommunityAnswer] = {}
        self._retriever = retriever
        self._signature: tuple | None = None
        self._stale = True  # the documents may have changed since the retriever was built
        self._per_issue: dict[str, int] = {}
        self._best: dict[tuple[str, str], Template | None] = {}

    async def refresh(self, session: AsyncSession) -> None:
        self.templates = list(await session.scalars(select(Template).order_by(Template.name)))
        self.articles = {a.slug: a for a in await session.scalars(select(KnowledgeArticle))}
        self.community = {f"{c.platform}:{c.external_id}": c for c in await session.scalars(
            select(CommunityAnswer).where(CommunityAnswer.active.is_(True)))}
        for obj in (*self.templates, *self.articles.values(), *self.community.values()):
            session.expunge(obj)  # kept past this session: a rollback in it must not expire them
        self._per_issue, self._best = {}, {}
        self._stale = True

    def answers_for(self, issue_type: str) -> int:
        """How many templates and articles answer ``issue_type``: with more than one, the cheap
        path cannot tell which fits and retrieval decides."""
        if issue_type in self._per_issue:
            return self._per_issue[issue_type]
        linked = {t.article_slug for t in self.templates if t.article_slug}
        self._per_issue[issue_type] = n = (sum(1 for t in self.templates if t.name not in RESERVED and issue_type in (t.issue_types or []))
                + sum(1 for a in self.articles.values() if a.slug not in linked and issue_type in (a.issue_types or [])))
        return n

    def template(self, name: str) -> Template | None:
        return next((t for t in self.templates if t.name == name), None)

    def written_for(self, c: Candidate) -> frozenset[str]:
        """The issue types a template or article candidate is written for (a community answer: none)."""
        doc = self.template(c.ref) if c.kind == "template" else self.articles.get(c.ref) if c.kind == "article" else None
        return frozenset(doc.issue_types or []) if doc is not None else frozenset()

    def best(self, issue_type: str, platform: str, issue_confidence: float) -> Candidate | None:
        """The cheap path: the template written for ``issue_type``, with triage's confidence."""
        key = (issue_type, platform)
        if key not in self._best:  # one search per type and channel, not per mention
            matches = [t for t in self.templates if t.name not in RESERVED and issue_type in (t.issue_types or [])
                       and t.channel in (platform, "any")]
            matches.sort(key=lambda t: (t.channel != platform, t.name))
            self._best[key] = matches[0] if matches else None
        best = self._best[key]
        if best is None:
            return None
        article = self.articles.get(best.article_slug or "")
        return Candidate("template", best.name, round(issue_confidence, 3),
                         f"template '{best.name}' answers {issue_type}", article.url if article else None)

    # --- retrieval -------------------------------------------------------------------------
    def documents(self) -> list[Document]:
        docs = []
        for t in self.templates:
            if t.name in RESERVED or not t.issue_types:
                continue
            article = self.articles.get(t.article_slug or "")
            body = f"{article.title}. {article.body[:ARTICLE_EXCERPT]}" if article else next(iter(t.variants.values()), "")
            docs.append(Document("template", t.name, article.title if article else t.name, body,
                                 article.url if article else None, list(t.issue_types or []), t.channel or "any"))
        linked = {t.article_slug for t in self.templates if t.article_slug}
        for a in self.articles.values():
            if a.slug not in linked and a.url:  # an article with a template is found through it
                docs.append(Document("article", a.slug, a.title, f"{a.title}. {a.body[:ARTICLE_EXCERPT]}", a.url,
                                     list(a.issue_types or [])))
        for key, c in self.community.items():
            docs.append(Document("community", key, c.question[:80], f"{c.question} {c.answer}", c.url))
        return docs

    def prepare(self) -> None:
        """Build the index now (CPU-bound: call it in a thread), not inside the first question."""
        _ = self.retriever

    @property
    def retriever(self) -> Retriever:
        """The index, rebuilt only when the documents changed (embeddings are cached anyway)."""
        if self._retriever is None:
            self._retriever = Retriever()
        if self._stale:  # documents are compared once per refresh, not on every question
            docs = self.documents()
            signature = tuple((d.kind, d.ref, d.text) for d in docs)
            if signature != self._signature:
                self._retriever.build(docs)
                self._signature = signature
            self._stale = False
        return self._retriever

    def pick(self, question: str, issue_type: str, issue_confidence: float) -> Candidate | None:
        """The cheap path when several answers serve the issue type: lexical choice among them."""
        return self.retriever.lexical_pick(question, issue_type, issue_confidence)

    def search(self, questions: list[str], issue_types: list[str | None], platform: str | None = None,
               k: int = 3) -> list[list[Candidate]]:
        return self.retriever.search(questions, issue_types=issue_types, platform=platform, k=k)
