"""The bot REST API under /api/v1 (JSON; bearer tokens with scopes) and its OpenAPI description."""

from __future__ import annotations

from aiohttp import web


def routes() -> list[web.RouteDef]:
    from console.api import actions, cases, deadletters, mentions, openapi, settle, templates, webhooks

    return [*mentions.routes(), *actions.routes(), *settle.routes(), *cases.routes(), *templates.routes(),
            *webhooks.routes(), *deadletters.routes(), *openapi.routes()]
