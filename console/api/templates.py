"""Bot API for answer templates: list, read, create, replace, delete.

Bodies are checked by the same sandboxed Jinja2 the bot renders with, so a template that cannot
compile is refused here rather than failing later in the act stage. A reserved template (sent by the
service on its own: :data:`console.knowledge.RESERVED_TEMPLATES`) is created, replaced or deleted by
an admin's token only; anyone else's gets 403.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field, field_validator
from sqlalchemy import select

from community.templates import TemplateRenderError, check
from console.api.common import ApiError, Body, SafeStr, api, parse
from console.auth import require
from console.keys import PRINCIPAL, RUNTIME
from console.knowledge import RESERVED_REFUSAL, body_problem, may_edit_template
from models import Template
from service.audit import record

NAME = r"^[a-z0-9][a-z0-9_-]{0,99}$"


class TemplateIn(Body):
    issue_types: list[SafeStr] = Field(default_factory=list, max_length=50)
    channel: SafeStr = Field("any", min_length=1, max_length=32, pattern=r"^[a-z0-9_]+$")
    variants: dict[SafeStr, SafeStr] = Field(min_length=1, max_length=20)
    article_slug: SafeStr | None = Field(None, max_length=200)

    @field_validator("variants")
    @classmethod
    def _compiles(cls, value: dict[str, str]) -> dict[str, str]:
        for tone, body in value.items():
            if not 0 < len(tone) <= 40 or not 0 < len(body) <= 20_000:
                raise ValueError("each tone is 1-40 characters and each body 1-20000")
            try:
                check(body)
            except TemplateRenderError as exc:
                raise ValueError(f"tone {tone!r}: {exc}") from None
        return value


class NewTemplate(TemplateIn):
    name: SafeStr = Field(pattern=NAME)


def template_json(t: Template) -> dict[str, Any]:
    return {"name": t.name, "issue_types": list(t.issue_types or []), "channel": t.channel,
            "variants": dict(t.variants or {}), "article_slug": t.article_slug,
            "updated_at": t.updated_at.isoformat() if t.updated_at else None}


def _name(request: web.Request) -> str:
    import re

    name = request.match_info["name"]
    if not re.match(NAME, name):
        raise ApiError(404, "no such template")
    return name


def _editable(request: web.Request, name: str, variants: dict[str, str] | None = None) -> None:
    """403 for a reserved template unless the token is an admin's; 422 for a body unfit for its name."""
    if not may_edit_template(request[PRINCIPAL], name):
        raise ApiError(403, RESERVED_REFUSAL)
    for tone, body in (variants or {}).items():
        if problem := body_problem(name, body):
            raise ApiError(422, f"invalid request body: variants: tone {tone!r}: {problem}")


async def _get(session: Any, name: str) -> Template:
    t = await session.scalar(select(Template).where(Template.name == name))
    if t is None:
        raise ApiError(404, "no such template")
    return t


@require("agent", "moderator", scope="templates:read")
@api
async def list_templates(request: web.Request) -> web.Response:
    async with request.app[RUNTIME].db.session() as session:
        rows = list(await session.scalars(select(Template).order_by(Template.name)))
    return web.json_response({"templates": [template_json(t) for t in rows]})


@require("agent", "moderator", scope="templates:read")
@api
async def get_template(request: web.Request) -> web.Response:
    async with request.app[RUNTIME].db.session() as session:
        return web.json_response(template_json(await _get(session, _name(request))))


@require("agent", scope="templates:write")
@api
async def create_template(request: web.Request) -> web.Response:
    p = request[PRINCIPAL]
    body = await parse(request, NewTemplate)
    _editable(request, body.name, body.variants)
    async with request.app[RUNTIME].db.session() as session:
        if await session.scalar(select(Template.id).where(Template.name == body.name)):
            raise ApiError(409, f"template {body.name!r} exists; PUT it to replace")
        t = Template(name=body.name, issue_types=body.issue_types, channel=body.channel, variants=body.variants,
                     article_slug=body.article_slug)
        session.add(t)
        record(session, p.actor, "template.created", "template", body.name)
        await session.commit()
        return web.json_response(template_json(t), status=201)


@require("agent", scope="templates:write")
@api
async def replace_template(request: web.Request) -> web.Response:
    p = request[PRINCIPAL]
    name = _name(request)
    _editable(request, name)
    body = await parse(request, TemplateIn)
    _editable(request, name, body.variants)
    async with request.app[RUNTIME].db.session() as session:
        t = await _get(session, name)
        t.issue_types, t.channel, t.variants, t.article_slug = body.issue_types, body.channel, body.variants, \
            body.article_slug
        record(session, p.actor, "template.updated", "template", name)
        await session.commit()
        return web.json_response(template_json(t))


@require("agent", scope="templates:write")
@api
async def delete_template(request: web.Request) -> web.Response:
    p = request[PRINCIPAL]
    name = _name(request)
    _editable(request, name)
    async with request.app[RUNTIME].db.session() as session:
        await session.delete(await _get(session, name))
        record(session, p.actor, "template.deleted", "template", name)
        await session.commit()
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    one = "/api/v1/templates/{name}"
    return [web.get("/api/v1/templates", list_templates), web.post("/api/v1/templates", create_template),
            web.get(one, get_template), web.put(one, replace_template), web.delete(one, delete_template)]
