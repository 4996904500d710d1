"""Editing the knowledge base and the answer templates in the console.

Template bodies are compiled and test-rendered in the same sandbox the bot uses before they are
saved, so a broken or unsafe template is refused with the reason instead of failing in the act
stage. Every change is audited.

Reserved templates (:data:`RESERVED_TEMPLATES`) are the words the service sends on its own, from the
brand's account, with nobody reading them first: the secure link's DM and notices, the personal-data
notice, incident broadcasts, the closing note. Only an admin changes them (here and in the API).

Marketing reads the articles and templates (the brand's public words, reserved ones included: they
hold placeholders, never a customer's link or data) but changes none: its pages have no form.
"""

from __future__ import annotations

import re

from aiohttp import web
from sqlalchemy import select

from community.answers import RESERVED
from community.templates import TemplateRenderError, render
from console.auth import Principal, require
from console.keys import PRINCIPAL, RUNTIME
from console.render import render as render_page
from escalation.handoff import DM_TEMPLATE, secure_dm_problem
from models import KnowledgeArticle, Template
from service.audit import record

SAMPLE = {"author_name": "Sam", "article_url": "https://help.example/a", "secure_link": "https://x.example/s",
          "status_message": "We are on it.", "ttl_hours": "24"}
ISSUE_TYPES = re.compile(r"^[a-z_]{1,80}$")
RESERVED_TEMPLATES = RESERVED | {"case_closed_public"}
RESERVED_REFUSAL = "only an admin may change a reserved template (the service sends it on its own)"
EDITORS = ("agent", "moderator")  # and admin; marketing reads only
READERS = (*EDITORS, "marketing")


def may_edit(p: Principal) -> bool:
    return p.role == "admin" or p.role in EDITORS


def may_edit_template(p: Principal, name: str) -> bool:
    return p.role == "admin" or (may_edit(p) and name not in RESERVED_TEMPLATES)


def body_problem(name: str, body: str) -> str | None:
    """What makes ``body`` unfit for the template ``name`` beyond rendering at all, or None."""
    return secure_dm_problem(body) if name == DM_TEMPLATE else None


def _issue_types(raw: str) -> list[str]:
    values = [v.strip() for v in raw.split(",") if v.strip()]
    bad = [v for v in values if not ISSUE_TYPES.match(v)]
    if bad:
        raise web.HTTPBadRequest(reason=f"not an issue type: {bad[0][:40]}")
    return values


@require(*READERS)
async def knowledge_page(request: web.Request) -> web.Response:
    async with request.app[RUNTIME].db.session() as session:
        articles = list(await session.scalars(select(KnowledgeArticle).order_by(KnowledgeArticle.slug)))
        templates = list(await session.scalars(select(Template).order_by(Template.name)))
    return render_page(request, "knowledge.html", articles=articles, templates=templates)


@require(*READERS)
async def article_page(request: web.Request) -> web.Response:
    async with request.app[RUNTIME].db.session() as session:
        article = await session.scalar(select(KnowledgeArticle).where(KnowledgeArticle.slug == request.match_info["slug"]))
    if article is None:
        raise web.HTTPNotFound()
    return render_page(request, "knowledge_article.html", article=article, editable=may_edit(request[PRINCIPAL]))


@require(*EDITORS)
async def save_article(request: web.Request) -> web.Response:
    p: Principal = request[PRINCIPAL]
    form = await request.post()
    title, body = str(form.get("title") or "").strip(), str(form.get("body") or "").strip()
    url = str(form.get("url") or "").strip() or None
    if not title or not body or len(title) > 300 or len(body) > 100_000:
        raise web.HTTPBadRequest(reason="an article needs a title (≤300) and a body (≤100000)")
    if url and not re.match(r"^https://[^\s]{1,490}$", url):
        raise web.HTTPBadRequest(reason="the article link must be an https URL")
    async with request.app[RUNTIME].db.session() as session:
        article = await session.scalar(select(KnowledgeArticle).where(KnowledgeArticle.slug == request.match_info["slug"]))
        if article is None:
            raise web.HTTPNotFound()
        article.title, article.body, article.url = title, body, url
        article.issue_types = _issue_types(str(form.get("issue_types") or ""))
        record(session, p.actor, "knowledge.article_saved", "article", article.slug)
        await session.commit()
    raise web.HTTPSeeOther("/knowledge")


@require(*READERS)
async def template_page(request: web.Request) -> web.Response:
    p: Principal = request[PRINCIPAL]
    async with request.app[RUNTIME].db.session() as session:
        tpl = await session.scalar(select(Template).where(Template.name == request.match_info["name"]))
    if tpl is None:
        raise web.HTTPNotFound()
    previews = {}
    for tone, body in sorted((tpl.variants or {}).items()):
        try:
            previews[tone] = render(str(body), SAMPLE, platform="x", link=SAMPLE["article_url"])
        except TemplateRenderError as exc:
            previews[tone] = f"(does not render: {exc})"
    return render_page(request, "knowledge_template.html", template=tpl, previews=previews,
                       editable=may_edit_template(p, tpl.name), reserved=tpl.name in RESERVED_TEMPLATES)


@require(*EDITORS)
async def save_template(request: web.Request) -> web.Response:
    p: Principal = request[PRINCIPAL]
    name = request.match_info["name"]
    if not may_edit_template(p, name):
        raise web.HTTPForbidden(reason=RESERVED_REFUSAL)
    form = await request.post()
    variants = {}
    for key, value in form.items():
        if key.startswith("tone:") and str(value).strip():
            tone = key.removeprefix("tone:")
            if not re.match(r"^[a-z_]{1,40}$", tone) or len(str(value)) > 20_000:
                raise web.HTTPBadRequest(reason="tone names are lower-case words; bodies at most 20000 characters")
            try:  # compiled and rendered in the bot's sandbox before it is accepted
                render(str(value), SAMPLE, platform="x")
            except TemplateRenderError as exc:
                raise web.HTTPBadRequest(reason=f"tone {tone}: {exc}") from exc
            variants[tone] = str(value).strip()
    new_tone, new_body = str(form.get("new_tone") or "").strip(), str(form.get("new_body") or "").strip()
    if new_tone and new_body:
        if not re.match(r"^[a-z_]{1,40}$", new_tone):
            raise web.HTTPBadRequest(reason="tone names are lower-case words")
        try:
            render(new_body, SAMPLE, platform="x")
        except TemplateRenderError as exc:
            raise web.HTTPBadRequest(reason=f"tone {new_tone}: {exc}") from exc
        variants[new_tone] = new_body
    if not variants:
        raise web.HTTPBadRequest(reason="a template needs at least one tone")
    for tone, body in variants.items():
        if problem := body_problem(name, body):
            raise web.HTTPBadRequest(reason=f"tone {tone}: {problem}")
    async with request.app[RUNTIME].db.session() as session:
        tpl = await session.scalar(select(Template).where(Template.name == name))
        if tpl is None:
            raise web.HTTPNotFound()
        tpl.variants = variants
        tpl.issue_types = _issue_types(str(form.get("issue_types") or ""))
        record(session, p.actor, "knowledge.template_saved", "template", tpl.name, tones=sorted(variants))
        await session.commit()
    raise web.HTTPSeeOther(f"/knowledge/templates/{tpl.name}")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/knowledge", knowledge_page),
        web.get(r"/knowledge/articles/{slug:[A-Za-z0-9_.-]+}", article_page),
        web.post(r"/knowledge/articles/{slug:[A-Za-z0-9_.-]+}", save_article),
        web.get(r"/knowledge/templates/{name:[A-Za-z0-9_.-]+}", template_page),
        web.post(r"/knowledge/templates/{name:[A-Za-z0-9_.-]+}", save_template),
    ]
